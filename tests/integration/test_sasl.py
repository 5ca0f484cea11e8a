"""SASL on a SASL_PLAINTEXT listener with real clients: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512
(confluent-kafka, kafka-python, aiokafka, kcat) against users made over the wire
(AlterUserScramCredentials on the broker's PLAINTEXT listener) or before the broker started
(`strom user set --data-dir`); the right password works, a wrong password and an unknown user
fail alike; nothing is served before authentication; re-authentication (KIP-368)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.sasl_authenticate.v2.request import SaslAuthenticateRequest
from kio.schema.sasl_handshake.v0.request import SaslHandshakeRequest as SaslHandshakeRequestV0
from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest

from strom.cli.main import cli
from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, create_topic, unique_name
from tests.integration.group_clients import GROUP_BROKER_SETTINGS
from tests.integration.raw_client import RawClient

PASSWORD = "s3cret-Pw"
USERS = {"alice": "SCRAM-SHA-256", "bob": "SCRAM-SHA-512"}
LISTENERS = {"listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0"}


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[EmbeddedBroker]:
    # GROUP_BROKER_SETTINGS: round_trip's new groups form at once, not after 3 s.
    with EmbeddedBroker(settings={**LISTENERS, **GROUP_BROKER_SETTINGS}) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        upserts = [UserScramCredentialUpsertion(
            name, ScramCredentialInfo(getattr(ScramMechanism, m.replace("-", "_")), 4096),
            PASSWORD.encode()) for name, m in USERS.items()]
        for future in admin.alter_user_scram_credentials(upserts).values():
            future.result(DEADLINE_S)
        yield broker


def sasl_conf(broker: EmbeddedBroker, mechanism: str, user: str, password: str,
              **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": broker.address("SASL_PLAINTEXT"),
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mechanism,
            "sasl.username": user, "sasl.password": password, **extra}


def round_trip(conf: dict[str, Any], topic: str) -> list[bytes]:
    """Produces one record and reads the topic back over `conf`'s connection."""
    p = Producer({**conf, "message.timeout.ms": 15000})
    failed: list[Any] = []
    p.produce(topic, b"v-" + conf["sasl.username"].encode(),
              on_delivery=lambda err, msg: failed.append(err) if err else None)
    assert p.flush(DEADLINE_S) == 0 and not failed, failed
    c = Consumer({**conf, "group.id": unique_name("g"), "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])
        values: list[bytes] = []
        deadline = time.monotonic() + DEADLINE_S
        while not values and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                values.append(msg.value() or b"")
        return values
    finally:
        c.close()


def auth_error(conf: dict[str, Any]) -> KafkaError:
    """The error a client gets when its authentication fails."""
    errors: list[KafkaError] = []
    admin = AdminClient({**conf, "error_cb": errors.append})
    future = admin.describe_cluster(request_timeout=DEADLINE_S)  # makes it connect
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
        if found or time.monotonic() > deadline:
            break
        admin.poll(0.1)  # serves error_cb
    future.cancel()
    assert found, errors
    return found[0]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_right_password_works_wrong_password_and_unknown_user_fail_alike(
        sasl_broker: EmbeddedBroker, mechanism: str) -> None:
    user = "alice" if mechanism != "SCRAM-SHA-512" else "bob"
    topic = create_topic(sasl_broker.bootstrap_servers, unique_name("sasl"))
    assert round_trip(sasl_conf(sasl_broker, mechanism, user, PASSWORD), topic) == [
        b"v-" + user.encode()]
    wrong = auth_error(sasl_conf(sasl_broker, mechanism, user, "wrong"))
    unknown = auth_error(sasl_conf(sasl_broker, mechanism, "mallory", PASSWORD))
    assert "Authentication failed" in wrong.str(), wrong.str()
    # The broker's message does not tell an unknown user from a wrong password.
    def said(error: KafkaError, name: str) -> str:  # without librdkafka's timing
        return re.sub(r" \(after \d+ms in state \w+\)", "", error.str().replace(name, "?"))

    assert said(wrong, user) == said(unknown, "mallory")
    assert sasl_broker.server.broker is not None
    assert sasl_broker.server.broker.sasl.failures >= 2


def test_scram_for_a_mechanism_the_user_lacks_fails(sasl_broker: EmbeddedBroker) -> None:
    """alice has SCRAM-SHA-256 only."""
    auth_error(sasl_conf(sasl_broker, "SCRAM-SHA-512", "alice", PASSWORD))


def test_nothing_is_served_before_authentication(sasl_broker: EmbeddedBroker) -> None:
    """Metadata (which could auto-create a topic) before SASL closes the connection and
    creates nothing; an unknown mechanism is refused with the enabled ones listed."""
    name = unique_name("never")
    port = int(sasl_broker.address("SASL_PLAINTEXT").rpartition(":")[2])
    with RawClient(port) as raw:
        raw.send_raw(raw.frame(MetadataRequest(
            topics=(MetadataRequestTopic(topic_id=None, name=name),),
            allow_auto_topic_creation=True, include_topic_authorized_operations=False)))
        assert raw.is_closed_by_peer()
    with RawClient(port) as raw:
        answer = raw.request(SaslHandshakeRequest(mechanism="GSSAPI"))
        assert answer.error_code == 33  # UNSUPPORTED_SASL_MECHANISM
        assert set(answer.mechanisms) == {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
        assert raw.is_closed_by_peer()
    admin = AdminClient({"bootstrap.servers": sasl_broker.bootstrap_servers})
    assert name not in admin.list_topics(timeout=10).topics


def test_the_small_frame_limit_holds_until_authenticated(sasl_broker: EmbeddedBroker) -> None:
    """socket.request.max.bytes.pre.auth (64 KiB) applies on a SASL listener until the
    client authenticated, even after ApiVersions; after it, the full limit."""
    port = int(sasl_broker.address("SASL_PLAINTEXT").rpartition(":")[2])
    with RawClient(port) as raw:
        raw.request(ApiVersionsRequest(client_software_name="t", client_software_version="1"))
        raw.send_raw((100 * 1024).to_bytes(4, "big") + b"\0" * 1024)
        assert raw.is_closed_by_peer()
    with RawClient(port) as raw:
        raw.request(SaslHandshakeRequest(mechanism="PLAIN"))
        answer = raw.request(SaslAuthenticateRequest(
            auth_bytes=f"\0alice\0{PASSWORD}".encode()))
        assert answer.error_code == 0
        big = raw.frame(MetadataRequest(
            topics=tuple(MetadataRequestTopic(topic_id=None, name=f"t{i:0>200}")
                         for i in range(400)),
            allow_auto_topic_creation=False, include_topic_authorized_operations=False))
        assert len(big) > 64 * 1024
        raw.send_raw(big)
        assert len(raw.read_response(3, 12).topics) == 400


def test_handshake_v0_takes_raw_sasl_tokens(sasl_broker: EmbeddedBroker) -> None:
    """KIP-152's older framing: after SaslHandshake v0 the tokens travel as bare frames; a
    PLAIN login then serves requests, a wrong password closes the connection."""
    port = int(sasl_broker.address("SASL_PLAINTEXT").rpartition(":")[2])
    for password, works in [(PASSWORD, True), ("wrong", False)]:
        with RawClient(port) as raw:
            answer = raw.request(SaslHandshakeRequestV0(mechanism="PLAIN"))
            assert answer.error_code == 0
            token = f"\0alice\0{password}".encode()
            raw.send_raw(len(token).to_bytes(4, "big") + token)
            if not works:
                assert raw.is_closed_by_peer()
                continue
            assert raw.recv_frame() == b""
            metadata = raw.request(MetadataRequest(
                topics=(), allow_auto_topic_creation=False,
                include_topic_authorized_operations=False))
            assert [b.node_id for b in metadata.brokers] == [1]


def test_kafka_python_and_aiokafka_authenticate(sasl_broker: EmbeddedBroker) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import KafkaError as KafkaPythonError

    topic = create_topic(sasl_broker.bootstrap_servers, unique_name("sasl-py"))
    bootstrap = sasl_broker.address("SASL_PLAINTEXT")
    for mechanism, user in [("PLAIN", "alice"), ("SCRAM-SHA-256", "alice"),
                            ("SCRAM-SHA-512", "bob")]:
        kp = KafkaProducer(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT",
                           sasl_mechanism=mechanism, sasl_plain_username=user,
                           sasl_plain_password=PASSWORD)
        kp.send(topic, f"kp-{mechanism}".encode()).get(timeout=DEADLINE_S)
        kp.close()
    assert sasl_broker.server.broker is not None
    failures = sasl_broker.server.broker.sasl.failures
    with pytest.raises(KafkaPythonError):  # it retries until max_block_ms
        KafkaProducer(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT",
                      sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="alice",
                      sasl_plain_password="wrong", max_block_ms=2000, api_version=(3, 7),
                      request_timeout_ms=2000).send(topic, b"never").get(timeout=5)
    assert sasl_broker.server.broker.sasl.failures > failures
    kc = KafkaConsumer(topic, bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT",
                       sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="bob",
                       sasl_plain_password=PASSWORD, auto_offset_reset="earliest",
                       consumer_timeout_ms=10000)
    read = [next(kc).value for _ in range(3)]
    assert sorted(read) == [b"kp-PLAIN", b"kp-SCRAM-SHA-256", b"kp-SCRAM-SHA-512"]
    kc.close()

    async def with_aiokafka() -> list[bytes]:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.errors import KafkaError as AioKafkaError

        ap = AIOKafkaProducer(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT",
                              sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="alice",
                              sasl_plain_password=PASSWORD)
        await ap.start()
        try:
            await ap.send_and_wait(topic, b"aio")
        finally:
            await ap.stop()
        bad = AIOKafkaProducer(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT",
                               sasl_mechanism="PLAIN", sasl_plain_username="alice",
                               sasl_plain_password="wrong")
        with pytest.raises(AioKafkaError):
            await bad.start()
        await bad.stop()
        ac = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                              security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                              sasl_plain_username="bob", sasl_plain_password=PASSWORD,
                              auto_offset_reset="earliest")
        await ac.start()
        try:
            got = await ac.getmany(timeout_ms=10000)
            return [m.value for batch in got.values() for m in batch if m.value is not None]
        finally:
            await ac.stop()

    assert b"aio" in asyncio.run(with_aiokafka())


def test_kcat_authenticates_with_scram(sasl_broker: EmbeddedBroker) -> None:
    topic = create_topic(sasl_broker.bootstrap_servers, unique_name("sasl-kcat"))
    common = ["kcat", "-b", sasl_broker.address("SASL_PLAINTEXT"),
              "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=SCRAM-SHA-512",
              "-X", "sasl.username=bob"]
    done = subprocess.run([*common, "-X", f"sasl.password={PASSWORD}", "-P", "-t", topic],
                          input=b"from-kcat\n", capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    read = subprocess.run([*common, "-X", f"sasl.password={PASSWORD}", "-C", "-t", topic,
                           "-o", "beginning", "-e", "-q"],
                          capture_output=True, timeout=30, check=False)
    assert read.stdout.strip() == b"from-kcat", read.stderr
    bad = subprocess.run([*common, "-X", "sasl.password=nope", "-L", "-m", "5"],
                         capture_output=True, timeout=30, check=False)
    assert bad.returncode != 0 and b"uthentication" in bad.stderr, bad.stderr


def test_describe_and_delete_users_over_the_wire_and_with_the_cli(
        sasl_broker: EmbeddedBroker) -> None:
    admin = AdminClient({"bootstrap.servers": sasl_broker.bootstrap_servers})
    futures = admin.describe_user_scram_credentials(["alice", "bob"])
    bob = futures["bob"].result()
    assert [(i.mechanism, i.iterations) for i in bob.scram_credential_infos] == [
        (ScramMechanism.SCRAM_SHA_512, 4096)]
    with pytest.raises(KafkaException, match="does not exist"):
        admin.describe_user_scram_credentials(["nobody"])["nobody"].result()
    runner = CliRunner()
    b = ["-b", sasl_broker.bootstrap_servers]
    done = runner.invoke(cli, ["user", "set", "carol", "--password", "pw-carol",
                               "--mechanism", "SCRAM-SHA-512", "--iterations", "8192", *b])
    assert done.exit_code == 0, done.output
    listed = runner.invoke(cli, ["user", "list", *b])
    assert listed.exit_code == 0, listed.output
    carol = next(line for line in listed.output.splitlines() if "carol" in line)
    assert "SCRAM-SHA-512" in carol and "8192" in carol
    topic = create_topic(sasl_broker.bootstrap_servers, unique_name("carol"))
    assert round_trip(sasl_conf(sasl_broker, "SCRAM-SHA-512", "carol", "pw-carol"), topic)
    done = runner.invoke(cli, ["user", "delete", "carol", *b])
    assert done.exit_code == 0, done.output
    auth_error(sasl_conf(sasl_broker, "SCRAM-SHA-512", "carol", "pw-carol"))
    missing = runner.invoke(cli, ["user", "delete", "carol", "--mechanism", "SCRAM-SHA-256",
                                  *b])
    assert missing.exit_code == 1 and "no such user" in missing.output
    # Kafka's checks: too few iterations, the same user twice.
    futures = admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion("dave", ScramCredentialInfo(
            ScramMechanism.SCRAM_SHA_256, 4096), b"x"),
        UserScramCredentialDeletion("dave", ScramMechanism.SCRAM_SHA_512)])
    with pytest.raises(KafkaException, match="twice"):
        futures["dave"].result()


def test_a_user_made_before_the_broker_starts_logs_in(tmp_path: Path) -> None:
    """`strom user set --data-dir` as `kafka-storage format --add-scram`."""
    data = tmp_path / "data"
    done = CliRunner().invoke(cli, ["user", "set", "admin", "--password", "first-admin",
                                    "--mechanism", "SCRAM-SHA-512", "--data-dir", str(data)])
    assert done.exit_code == 0, done.output
    assert oct((data / "strom-scram.json").stat().st_mode & 0o777) == "0o600"
    with EmbeddedBroker(settings={"listeners": "SASL_PLAINTEXT://127.0.0.1:0"},
                        data_dir=data) as broker:
        conf = sasl_conf(broker, "SCRAM-SHA-512", "admin", "first-admin")
        admin = AdminClient(conf)
        assert "admin" in admin.describe_user_scram_credentials().result()
        auth_error(sasl_conf(broker, "PLAIN", "admin", "not-it"))
        broker.restart()  # the credential is durable; the SASL secret too
        assert broker.server.broker is not None
        secret = broker.server.broker.sasl.secret
        broker.restart()
        assert broker.server.broker.sasl.secret == secret
        conf = sasl_conf(broker, "PLAIN", "admin", "first-admin")
        assert AdminClient(conf).list_topics(timeout=10).brokers


def test_reauthentication_keeps_the_connection_serving() -> None:
    """connections.max.reauth.ms: librdkafka re-authenticates on the same connection before
    the session ends, and the producer carries on across several session lifetimes."""
    settings = {**LISTENERS, "connections.max.reauth.ms": "1500"}
    with EmbeddedBroker(settings=settings) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
            "erin", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
            b"pw")])["erin"].result(DEADLINE_S)
        topic = create_topic(broker.bootstrap_servers, unique_name("reauth"))
        p = Producer({**sasl_conf(broker, "SCRAM-SHA-256", "erin", "pw"),
                      "message.timeout.ms": 10000})
        failed: list[Any] = []
        deadline = time.monotonic() + 5.0
        sent = 0
        while time.monotonic() < deadline:
            p.produce(topic, b"x", on_delivery=lambda e, m: failed.append(e) if e else None)
            sent += 1
            p.poll(0.1)
        assert p.flush(DEADLINE_S) == 0 and not failed, failed
        assert sent > 20
        assert broker.server.broker is not None
        assert broker.server.broker.sasl.reauthentications >= 2
