"""The schema registry against a SASL listener: its own clients with SASL credentials (-X), and
HTTP basic authentication checked by the cluster (--sasl)."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism
from confluent_kafka.admin import UserScramCredentialUpsertion as Upsertion

from strom.registry.rest import start_in_thread
from strom.registry.server import RegistrySettings
from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, unique_name
from tests.integration.registry_client import Http


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return {"listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0"}


def add_user(broker: EmbeddedBroker, name: str, password: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    for future in admin.alter_user_scram_credentials([Upsertion(
            name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
            password.encode())]).values():
        future.result(DEADLINE_S)


def test_basic_auth_checked_as_sasl_credentials(broker: EmbeddedBroker) -> None:
    add_user(broker, "registry-svc", "svc-pw")
    add_user(broker, "carol", "carol-pw")
    running = start_in_thread(RegistrySettings(
        broker.address("SASL_PLAINTEXT"),
        {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
         "sasl.username": "registry-svc", "sasl.password": "svc-pw"},
        topic=unique_name("_schemas"), group_id=unique_name("registry"), sasl_login=True))
    try:
        assert Http(running.url).get("/subjects").status == 401
        assert Http(running.url, ("carol", "wrong")).get("/subjects").status == 401
        assert Http(running.url, ("mallory", "carol-pw")).get("/subjects").status == 401
        carol = Http(running.url, ("carol", "carol-pw"))
        assert carol.get("/subjects").body == []
        assert carol.register(unique_name("sasl"), '"string"').status == 200
        assert carol.get("/subjects").status == 200  # remembered: no second check
    finally:
        running.stop()
