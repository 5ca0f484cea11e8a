"""Choosing a storage engine by URL, as `strom serve --storage URL` does:

- `file:DIR` (or a bare directory path): the local engine, segment files in DIR (the default,
  `./data`; `--data-dir DIR` is its shorthand);
- `memory:`: the in-memory engine, for tests and notebooks: nothing survives a restart;
- `postgresql://USER[:PASSWORD]@HOST[:PORT][,HOST2[:PORT2]...]/DB[?PARAMS]` (or
  `postgres://`): the PostgreSQL engine, libpq's URL form (several hosts with
  `target_session_attrs=read-write` to find the primary).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from strom.config.broker import BrokerConfig
from strom.config.topic import ConfigError
from strom.storage.api import StorageEngine

SCHEMES: Final = ("file:", "memory:", "postgresql:")
POSTGRES_PREFIXES: Final = ("postgresql://", "postgres://")


@dataclass(frozen=True, slots=True)
class StorageUrl:
    scheme: str  # "file", "memory" or "postgresql"
    path: Path | None = None  # the directory of a file: URL
    url: str = ""  # the whole URL of a postgresql: one

    @property
    def durable(self) -> bool:
        return self.scheme != "memory"

    def __str__(self) -> str:
        if self.scheme == "postgresql":
            from strom.storage.postgres.connect import redact

            return redact(self.url)
        return f"file:{self.path}" if self.path is not None else f"{self.scheme}:"


def parse_storage_url(text: str) -> StorageUrl:
    """Raises ConfigError, saying which forms are accepted, for anything else."""
    text = text.strip()
    if text == "memory:" or text == "memory://":
        return StorageUrl("memory")
    if text.startswith(POSTGRES_PREFIXES):
        if not text.split("//", 1)[1].split("/", 1)[0].strip("@"):
            raise ConfigError(f"storage URL {text!r}: needs a host, e.g. "
                              "postgresql://USER:PASSWORD@HOST:5432/DB")
        return StorageUrl("postgresql", url=text)
    if text.startswith("file://"):
        path = text[len("file://"):]
    elif text.startswith("file:"):
        path = text[len("file:"):]
    elif ":" in text.split("/", 1)[0] or not text:
        raise ConfigError(f"storage URL {text!r}: expected file:DIR, memory: or "
                          "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB")
    else:
        path = text  # a bare directory
    if not path:
        raise ConfigError(f"storage URL {text!r}: file: needs a directory, e.g. file:./data")
    return StorageUrl("file", Path(path))


def engine_for(url: StorageUrl, config: BrokerConfig) -> StorageEngine:
    """A new, unopened engine for `url`."""
    if url.scheme == "postgresql":
        from strom.storage.postgres import PostgresEngine

        return PostgresEngine(url.url, config)
    if url.scheme == "memory":
        from strom.storage.memory import MemoryEngine

        return MemoryEngine(config)
    from strom.storage.local.engine import LocalEngine

    assert url.path is not None
    return LocalEngine(url.path, config)
