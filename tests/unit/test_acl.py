"""The standard authorizer's decision (Kafka's StandardAuthorizer semantics) and ACL filters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.security.acl import (
    CLUSTER_NAME,
    AclBinding,
    AclError,
    AclFilter,
    Authorizer,
    Operation,
    PatternType,
    Permission,
    ResourceType,
)

T, G, C = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
LIT, PRE = PatternType.LITERAL, PatternType.PREFIXED
ALLOW, DENY = Permission.ALLOW, Permission.DENY
ALICE, BOB = "User:alice", "User:bob"


def acl(rtype: ResourceType, name: str, op: Operation, perm: Permission = ALLOW,
        principal: str = ALICE, pattern: PatternType = LIT, host: str = "*") -> AclBinding:
    return AclBinding(rtype, name, pattern, principal, host, op, perm)


def test_no_acl_means_refused_unless_allowed_everyone() -> None:
    assert not Authorizer().authorize(ALICE, "h", Operation.READ, T, "orders")
    assert Authorizer(allow_if_no_acl=True).authorize(ALICE, "h", Operation.READ, T, "orders")
    # An ACL on the resource for someone else: "no ACL found" no longer applies.
    other = Authorizer([acl(T, "orders", Operation.READ, principal=BOB)], allow_if_no_acl=True)
    assert not other.authorize(ALICE, "h", Operation.READ, T, "orders")


def test_allow_literal_wildcard_and_prefixed() -> None:
    authz = Authorizer([acl(T, "orders", Operation.WRITE),
                        acl(T, "*", Operation.READ),
                        acl(G, "team-", Operation.READ, pattern=PRE)])
    assert authz.authorize(ALICE, "h", Operation.WRITE, T, "orders")
    assert not authz.authorize(ALICE, "h", Operation.WRITE, T, "orders2")
    assert authz.authorize(ALICE, "h", Operation.READ, T, "anything")
    assert authz.authorize(ALICE, "h", Operation.READ, G, "team-a")
    assert not authz.authorize(ALICE, "h", Operation.READ, G, "team")
    assert not authz.authorize(BOB, "h", Operation.READ, G, "team-a")


def test_deny_wins_and_all() -> None:
    authz = Authorizer([acl(T, "*", Operation.ALL), acl(T, "secret", Operation.READ, DENY)])
    assert authz.authorize(ALICE, "h", Operation.ALTER, T, "x")
    assert not authz.authorize(ALICE, "h", Operation.READ, T, "secret")
    assert authz.authorize(ALICE, "h", Operation.WRITE, T, "secret")
    everything_denied = Authorizer([acl(T, "*", Operation.READ),
                                    acl(T, "p-", Operation.ALL, DENY, pattern=PRE)])
    assert not everything_denied.authorize(ALICE, "h", Operation.READ, T, "p-1")


def test_implied_operations() -> None:
    authz = Authorizer([acl(T, "t", Operation.WRITE), acl(T, "c", Operation.ALTER_CONFIGS)])
    assert authz.authorize(ALICE, "h", Operation.DESCRIBE, T, "t")
    assert not authz.authorize(ALICE, "h", Operation.READ, T, "t")
    assert authz.authorize(ALICE, "h", Operation.DESCRIBE_CONFIGS, T, "c")
    assert not authz.authorize(ALICE, "h", Operation.DESCRIBE, T, "c")
    # A DENY of READ does not deny DESCRIBE (only ALL or the operation itself deny it).
    deny_read = Authorizer([acl(T, "t", Operation.DESCRIBE), acl(T, "t", Operation.READ, DENY)])
    assert deny_read.authorize(ALICE, "h", Operation.DESCRIBE, T, "t")


def test_principal_and_host_wildcards_and_super_users() -> None:
    authz = Authorizer([acl(T, "t", Operation.READ, principal="User:*", host="10.0.0.1")],
                       super_users=["User:root"])
    assert authz.authorize(BOB, "10.0.0.1", Operation.READ, T, "t")
    assert not authz.authorize(BOB, "10.0.0.2", Operation.READ, T, "t")
    assert authz.authorize("User:root", "any", Operation.DELETE, C, CLUSTER_NAME)


def test_authorized_operations_bits() -> None:
    authz = Authorizer([acl(T, "t", Operation.READ)])
    bits = authz.authorized_operations(ALICE, "h", T, "t")
    assert bits == (1 << Operation.READ) | (1 << Operation.DESCRIBE)


def test_replace_drops_cached_decisions() -> None:
    authz = Authorizer([acl(T, "t", Operation.READ)])
    assert authz.authorize(ALICE, "h", Operation.READ, T, "t")
    authz.replace([])
    assert not authz.authorize(ALICE, "h", Operation.READ, T, "t")


@pytest.mark.parametrize(("binding", "problem"), [
    (acl(T, "", Operation.READ), "must not be empty"),
    (acl(T, "*", Operation.READ, pattern=PRE), "cannot be '*'"),
    (acl(C, "other", Operation.ALTER), "kafka-cluster"),
    (acl(G, "g", Operation.WRITE), "not an operation on GROUP"),
    (acl(T, "t", Operation.ANY), "concrete operation"),
    (acl(T, "t", Operation.READ, principal="alice"), "not a principal"),
    (AclBinding(ResourceType.ANY, "t", LIT, ALICE, "*", Operation.READ, ALLOW), "concrete"),
    (AclBinding(T, "t", PatternType.MATCH, ALICE, "*", Operation.READ, ALLOW), "LITERAL"),
])
def test_bindings_kafka_refuses(binding: AclBinding, problem: str) -> None:
    with pytest.raises(AclError, match=problem):
        binding.check()


def test_filters_any_literal_and_match() -> None:
    lit, star = acl(T, "orders", Operation.READ), acl(T, "*", Operation.WRITE)
    pre = acl(T, "ord", Operation.READ, pattern=PRE)
    other = acl(G, "orders", Operation.READ, principal=BOB)
    everything = [lit, star, pre, other]
    assert [b for b in everything if AclFilter().matches(b)] == everything
    exact = AclFilter(T, "orders", LIT)
    assert [b for b in everything if exact.matches(b)] == [lit]
    match = AclFilter(T, "orders", PatternType.MATCH)
    assert [b for b in everything if match.matches(b)] == [lit, star, pre]
    by_principal = AclFilter(principal=BOB)
    assert [b for b in everything if by_principal.matches(b)] == [other]


names = st.text(alphabet="abc-*", min_size=1, max_size=5)
bindings = st.builds(AclBinding, st.sampled_from([T, G]), names, st.sampled_from([LIT, PRE]),
                     st.sampled_from([ALICE, BOB, "User:*"]), st.sampled_from(["*", "h"]),
                     st.sampled_from([Operation.READ, Operation.ALL, Operation.DESCRIBE]),
                     st.sampled_from([ALLOW, DENY]))


@settings(max_examples=300, deadline=None)
@given(st.lists(bindings, max_size=12), st.sampled_from([T, G]), names,
       st.sampled_from([Operation.READ, Operation.DESCRIBE]), st.sampled_from([ALICE, BOB]))
def test_the_indexed_decision_equals_a_scan_of_every_binding(
        acls: list[AclBinding], rtype: ResourceType, name: str, op: Operation,
        principal: str) -> None:
    """The literal/prefix index finds exactly the bindings a full scan finds, and the
    decision follows Kafka's rule read straight off the list."""
    authz = Authorizer(acls)
    scanned = [b for b in set(acls) if b.matches_resource(rtype, name)]
    assert sorted(authz.matching(rtype, name), key=repr) == sorted(scanned, key=repr)
    mine = [b for b in scanned if b.principal in (principal, "User:*") and b.host in ("*", "h")]
    implied = {Operation.DESCRIBE: {Operation.DESCRIBE, Operation.READ}}.get(op, {op})
    denied = any(b.permission is DENY and b.operation in (Operation.ALL, op) for b in mine)
    allowed = any(b.permission is ALLOW and (b.operation is Operation.ALL
                                             or b.operation in implied) for b in mine)
    assert authz.authorize(principal, "h", op, rtype, name) == (
        bool(scanned) and allowed and not denied)


