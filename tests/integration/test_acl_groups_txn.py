"""ACLs on consumer groups, committed offsets, transactions and idempotent producers, with
confluent-kafka: principals authenticated with SASL/SCRAM on a SASL_PLAINTEXT listener are
refused without ACLs (and nothing is created or committed), served once the matching ALLOW
ACLs exist (a PREFIXED group ACL too), refused again after a DENY; a super user needs no ACLs.
The PLAINTEXT listener's principal, User:ANONYMOUS, is a super user: the admin's way in."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kio.schema.list_transactions.v0.request import ListTransactionsRequest

from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, create_topic, unique_name
from tests.integration.raw_client import RawClient

PASSWORD = "acl-Pw-1"
# One user per test, so that no test's ACLs apply to another's principal.
USERS = ("alice", "bob", "carol", "dave", "admin")
SETTINGS = {
    "listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "super.users": "User:admin;User:ANONYMOUS",
    "group.initial.rebalance.delay.ms": "0",
}
GROUP, TOPIC, TXN_ID = ResourceType.GROUP, ResourceType.TOPIC, ResourceType.TRANSACTIONAL_ID
LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY


@pytest.fixture(scope="module")
def acl_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(settings=SETTINGS) as broker:
        upserts = [UserScramCredentialUpsertion(
            user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), PASSWORD.encode())
            for user in USERS]
        for future in admin_of(broker).alter_user_scram_credentials(upserts).values():
            future.result(DEADLINE_S)
        yield broker
        _ADMINS.pop(broker.bootstrap_servers, None)


_ADMINS: dict[str, AdminClient] = {}


def admin_of(broker: EmbeddedBroker) -> AdminClient:
    """The broker's admin client over PLAINTEXT (kept: its futures end with it)."""
    if broker.bootstrap_servers not in _ADMINS:
        _ADMINS[broker.bootstrap_servers] = AdminClient(
            {"bootstrap.servers": broker.bootstrap_servers})
    return _ADMINS[broker.bootstrap_servers]


def as_user(broker: EmbeddedBroker, user: str, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": broker.address("SASL_PLAINTEXT"),
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": user, "sasl.password": PASSWORD, "socket.timeout.ms": 10000,
            **extra}


def acl(user: str, rtype: ResourceType, name: str, op: AclOperation,
        permission: AclPermissionType = ALLOW, pattern: ResourcePatternType = LITERAL,
        ) -> AclBinding:
    return AclBinding(rtype, name, pattern, f"User:{user}", "*", op, permission)


def create_acls(broker: EmbeddedBroker, *bindings: AclBinding) -> None:
    for future in admin_of(broker).create_acls(list(bindings)).values():
        future.result(DEADLINE_S)


def topic_with_a_record(broker: EmbeddedBroker, prefix: str) -> str:
    topic = create_topic(broker.bootstrap_servers, unique_name(prefix))
    p = Producer({"bootstrap.servers": broker.bootstrap_servers})
    p.produce(topic, b"first")
    assert p.flush(DEADLINE_S) == 0
    return topic


