"""CreateAcls, DescribeAcls and DeleteAcls through confluent-kafka's AdminClient and
`strom acl`: Kafka's validation, filters (ANY, MATCH), SECURITY_DISABLED without an
authorizer, CLUSTER_AUTHORIZATION_FAILED for a principal without ALTER on the cluster, ACLs
surviving a restart, and ACLs made at one broker applied at another over PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from strom.cli.main import cli
from strom.security.acl import Operation
from strom.security.acl import ResourceType as Resource
from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S
from tests.integration.test_sasl import sasl_conf

AUTHZ = {"listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
         "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
         "super.users": "User:ANONYMOUS"}


def binding(name: str, op: AclOperation, principal: str = "User:alice",
            pattern: ResourcePatternType = ResourcePatternType.LITERAL,
            permission: AclPermissionType = AclPermissionType.ALLOW,
            rtype: ResourceType = ResourceType.TOPIC) -> AclBinding:
    return AclBinding(rtype, name, pattern, principal, "*", op, permission)


def every(admin: AdminClient) -> set[tuple[str, str, str, str]]:
    flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                           AclOperation.ANY, AclPermissionType.ANY)
    return {(b.name, b.resource_pattern_type.name, b.principal, b.operation.name)
            for b in admin.describe_acls(flt).result(DEADLINE_S)}


@pytest.fixture
def authz_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(settings=dict(AUTHZ),
                        data_dir=tmp_path_factory.mktemp("acl-data")) as broker:
        yield broker


def test_create_describe_delete(authz_broker: EmbeddedBroker) -> None:
    admin = AdminClient({"bootstrap.servers": authz_broker.bootstrap_servers})
    created = admin.create_acls([
        binding("orders", AclOperation.READ),
        binding("raw-", AclOperation.WRITE, pattern=ResourcePatternType.PREFIXED),
        binding("billing", AclOperation.READ, rtype=ResourceType.GROUP),
        binding("*", AclOperation.ALL, principal="User:mallory",
                permission=AclPermissionType.DENY)])
    for future in created.values():
        future.result(DEADLINE_S)
    assert every(admin) == {("orders", "LITERAL", "User:alice", "READ"),
                            ("raw-", "PREFIXED", "User:alice", "WRITE"),
                            ("billing", "LITERAL", "User:alice", "READ"),
                            ("*", "LITERAL", "User:mallory", "ALL")}
    match = AclBindingFilter(ResourceType.TOPIC, "raw-events", ResourcePatternType.MATCH,
                             None, None, AclOperation.ANY, AclPermissionType.ANY)
    assert {b.name for b in admin.describe_acls(match).result(DEADLINE_S)} == {"raw-", "*"}
    # Kafka's checks: a group cannot be written, a PREFIXED '*' is meaningless.
    bad = admin.create_acls([binding("g", AclOperation.WRITE, rtype=ResourceType.GROUP)])
    with pytest.raises(KafkaException, match="not an operation on GROUP"):
        next(iter(bad.values())).result(DEADLINE_S)
    deleted = admin.delete_acls([AclBindingFilter(
        ResourceType.TOPIC, None, ResourcePatternType.ANY, "User:alice", None,
        AclOperation.ANY, AclPermissionType.ANY)])
    gone = next(iter(deleted.values())).result(DEADLINE_S)
    assert {b.name for b in gone} == {"orders", "raw-"}
    assert {name for name, *_ in every(admin)} == {"billing", "*"}
    # Durable: a restart keeps them.
    authz_broker.restart()
    admin = AdminClient({"bootstrap.servers": authz_broker.bootstrap_servers})
    assert {name for name, *_ in every(admin)} == {"billing", "*"}


def test_the_cli_adds_lists_and_removes(authz_broker: EmbeddedBroker) -> None:
    runner = CliRunner()
    b = ["-b", authz_broker.bootstrap_servers]
    done = runner.invoke(cli, ["acl", "add", "--allow-principal", "User:alice", "--operation",
                               "Read", "--operation", "Describe", "--topic", "orders",
                               "--group", "billing", *b])
    assert done.exit_code == 0, done.output
    assert "added 4 ACLs" in done.output
    listed = runner.invoke(cli, ["acl", "list", "--topic", "orders", *b])
    assert listed.exit_code == 0, listed.output
    assert "orders" in listed.output and "billing" not in listed.output
    as_json = runner.invoke(cli, ["acl", "list", "--topic", "orders", "--output", "json", *b])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["acls"] == [
        {"resource": "TOPIC", "name": "orders", "pattern": "LITERAL", "principal": "User:alice",
         "host": "*", "operation": op, "permission": "ALLOW"} for op in ("DESCRIBE", "READ")]
    empty = runner.invoke(cli, ["acl", "list", "--topic", "none", "--output", "json", *b])
    assert json.loads(empty.stdout) == {"acls": []} and "no ACLs" in empty.stderr
    done = runner.invoke(cli, ["acl", "remove", "--topic", "orders", "--force", *b])
    assert done.exit_code == 0 and "removed 2 ACLs" in done.output, done.output
    admin = AdminClient({"bootstrap.servers": authz_broker.bootstrap_servers})
    assert {name for name, *_ in every(admin)} == {"billing"}
    refused = runner.invoke(cli, ["acl", "add", "--topic", "x", *b])
    assert refused.exit_code == 1 and "--allow-principal" in refused.output


def test_only_principals_allowed_to_alter_the_cluster_manage_acls(
        authz_broker: EmbeddedBroker) -> None:
    admin = AdminClient({"bootstrap.servers": authz_broker.bootstrap_servers})
    admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
        "alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
        b"pw")])["alice"].result(DEADLINE_S)
    alice = AdminClient(sasl_conf(authz_broker, "SCRAM-SHA-256", "alice", "pw"))
    refused = alice.create_acls([binding("t", AclOperation.READ)])
    with pytest.raises(KafkaException, match=r"CLUSTER_AUTHORIZATION_FAILED|uthoriz"):
        next(iter(refused.values())).result(DEADLINE_S)
    assert every(admin) == set()
    granted = admin.create_acls([
        binding("kafka-cluster", AclOperation.ALTER, rtype=ResourceType.BROKER),
        binding("kafka-cluster", AclOperation.DESCRIBE, rtype=ResourceType.BROKER)])
    for future in granted.values():
        future.result(DEADLINE_S)
    for future in alice.create_acls([binding("t", AclOperation.READ)]).values():
        future.result(DEADLINE_S)
    assert ("t", "LITERAL", "User:alice", "READ") in every(alice)


def test_without_an_authorizer_acls_are_refused() -> None:
    with EmbeddedBroker() as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        future = next(iter(admin.create_acls([binding("t", AclOperation.READ)]).values()))
        with pytest.raises(KafkaException, match=r"SECURITY_DISABLED|No Authorizer"):
            future.result(DEADLINE_S)


def test_acls_made_at_one_broker_apply_at_the_other(postgres_url: str) -> None:
    settings = {**AUTHZ, "acl.refresh.interval.ms": "200",
                "broker.heartbeat.interval.ms": "200", "broker.session.timeout.ms": "1500"}
    with EmbeddedBroker(settings={**settings, "node.id": "1"}, storage=postgres_url) as one, \
            EmbeddedBroker(settings={**settings, "node.id": "2"}, storage=postgres_url) as two:
        admin = AdminClient({"bootstrap.servers": one.bootstrap_servers})
        for future in admin.create_acls([binding("shared", AclOperation.WRITE)]).values():
            future.result(DEADLINE_S)
        assert two.server.broker is not None
        authorizer = two.server.broker.acls.authorizer
        assert authorizer is not None
        deadline = time.monotonic() + DEADLINE_S
        while not authorizer.authorize("User:alice", "127.0.0.1", Operation.WRITE,
                                       Resource.TOPIC, "shared"):
            assert time.monotonic() < deadline, "broker 2 never applied the new ACL"
            time.sleep(0.1)
        admin_two = AdminClient({"bootstrap.servers": two.bootstrap_servers})
        assert ("shared", "LITERAL", "User:alice", "WRITE") in every(admin_two)