def test_records_round_trip() -> None:
    b = acl(T, 'we,ird"name', Operation.READ, pattern=PRE)
    assert AclBinding.from_record(b.record()) == b
    with pytest.raises(AclError):
        AclBinding.from_record("[1,2]")


@pytest.mark.parametrize(("acls", "expected"), [
    ((), False),
    ((acl(T, "out", Operation.WRITE),), True),
    ((acl(T, "out", Operation.ALL),), True),
    ((acl(T, "out", Operation.READ),), False),
    ((acl(G, "out", Operation.WRITE),), False),
    ((acl(T, "out", Operation.WRITE), acl(T, "out", Operation.WRITE, DENY)), False),
    ((acl(T, "out-1", Operation.WRITE), acl(T, "out", Operation.WRITE, DENY, pattern=PRE)), False),
    ((acl(T, "out-", Operation.WRITE, pattern=PRE), acl(T, "o", Operation.ALL, DENY, pattern=PRE)),
     False),
    ((acl(T, "out", Operation.WRITE), acl(T, "*", Operation.WRITE, DENY)), False),
    ((acl(T, "out", Operation.WRITE), acl(T, "other", Operation.WRITE, DENY)), True),
    ((acl(T, "*", Operation.WRITE, principal="User:*"),), True),
    ((acl(T, "out", Operation.WRITE, principal=BOB),), False),
    ((acl(T, "out", Operation.WRITE, host="10.0.0.9"),), False),
])
def test_authorize_by_resource_type(acls: tuple[AclBinding, ...], expected: bool) -> None:
    """Kafka's authorizeByResourceType (KIP-679): may alice WRITE some topic?"""
    authorizer = Authorizer(acls)
    assert authorizer.authorize_by_resource_type(ALICE, "127.0.0.1", Operation.WRITE, T) \
        is expected
    assert Authorizer(acls, super_users=[ALICE]).authorize_by_resource_type(
        ALICE, "127.0.0.1", Operation.WRITE, T)