def group_consumer(broker: EmbeddedBroker, user: str, group: str) -> Consumer:
    return Consumer(as_user(broker, user, **{
        "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "session.timeout.ms": 6000, "heartbeat.interval.ms": 200, "fetch.wait.max.ms": 100}))


def first_event(consumer: Consumer, topic: str) -> Any:
    """Subscribes to `topic` and returns the first record or error the consumer gets."""
    consumer.subscribe([topic])
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None:
            return msg
    raise AssertionError("the consumer got neither a record nor an error")


def refused_join(broker: EmbeddedBroker, user: str, group: str, topic: str) -> KafkaError:
    consumer = group_consumer(broker, user, group)
    try:
        msg = first_event(consumer, topic)
        assert msg.error() is not None, f"consumed {msg.value()!r} without the right"
        error: KafkaError = msg.error()
        return error
    finally:
        consumer.close()


def consume_and_commit(broker: EmbeddedBroker, user: str, group: str, topic: str) -> bytes:
    consumer = group_consumer(broker, user, group)
    try:
        msg = first_event(consumer, topic)
        assert msg.error() is None, msg.error()
        consumer.commit(message=msg, asynchronous=False)
        value: bytes = msg.value()
        return value
    finally:
        consumer.close()


def commit_error(broker: EmbeddedBroker, user: str, group: str, topic: str,
                 offset: int) -> KafkaError:
    """A commit of `offset` outside any generation (Kafka's simple commit)."""
    consumer = group_consumer(broker, user, group)
    try:
        with pytest.raises(KafkaException) as raised:
            consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
        error: KafkaError = raised.value.args[0]
        return error
    finally:
        consumer.close()


def committed_offsets(broker: EmbeddedBroker, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets as the admin (a super user) sees them."""
    request = ConsumerGroupTopicPartitions(group)
    answer = admin_of(broker).list_consumer_group_offsets([request])[group].result(DEADLINE_S)
    return {(tp.topic, tp.partition): tp.offset for tp in answer.topic_partitions
            if tp.offset >= 0}


def groups(broker: EmbeddedBroker) -> set[str]:
    listed = admin_of(broker).list_consumer_groups().result(DEADLINE_S)
    return {g.group_id for g in listed.valid}


def test_a_consumer_group_needs_read_on_the_group_and_the_topic(
        acl_broker: EmbeddedBroker) -> None:
    topic = topic_with_a_record(acl_broker, "acl-consume")
    group = unique_name("acl-group")
    # No ACL: the group's coordinator is not even found for it.
    error = refused_join(acl_broker, "alice", group, topic)
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, error
    # DESCRIBE finds the coordinator; joining, committing and reading the topic's offset are
    # still refused.
    create_acls(acl_broker, acl("alice", GROUP, group, AclOperation.DESCRIBE))
    error = commit_error(acl_broker, "alice", group, topic, 1)
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, error
    consumer = group_consumer(acl_broker, "alice", group)
    try:
        (fetched,) = consumer.committed([TopicPartition(topic, 0)], timeout=DEADLINE_S)
        assert fetched.error is not None
        assert fetched.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        consumer.close()
    # Without DESCRIBE on the topic the subscription fails on Metadata first; with it, the
    # JoinGroup itself is refused.
    error = refused_join(acl_broker, "alice", group, topic)
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error
    create_acls(acl_broker, acl("alice", TOPIC, topic, AclOperation.DESCRIBE))
    error = refused_join(acl_broker, "alice", group, topic)
    assert (error.code(), error.str()) == (KafkaError.GROUP_AUTHORIZATION_FAILED,
                                           "JoinGroup failed: Broker: Group authorization failed")
    assert committed_offsets(acl_broker, group) == {}
    assert group not in groups(acl_broker)
    # READ on the group and the topic: served.
    reading = (acl("alice", GROUP, group, AclOperation.READ),
               acl("alice", TOPIC, topic, AclOperation.READ))
    create_acls(acl_broker, *reading)
    assert consume_and_commit(acl_broker, "alice", group, topic) == b"first"
    assert committed_offsets(acl_broker, group) == {(topic, 0): 1}
    assert group in groups(acl_broker)
    # A DENY wins over the ALLOW.
    create_acls(acl_broker, acl("alice", GROUP, group, AclOperation.READ, DENY))
    error = refused_join(acl_broker, "alice", group, topic)
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, error
    error = commit_error(acl_broker, "alice", group, topic, 0)
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, error
    assert committed_offsets(acl_broker, group) == {(topic, 0): 1}


def test_a_prefixed_group_acl(acl_broker: EmbeddedBroker) -> None:
    topic = topic_with_a_record(acl_broker, "acl-prefixed")
    team = unique_name("team")
    create_acls(acl_broker, acl("bob", GROUP, "team-", AclOperation.READ, pattern=PREFIXED),
                acl("bob", TOPIC, topic, AclOperation.READ))
    assert consume_and_commit(acl_broker, "bob", team, topic) == b"first"
    assert committed_offsets(acl_broker, team) == {(topic, 0): 1}
    other = unique_name("other")
    error = refused_join(acl_broker, "bob", other, topic)
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, error
    assert other not in groups(acl_broker)


def transactions(broker: EmbeddedBroker) -> set[str]:
    """The transactional ids the broker knows (ListTransactions as the admin)."""
    with RawClient(broker.port) as raw:
        answer = raw.request(ListTransactionsRequest(state_filters=(), producer_id_filters=()))
    assert answer.error_code == 0
    return {t.transactional_id for t in answer.transaction_states}


def init_error(broker: EmbeddedBroker, user: str, transactional_id: str) -> KafkaError:
    p = Producer(as_user(broker, user, **{"transactional.id": transactional_id}))
    with pytest.raises(KafkaException) as raised:
        p.init_transactions(DEADLINE_S)
    error: KafkaError = raised.value.args[0]
    return error


def read_committed(broker: EmbeddedBroker, topic: str) -> list[bytes]:
    c = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": unique_name("r"),
                  "isolation.level": "read_committed", "enable.partition.eof": True,
                  "auto.offset.reset": "earliest"})
    values: list[bytes] = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error() is not None:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                return values
            values.append(msg.value())
        raise AssertionError("never reached the end of the partition")
    finally:
        c.close()


def test_a_transactional_producer_needs_write_on_its_transactional_id(
        acl_broker: EmbeddedBroker) -> None:
    topic = create_topic(acl_broker.bootstrap_servers, unique_name("acl-txn"))
    transactional_id = unique_name("acl-tx")
    error = init_error(acl_broker, "carol", transactional_id)
    assert (error.code(), error.fatal()) == (KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                                             True)
    assert transactional_id not in transactions(acl_broker)
    writing = (acl("carol", TXN_ID, transactional_id, AclOperation.WRITE),
               acl("carol", TOPIC, topic, AclOperation.WRITE))
    create_acls(acl_broker, *writing)
    p = Producer(as_user(acl_broker, "carol", **{"transactional.id": transactional_id}))
    p.init_transactions(DEADLINE_S)
    p.begin_transaction()
    p.produce(topic, b"in-txn")
    # Committing a group's offsets in the transaction needs READ on that group.
    group = Consumer(as_user(acl_broker, "carol", **{"group.id": unique_name("acl-txn-g")}))
    try:
        with pytest.raises(KafkaException) as raised:
            p.send_offsets_to_transaction([TopicPartition(topic, 0, 1)],
                                          group.consumer_group_metadata(), DEADLINE_S)
    finally:
        group.close()
    assert raised.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert raised.value.args[0].txn_requires_abort()
    p.abort_transaction(DEADLINE_S)
    p.begin_transaction()
    p.produce(topic, b"committed")
    p.commit_transaction(DEADLINE_S)
    assert read_committed(acl_broker, topic) == [b"committed"]
    assert transactional_id in transactions(acl_broker)
    create_acls(acl_broker, acl("carol", TXN_ID, transactional_id, AclOperation.WRITE, DENY))
    error = init_error(acl_broker, "carol", transactional_id)
    assert error.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, error


def idempotent_produce(broker: EmbeddedBroker, user: str, topic: str) -> KafkaError | None:
    """Produces one record with an idempotent producer: None once delivered, else the fatal
    error that failed the producer."""
    errors: list[KafkaError] = []
    p = Producer(as_user(broker, user, **{
        "enable.idempotence": True, "message.timeout.ms": 10000,
        "error_cb": lambda e: errors.append(e)}))
    reports: list[KafkaError | None] = []
    p.produce(topic, b"idempotent", on_delivery=lambda err, msg: reports.append(err))
    deadline = time.monotonic() + DEADLINE_S
    while not reports and not errors and time.monotonic() < deadline:
        try:
            p.poll(0.1)
        except KafkaException as exc:  # the fatal error, raised from the callback
            errors.append(exc.args[0])
    if errors:
        return errors[0]
    assert reports == [None], reports
    return None


def high_watermark(broker: EmbeddedBroker, topic: str) -> int:
    c = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": unique_name("w")})
    try:
        return int(c.get_watermark_offsets(TopicPartition(topic, 0), timeout=DEADLINE_S)[1])
    finally:
        c.close()


def test_an_idempotent_producer_needs_idempotent_write_or_write_on_a_topic(
        acl_broker: EmbeddedBroker) -> None:
    topic = create_topic(acl_broker.bootstrap_servers, unique_name("dave"))
    # DESCRIBE on the topic (Metadata) but no WRITE anywhere: InitProducerId is refused.
    create_acls(acl_broker, acl("dave", TOPIC, topic, AclOperation.DESCRIBE))
    error = idempotent_produce(acl_broker, "dave", topic)
    assert error is not None and error.code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, error
    assert error.fatal()
    assert high_watermark(acl_broker, topic) == 0
    # KIP-679: WRITE on some topic is enough for a producer id.
    writing = acl("dave", TOPIC, "dave-", AclOperation.WRITE, pattern=PREFIXED)
    create_acls(acl_broker, writing)
    assert idempotent_produce(acl_broker, "dave", topic) is None
    assert high_watermark(acl_broker, topic) == 1
    create_acls(acl_broker, acl("dave", TOPIC, "dave", AclOperation.WRITE, DENY, PREFIXED))
    error = idempotent_produce(acl_broker, "dave", topic)
    assert error is not None and error.code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, error
    assert high_watermark(acl_broker, topic) == 1


def test_a_super_user_needs_no_acls(acl_broker: EmbeddedBroker) -> None:
    topic = topic_with_a_record(acl_broker, "acl-super")
    group = unique_name("acl-super-g")
    assert consume_and_commit(acl_broker, "admin", group, topic) == b"first"
    assert committed_offsets(acl_broker, group) == {(topic, 0): 1}
    transactional_id = unique_name("acl-super-tx")
    p = Producer(as_user(acl_broker, "admin", **{"transactional.id": transactional_id}))
    p.init_transactions(DEADLINE_S)
    p.begin_transaction()
    p.produce(topic, b"super")
    p.commit_transaction(DEADLINE_S)
    assert read_committed(acl_broker, topic) == [b"first", b"super"]
