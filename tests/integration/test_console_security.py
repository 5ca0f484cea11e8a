"""The console's ACL and SCRAM user pages, and its --sasl login, against a broker with an
authorizer and a SASL listener."""

from __future__ import annotations

import html

import pytest
from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism
from confluent_kafka.admin import UserScramCredentialUpsertion as Upsertion

from strom.cli import wire_admin
from strom.cli.common import ClientOptions
from strom.console import ConsoleSettings, RunningConsole, start_in_thread
from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, unique_name
from tests.integration.console_client import ConsoleClient


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return {"listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:ANONYMOUS;User:carol"}


def test_acls_add_list_delete(broker: EmbeddedBroker) -> None:
    console = start_in_thread(ConsoleSettings(broker.bootstrap_servers, poll_interval=1))
    try:
        web = ConsoleClient(console.url)
        topic = unique_name("acl")
        acl = {"resource_type": "TOPIC", "name": topic, "pattern": "LITERAL",
               "principal": "User:alice", "host": "*", "operation": "READ",
               "permission": "ALLOW"}
        assert web.post("/acls", acl).status == 302
        page = web.get("/acls").text
        assert topic in page and "User:alice" in page
        assert web.post("/acls/delete", acl).status == 302
        assert topic not in web.get("/acls").text
    finally:
        console.stop()


def test_users_set_list_delete(broker: EmbeddedBroker) -> None:
    console = start_in_thread(ConsoleSettings(broker.bootstrap_servers, poll_interval=1))
    try:
        web = ConsoleClient(console.url)
        name = unique_name("user")
        reply = web.post("/users", {"name": name, "mechanism": "SCRAM-SHA-512",
                                    "password": "pw-1"})
        assert reply.status == 302, reply.text
        page = web.get("/users").text
        assert name in page and "SCRAM-SHA-512" in page
        assert "pw-1" not in page
        assert web.post("/users/delete", {"name": name, "mechanism": "SCRAM-SHA-512"}
                        ).status == 302
        assert name not in web.get("/users").text
    finally:
        console.stop()


def add_user(broker: EmbeddedBroker, name: str, password: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    for future in admin.alter_user_scram_credentials([Upsertion(
            name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
            password.encode())]).values():
        future.result(DEADLINE_S)


def sasl_console(broker: EmbeddedBroker) -> RunningConsole:
    return start_in_thread(ConsoleSettings(
        broker.address("SASL_PLAINTEXT"), {"security.protocol": "SASL_PLAINTEXT",
                                           "sasl.mechanism": "SCRAM-SHA-256"},
        sasl=True, poll_interval=1, request_timeout=3))


def test_quotas_go_with_the_sasl_login(broker: EmbeddedBroker) -> None:
    """The quotas page's own-protocol client logs in as the console's user: a super user
    sets a quota, a user without ACLs is refused by the cluster."""
    add_user(broker, "carol", "carol-pw")
    add_user(broker, "dave", "dave-pw")
    console = sasl_console(broker)
    try:
        client = unique_name("sasl-client")
        dave = ConsoleClient(console.url)
        assert dave.request("/login", {"username": "dave", "password": "dave-pw",
                                       "next": "/quotas"}).status == 302
        refused = dave.post("/quotas", {"client_id": client, "producer_byte_rate": "5000"})
        assert refused.status == 400 and "authorization" in refused.text.lower(), refused.text
        carol = ConsoleClient(console.url)
        assert carol.request("/login", {"username": "carol", "password": "carol-pw",
                                        "next": "/quotas"}).status == 302
        assert carol.get("/quotas").status == 200
        done = carol.post("/quotas", {"client_id": client, "producer_byte_rate": "5000"})
        assert done.status == 302, done.text
        found = wire_admin.list_quotas(ClientOptions(broker.bootstrap_servers, {}, 5.0))
        assert found[(("client-id", client),)] == {"producer_byte_rate": 5000.0}
        assert client in carol.get("/quotas").text
    finally:
        console.stop()


def test_sasl_login_uses_the_users_credentials(broker: EmbeddedBroker) -> None:
    add_user(broker, "carol", "carol-pw")
    console = start_in_thread(ConsoleSettings(
        broker.address("SASL_PLAINTEXT"), {"security.protocol": "SASL_PLAINTEXT",
                                           "sasl.mechanism": "SCRAM-SHA-256"},
        sasl=True, poll_interval=1, request_timeout=3))
    try:
        web = ConsoleClient(console.url)
        assert web.get("/topics").status == 302
        bad = web.request("/login", {"username": "carol", "password": "wrong", "next": "/"})
        assert bad.status == 401
        assert "refused" in html.unescape(bad.text)
        good = web.request("/login", {"username": "carol", "password": "carol-pw",
                                      "next": "/cluster"})
        assert good.status == 302 and good.location == "/cluster"
        page = web.get("/cluster")
        assert page.status == 200 and "controller" in page.text
        assert "log out carol" in page.text
    finally:
        console.stop()
