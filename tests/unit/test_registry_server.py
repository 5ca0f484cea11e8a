"""The registry server's pure helpers: the users file, basic credentials, request bodies."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from strom.registry.errors import RegistryError
from strom.registry.rest import basic_credentials, schema_request
from strom.registry.schemas import SchemaReference, SchemaType
from strom.registry.server import RegistrySettings, read_users


def test_users_file(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("# comment\n\nalice: s3cret,admin,developer\nbob:pa:ss\n carol :  x \n")
    assert read_users(path) == {"alice": "s3cret", "bob": "pa:ss", "carol": "x"}
    path.write_text("alice\n")
    with pytest.raises(ValueError, match="users:1"):
        read_users(path)


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_basic_credentials() -> None:
    assert basic_credentials(basic("alice:s3:cret")) == ("alice", "s3:cret")
    assert basic_credentials(basic("alice")) is None
    assert basic_credentials("Bearer abc") is None
    assert basic_credentials("Basic !!!") is None
    assert basic_credentials("") is None


def test_schema_request() -> None:
    req = schema_request({"schema": "{}", "schemaType": "json", "references": [
        {"name": "a.json", "subject": "a", "version": 1}]})
    assert req.schema_type is SchemaType.JSON
    assert req.references == (SchemaReference("a.json", "a", 1),)
    assert (req.schema_id, req.version) == (None, None)
    assert schema_request({"schema": '"int"', "id": 7, "version": 2}).schema_id == 7
    for bad in ({}, {"schema": ""}, {"schema": 1}, {"schema": "x", "schemaType": 3},
                {"schema": "x", "references": {}}, {"schema": "x", "id": "7"},
                {"schema": "x", "schemaType": "XML"},
                {"schema": "x", "references": [{"name": "a"}]}):
        with pytest.raises(RegistryError) as refused:
            schema_request(bad)
        assert refused.value.error_code == 42201, bad


def test_settings() -> None:
    settings = RegistrySettings("h:9092", {"security.protocol": "SSL"}, group_id="g")
    assert settings.client() == {"bootstrap.servers": "h:9092", "security.protocol": "SSL"}
    assert settings.election_topic == "_schemas_election"
    assert settings.transactional_id == "g-writer"
    assert settings.server_ssl() is None
    assert settings.client_ssl() is True
