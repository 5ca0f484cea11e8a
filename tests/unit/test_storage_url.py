"""`--storage URL` picks the engine: file:DIR (or a bare directory), memory: and
postgresql://...; anything else,
or --data-dir together with --storage, is refused with a message saying what is accepted."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from strom.cli.serve import build_config, serve
from strom.config.broker import BrokerConfig
from strom.config.topic import ConfigError
from strom.storage.local import LocalEngine
from strom.storage.memory import MemoryEngine
from strom.storage.postgres import PostgresEngine
from strom.storage.select import StorageUrl, engine_for, parse_storage_url


def test_url_forms() -> None:
    assert parse_storage_url("file:./data") == StorageUrl("file", Path("./data"))
    assert parse_storage_url("file:///var/lib/strom") == StorageUrl("file", Path("/var/lib/strom"))
    assert parse_storage_url("/srv/strom") == StorageUrl("file", Path("/srv/strom"))
    assert parse_storage_url("memory:") == StorageUrl("memory")
    assert not parse_storage_url("memory:").durable
    assert parse_storage_url("file:x").durable
    assert str(parse_storage_url("file:x")) == "file:x"
    pg = "postgresql://u:secret@h1:5432,h2:5433/db?target_session_attrs=read-write"
    assert parse_storage_url(pg) == StorageUrl("postgresql", url=pg)
    assert parse_storage_url(pg).durable
    assert "secret" not in str(parse_storage_url(pg))
    assert parse_storage_url("postgres://u@h/db").scheme == "postgresql"


def test_a_postgresql_url_needs_a_host() -> None:
    with pytest.raises(ConfigError, match="needs a host"):
        parse_storage_url("postgresql:///db")


@pytest.mark.parametrize("text", ["s3://bucket/x", "file:", "memory:extra", ""])
def test_bad_urls_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ConfigError, match="file:"):
        parse_storage_url(text)


def test_the_url_chooses_the_engine(tmp_path: Path) -> None:
    config = BrokerConfig.build(tmp_path, "localhost", 0)
    assert isinstance(engine_for(parse_storage_url(f"file:{tmp_path}"), config), LocalEngine)
    assert isinstance(engine_for(parse_storage_url("memory:"), config), MemoryEngine)
    assert isinstance(engine_for(parse_storage_url("postgresql://u@h/db"), config),
                      PostgresEngine)


def test_serve_refuses_a_bad_url_and_both_options(tmp_path: Path) -> None:
    with pytest.raises(click.BadParameter, match="expected file:DIR, memory: or postgresql:"):
        build_config(tmp_path, "127.0.0.1:0", None, (), "postgres-ish://nowhere")
    result = CliRunner().invoke(serve, ["--data-dir", str(tmp_path), "--storage", "memory:"])
    assert result.exit_code == 2 and "not both" in result.output
