"""ACLs on the data and topic-admin APIs with real clients over SASL_PLAINTEXT: a principal
without ACLs is refused (and nothing changes: no record appended, no topic created or
deleted), allowed once a matching ALLOW ACL exists, refused again under a DENY; PREFIXED ACLs
cover their prefix only; super users need no ACL; allow.everyone.if.no.acl.found opens
resources no ACL names. ACL changes apply at once on this broker.

The PLAINTEXT listener's principal, User:ANONYMOUS, is a super user here: it is how the test
creates users, topics and ACLs and checks what happened."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kio.schema.fetch.v12.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.list_offsets.v7.request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from kio.schema.sasl_handshake.v0.request import SaslHandshakeRequest

from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, create_topic, unique_name
from tests.integration.raw_client import RawClient

PASSWORD = "acl-Pw-1"
USERS = ("alice", "admin", "bob")
AUTHORIZER = {"listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
              "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
              "super.users": "User:admin;User:ANONYMOUS"}
TAF = KafkaError.TOPIC_AUTHORIZATION_FAILED


def start(settings: dict[str, str]) -> EmbeddedBroker:
    broker = EmbeddedBroker(settings=settings, storage="memory:").start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    upserts = [UserScramCredentialUpsertion(
        name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), PASSWORD.encode())
        for name in USERS]
    for future in admin.alter_user_scram_credentials(upserts).values():
        future.result(DEADLINE_S)
    return broker


@pytest.fixture(scope="module")
def acl_broker() -> Iterator[EmbeddedBroker]:
    broker = start(AUTHORIZER)
    try:
        yield broker
    finally:
        broker.stop()


def conf(broker: EmbeddedBroker, user: str, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": broker.address("SASL_PLAINTEXT"),
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": user, "sasl.password": PASSWORD, "socket.timeout.ms": 10000,
            **extra}


def super_admin(broker: EmbeddedBroker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap_servers})


def acl(topic: str, op: int, permission: int = AclPermissionType.ALLOW, user: str = "alice",
        pattern: int = ResourcePatternType.LITERAL) -> AclBinding:
    return AclBinding(ResourceType.TOPIC, topic, pattern, f"User:{user}", "*", op, permission)


def grant(broker: EmbeddedBroker, *bindings: AclBinding) -> None:
    admin = super_admin(broker)  # kept alive until its futures are done
    for future in admin.create_acls(list(bindings)).values():
        future.result(DEADLINE_S)


def revoke(broker: EmbeddedBroker, binding: AclBinding) -> None:
    target = AclBindingFilter(binding.restype, binding.name, binding.resource_pattern_type,
                              binding.principal, binding.host, binding.operation,
                              binding.permission_type)
    admin = super_admin(broker)
    for future in admin.delete_acls([target]).values():
        assert future.result(DEADLINE_S), "nothing deleted"


def produce_error(broker: EmbeddedBroker, user: str, topic: str) -> KafkaError | None:
    """The delivery error of one record produced as `user` (None: delivered)."""
    p = Producer(conf(broker, user, **{"message.timeout.ms": 15000, "linger.ms": 0}))
    outcome: list[KafkaError | None] = []
    p.produce(topic, b"from-" + user.encode(), on_delivery=lambda err, _msg: outcome.append(err))
    assert p.flush(DEADLINE_S) == 0
    return outcome[0]


def consume_one(broker: EmbeddedBroker, user: str, topic: str) -> KafkaError | bytes:
    """The first record of partition 0 read as `user`, or the error the consumer got (its
    group, which librdkafka looks up even for assigned partitions, is the user's to read)."""
    group = unique_name("unused")
    grant(broker, AclBinding(ResourceType.GROUP, group, ResourcePatternType.LITERAL,
                             f"User:{user}", "*", AclOperation.READ, AclPermissionType.ALLOW))
    c = Consumer(conf(broker, user, **{"group.id": group, "enable.auto.commit": False}))
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None:
                continue
            error = msg.error()
            return error if error is not None else (msg.value() or b"")
        raise AssertionError(f"{user} read nothing from {topic}")
    finally:
        c.close()


def end_offset(broker: EmbeddedBroker, topic: str) -> int:
    """The topic's high watermark, as the super user sees it."""
    c = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "watermarks"})
    try:
        return int(c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    finally:
        c.close()


def topics_of(broker: EmbeddedBroker) -> set[str]:
    return set(super_admin(broker).list_topics(timeout=10).topics)


def raised(futures: dict[str, Any]) -> list[int]:
    """The error code each admin future fails with (0 if it succeeds)."""
    codes = []
    for future in futures.values():
        try:
            future.result(DEADLINE_S)
            codes.append(0)
        except KafkaException as exc:
            codes.append(exc.args[0].code())
    return codes


def raw_as(broker: EmbeddedBroker, user: str) -> RawClient:
    """A raw connection to the SASL listener, logged in as `user` (SASL PLAIN, KIP-152 v0
    framing)."""
    raw = RawClient(int(broker.address("SASL_PLAINTEXT").rpartition(":")[2]))
    assert raw.request(SaslHandshakeRequest(mechanism="PLAIN")).error_code == 0
    token = f"\0{user}\0{PASSWORD}".encode()
    raw.send_raw(len(token).to_bytes(4, "big") + token)
    assert raw.recv_frame() == b""
    return raw


def raw_list_offsets(raw: RawClient, topic: str) -> tuple[int, int]:
    answer = raw.request(ListOffsetsRequest(
        replica_id=-1, isolation_level=0, topics=(ListOffsetsTopic(name=topic, partitions=(
            ListOffsetsPartition(partition_index=0, current_leader_epoch=-1, timestamp=-1),)),)))
    [part] = answer.topics[0].partitions
    return int(part.error_code), int(part.offset)


def raw_fetch(raw: RawClient, topic: str) -> tuple[int, int]:
    answer = raw.request(FetchRequest(
        replica_id=-1, max_wait=timedelta(milliseconds=0), min_bytes=1, max_bytes=1 << 20,
        isolation_level=0, session_id=0, session_epoch=-1, forgotten_topics_data=(),
        rack_id="", topics=(FetchTopic(topic=topic, partitions=(FetchPartition(
            partition=0, current_leader_epoch=-1, fetch_offset=0, last_fetched_epoch=-1,
            log_start_offset=-1, partition_max_bytes=1 << 20),)),)))
    [part] = answer.responses[0].partitions
    return int(part.error_code), len(part.records or b"")


def record(broker: EmbeddedBroker, topic: str) -> None:
    """One record, produced by the super user over PLAINTEXT."""
    p = Producer({"bootstrap.servers": broker.bootstrap_servers})
    p.produce(topic, b"seed")
    assert p.flush(DEADLINE_S) == 0


# --- refused without ACLs, nothing changes -------------------------------------------------------


def test_without_acls_everything_is_refused_and_nothing_changes(
        acl_broker: EmbeddedBroker) -> None:
    topic = create_topic(acl_broker.bootstrap_servers, unique_name("acl-none"))
    record(acl_broker, topic)
    alice = AdminClient(conf(acl_broker, "alice"))

    # Metadata hides the topic; asked for by name it is refused.
    assert topic not in alice.list_topics(timeout=10).topics
    named = alice.list_topics(topic=topic, timeout=10).topics[topic]
    assert named.error is not None and named.error.code() == TAF

    error = produce_error(acl_broker, "alice", topic)
    assert error is not None and error.code() == TAF
    with raw_as(acl_broker, "alice") as raw:
        assert raw_list_offsets(raw, topic) == (TAF, -1)
        assert raw_fetch(raw, topic) == (TAF, 0)
    assert end_offset(acl_broker, topic) == 1  # nothing appended

    new = unique_name("acl-none-new")
    assert raised(alice.create_topics([NewTopic(new, 1, 1)])) == [TAF]
    assert raised(alice.delete_topics([topic])) == [TAF]
    assert raised(alice.create_partitions([NewPartitions(topic, 3)])) == [TAF]
    topics = topics_of(acl_broker)
    assert new not in topics and topic in topics  # nothing created, nothing deleted
    assert len(super_admin(acl_broker).list_topics(topic=topic, timeout=10)
               .topics[topic].partitions) == 1


def test_describe_alone_reaches_produce_and_fetch_which_refuse(
        acl_broker: EmbeddedBroker) -> None:
    """With DESCRIBE the client sees the topic, so the refusals come from Produce (WRITE)
    and Fetch (READ) themselves; ListOffsets needs DESCRIBE only."""
    topic = create_topic(acl_broker.bootstrap_servers, unique_name("acl-describe"))
    record(acl_broker, topic)
    grant(acl_broker, acl(topic, AclOperation.DESCRIBE))

    error = produce_error(acl_broker, "alice", topic)
    assert error is not None and error.code() == TAF
    consumed = consume_one(acl_broker, "alice", topic)
    assert isinstance(consumed, KafkaError) and consumed.code() == TAF
    with raw_as(acl_broker, "alice") as raw:
        assert raw_list_offsets(raw, topic) == (0, 1)
    assert end_offset(acl_broker, topic) == 1


# --- ALLOW, then DENY ----------------------------------------------------------------------------


def test_allow_then_deny_apply_at_once(acl_broker: EmbeddedBroker) -> None:
    topic = create_topic(acl_broker.bootstrap_servers, unique_name("acl-allow"))
    write, read = acl(topic, AclOperation.WRITE), acl(topic, AclOperation.READ)
    grant(acl_broker, write, read)

    assert produce_error(acl_broker, "alice", topic) is None
    assert consume_one(acl_broker, "alice", topic) == b"from-alice"
    assert end_offset(acl_broker, topic) == 1

    deny_write = acl(topic, AclOperation.WRITE, AclPermissionType.DENY)
    grant(acl_broker, deny_write)  # DENY wins over the ALLOW
    error = produce_error(acl_broker, "alice", topic)
    assert error is not None and error.code() == TAF
    assert end_offset(acl_broker, topic) == 1
    assert consume_one(acl_broker, "alice", topic) == b"from-alice"  # READ still allowed

    revoke(acl_broker, deny_write)
    assert produce_error(acl_broker, "alice", topic) is None
    assert end_offset(acl_broker, topic) == 2


def test_create_and_delete_topics_once_allowed(acl_broker: EmbeddedBroker) -> None:
    name = unique_name("acl-admin")
    alice = AdminClient(conf(acl_broker, "alice"))
    grant(acl_broker, acl(name, AclOperation.CREATE))
    assert raised(alice.create_topics([NewTopic(name, 2, 1)])) == [0]
    assert name in topics_of(acl_broker)
    assert raised(alice.delete_topics([name])) == [TAF]  # CREATE does not allow DELETE
    assert name in topics_of(acl_broker)
    grant(acl_broker, acl(name, AclOperation.DELETE))
    assert raised(alice.delete_topics([name])) == [0]
    assert name not in topics_of(acl_broker)


# --- PREFIXED ------------------------------------------------------------------------------------


def test_prefixed_acls_cover_their_prefix_only(acl_broker: EmbeddedBroker) -> None:
    prefix = unique_name("acl-pre") + "."
    inside = create_topic(acl_broker.bootstrap_servers, prefix + "in")
    outside = create_topic(acl_broker.bootstrap_servers, prefix[:-1] + "-out")
    grant(acl_broker, acl(prefix, AclOperation.WRITE, pattern=ResourcePatternType.PREFIXED),
          acl(prefix, AclOperation.CREATE, pattern=ResourcePatternType.PREFIXED))

    assert produce_error(acl_broker, "alice", inside) is None
    error = produce_error(acl_broker, "alice", outside)
    assert error is not None and error.code() == TAF
    assert (end_offset(acl_broker, inside), end_offset(acl_broker, outside)) == (1, 0)

    alice = AdminClient(conf(acl_broker, "alice"))
    assert raised(alice.create_topics([NewTopic(prefix + "made", 1, 1),
                                       NewTopic(prefix[:-1] + "-made", 1, 1)])) == [0, TAF]
    topics = topics_of(acl_broker)
    assert prefix + "made" in topics and prefix[:-1] + "-made" not in topics
    listed = set(AdminClient(conf(acl_broker, "alice")).list_topics(timeout=10).topics)
    assert inside in listed and outside not in listed  # WRITE implies DESCRIBE


# --- super users, allow.everyone.if.no.acl.found -------------------------------------------------


def test_a_super_user_needs_no_acl(acl_broker: EmbeddedBroker) -> None:
    topic = create_topic(acl_broker.bootstrap_servers, unique_name("acl-super"))
    grant(acl_broker, acl(topic, AclOperation.READ, user="bob"))  # the topic has an ACL
    assert produce_error(acl_broker, "admin", topic) is None
    assert consume_one(acl_broker, "admin", topic) == b"from-admin"
    admin = AdminClient(conf(acl_broker, "admin"))
    name = unique_name("acl-super-new")
    assert raised(admin.create_topics([NewTopic(name, 1, 1)])) == [0]
    assert raised(admin.delete_topics([topic])) == [0]
    topics = topics_of(acl_broker)
    assert name in topics and topic not in topics


def test_allow_everyone_if_no_acl_found() -> None:
    broker = start({**AUTHORIZER, "allow.everyone.if.no.acl.found": "true"})
    try:
        open_topic = create_topic(broker.bootstrap_servers, unique_name("acl-open"))
        guarded = create_topic(broker.bootstrap_servers, unique_name("acl-guarded"))
        grant(broker, acl(guarded, AclOperation.WRITE, user="bob"))  # an ACL: no longer open

        assert produce_error(broker, "alice", open_topic) is None
        assert consume_one(broker, "alice", open_topic) == b"from-alice"
        error = produce_error(broker, "alice", guarded)
        assert error is not None and error.code() == TAF
        assert produce_error(broker, "bob", guarded) is None
        assert (end_offset(broker, open_topic), end_offset(broker, guarded)) == (1, 1)
    finally:
        broker.stop()


# --- kafka-python --------------------------------------------------------------------------------


def test_kafka_python_admin_is_refused_and_changes_nothing(acl_broker: EmbeddedBroker) -> None:
    from kafka.admin import KafkaAdminClient
    from kafka.admin import NewTopic as KafkaPythonNewTopic
    from kafka.errors import TopicAuthorizationFailedError

    topic = create_topic(acl_broker.bootstrap_servers, unique_name("acl-kp"))
    new = unique_name("acl-kp-new")
    client = KafkaAdminClient(bootstrap_servers=acl_broker.address("SASL_PLAINTEXT"),
                              security_protocol="SASL_PLAINTEXT",
                              sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="bob",
                              sasl_plain_password=PASSWORD)
    try:
        with pytest.raises(TopicAuthorizationFailedError, match="Authorization failed"):
            client.create_topics([KafkaPythonNewTopic(new, 1, 1)])
        with pytest.raises(TopicAuthorizationFailedError):
            client.delete_topics([topic])
    finally:
        client.close()
    topics = topics_of(acl_broker)
    assert new not in topics and topic in topics
