"""Kafka's ACL model and the standard authorizer's decision (StandardAuthorizer semantics).

An ACL binding allows or denies one principal (`User:alice`, or `User:*` for every user),
from one host (or `*`), one operation on resources named LITERAL (exactly, or `*` for every
resource of the type) or PREFIXED. A request is authorized when no matching DENY applies and
a matching ALLOW does; DENY wins. ALLOW of ALL allows every operation, ALLOW of READ, WRITE,
DELETE or ALTER also allows DESCRIBE, and ALTER_CONFIGS allows DESCRIBE_CONFIGS. Super users
are allowed everything; a resource that no ACL names at all is allowed to everyone only with
`allow.everyone.if.no.acl.found`.

The decision is a pure function of the bindings; decisions are cached per (principal, host,
operation, resource) until the bindings change.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final


class ResourceType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class Operation(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14
    TWO_PHASE_COMMIT = 15


class Permission(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


WILDCARD: Final = "*"
CLUSTER_NAME: Final = "kafka-cluster"
WILDCARD_PRINCIPAL: Final = "User:*"
# Operations an ALLOW of the key implies (Kafka's AclEntry.supportedOperations rules).
_IMPLIED_BY: Final[dict[Operation, frozenset[Operation]]] = {
    Operation.DESCRIBE: frozenset({Operation.DESCRIBE, Operation.READ, Operation.WRITE,
                                   Operation.DELETE, Operation.ALTER}),
    Operation.DESCRIBE_CONFIGS: frozenset({Operation.DESCRIBE_CONFIGS,
                                           Operation.ALTER_CONFIGS}),
}
# The operations each resource type supports (Kafka's AclEntry.supportedOperations).
SUPPORTED_OPERATIONS: Final[dict[ResourceType, tuple[Operation, ...]]] = {
    ResourceType.TOPIC: (Operation.READ, Operation.WRITE, Operation.CREATE, Operation.DESCRIBE,
                         Operation.DELETE, Operation.ALTER, Operation.DESCRIBE_CONFIGS,
                         Operation.ALTER_CONFIGS),
    ResourceType.GROUP: (Operation.READ, Operation.DESCRIBE, Operation.DELETE),
    ResourceType.CLUSTER: (Operation.CREATE, Operation.CLUSTER_ACTION,
                           Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS,
                           Operation.IDEMPOTENT_WRITE, Operation.ALTER, Operation.DESCRIBE),
    ResourceType.TRANSACTIONAL_ID: (Operation.DESCRIBE, Operation.WRITE,
                                    Operation.TWO_PHASE_COMMIT),
    ResourceType.DELEGATION_TOKEN: (Operation.DESCRIBE,),
    ResourceType.USER: (Operation.CREATE_TOKENS, Operation.DESCRIBE_TOKENS),
}


class AclError(ValueError):
    """A binding or filter that cannot be stored or used (the message says why)."""


@dataclass(frozen=True, slots=True)
class AclBinding:
    resource_type: ResourceType
    name: str
    pattern: PatternType
    principal: str
    host: str
    operation: Operation
    permission: Permission

    def check(self) -> None:
        """Raises AclError for what Kafka refuses to create (INVALID_REQUEST)."""
        if self.resource_type in (ResourceType.UNKNOWN, ResourceType.ANY):
            raise AclError("the resource type must be a concrete type")
        if self.pattern not in (PatternType.LITERAL, PatternType.PREFIXED):
            raise AclError("the pattern type must be LITERAL or PREFIXED")
        if not self.name:
            raise AclError("the resource name must not be empty")
        if self.pattern is PatternType.PREFIXED and self.name == WILDCARD:
            raise AclError("a PREFIXED pattern cannot be '*': use a LITERAL '*'")
        if self.resource_type is ResourceType.CLUSTER and self.name != CLUSTER_NAME:
            raise AclError(f"the cluster resource is named {CLUSTER_NAME}")
        self._check_operation()
        if self.permission not in (Permission.ALLOW, Permission.DENY):
            raise AclError("the permission must be ALLOW or DENY")
        kind, sep, who = self.principal.partition(":")
        if not sep or not kind or not who:
            raise AclError(f"{self.principal!r} is not a principal (TYPE:NAME, e.g. User:alice)")
        if not self.host:
            raise AclError("the host must not be empty (use * for any host)")

    def _check_operation(self) -> None:
        if self.operation in (Operation.UNKNOWN, Operation.ANY):
            raise AclError("the operation must be a concrete operation")
        if self.operation is not Operation.ALL and (
                self.operation not in SUPPORTED_OPERATIONS[self.resource_type]):
            raise AclError(f"{self.operation.name} is not an operation on "
                           f"{self.resource_type.name}")

    def record(self) -> str:
        """The key this binding is stored under (the engine's `acl` metadata records)."""
        return json.dumps([self.resource_type.name, self.name, self.pattern.name,
                           self.principal, self.host, self.operation.name,
                           self.permission.name], separators=(",", ":"))

    @classmethod
    def from_record(cls, key: str) -> AclBinding:
        try:
            rtype, name, pattern, principal, host, op, perm = json.loads(key)
            return cls(ResourceType[rtype], name, PatternType[pattern], principal, host,
                       Operation[op], Permission[perm])
        except (ValueError, TypeError, KeyError) as exc:
            raise AclError(f"not an ACL record: {key!r} ({exc})") from None

    def matches_resource(self, resource_type: ResourceType, name: str) -> bool:
        if self.resource_type is not resource_type:
            return False
        if self.pattern is PatternType.PREFIXED:
            return name.startswith(self.name)
        return self.name in (name, WILDCARD)


@dataclass(frozen=True, slots=True)
class AclFilter:
    """DescribeAcls / DeleteAcls filters: ANY (or None) fields match anything; MATCH matches
    the bindings that would apply to the named resource (literal, `*` and prefixes)."""

    resource_type: ResourceType = ResourceType.ANY
    name: str | None = None
    pattern: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: Operation = Operation.ANY
    permission: Permission = Permission.ANY

    def check(self) -> None:
        for value, field in ((self.resource_type, "resource type"), (self.pattern, "pattern"),
                             (self.operation, "operation"), (self.permission, "permission")):
            if value == 0:
                raise AclError(f"the filter's {field} is UNKNOWN")

    def matches(self, b: AclBinding) -> bool:
        if self.resource_type is not ResourceType.ANY and b.resource_type != self.resource_type:
            return False
        if not self._name_matches(b):
            return False
        if self.principal is not None and b.principal != self.principal:
            return False
        if self.host is not None and b.host != self.host:
            return False
        if self.operation is not Operation.ANY and b.operation != self.operation:
            return False
        return self.permission is Permission.ANY or b.permission == self.permission

    def _name_matches(self, b: AclBinding) -> bool:
        if self.pattern is PatternType.MATCH:
            if self.name is None:
                return True
            if b.pattern is PatternType.PREFIXED:
                return self.name.startswith(b.name)
            return b.name in (self.name, WILDCARD)
        if self.pattern is not PatternType.ANY and b.pattern != self.pattern:
            return False
        return self.name is None or b.name == self.name


def _principal_matches(acl_principal: str, principal: str) -> bool:
    if acl_principal == principal:
        return True
    return acl_principal == WILDCARD_PRINCIPAL and principal.startswith("User:")


# The made-up resource name Kafka's authorizeByResourceType asks about first.
_ANY_RESOURCE_PROBE: Final = "hardcode"


class Authorizer:
    """The decision over a set of bindings (see the module docstring)."""

    def __init__(self, bindings: Iterable[AclBinding] = (), *,
                 super_users: Sequence[str] = (), allow_if_no_acl: bool = False) -> None:
        self.super_users = frozenset(super_users)
        self.allow_if_no_acl = allow_if_no_acl
        self._literal: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        self._prefixed: dict[ResourceType, dict[str, list[AclBinding]]] = {}
        self._prefix_lengths: dict[ResourceType, list[int]] = {}
        self._cache: dict[tuple[str, str, Operation, ResourceType, str], bool] = {}
        self.bindings: frozenset[AclBinding] = frozenset()
        self.replace(bindings)

    def replace(self, bindings: Iterable[AclBinding]) -> None:
        """Uses `bindings` from now on (the cache starts over)."""
        self.bindings = frozenset(bindings)
        literal: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        prefixed: dict[ResourceType, dict[str, list[AclBinding]]] = {}
        for b in self.bindings:
            if b.pattern is PatternType.PREFIXED:
                prefixed.setdefault(b.resource_type, {}).setdefault(b.name, []).append(b)
            else:
                literal.setdefault((b.resource_type, b.name), []).append(b)
        self._literal, self._prefixed = literal, prefixed
        self._prefix_lengths = {t: sorted({len(p) for p in by_prefix})
                                for t, by_prefix in prefixed.items()}
        self._cache = {}

    def matching(self, resource_type: ResourceType, name: str) -> list[AclBinding]:
        """Every binding that applies to the resource, whoever it is for."""
        found = list(self._literal.get((resource_type, name), ()))
        if name != WILDCARD:
            found.extend(self._literal.get((resource_type, WILDCARD), ()))
        by_prefix = self._prefixed.get(resource_type)
        if by_prefix:
            for length in self._prefix_lengths[resource_type]:
                if length > len(name):
                    break
                found.extend(by_prefix.get(name[:length], ()))
        return found

    def authorize(self, principal: str, host: str, operation: Operation,
                  resource_type: ResourceType, name: str) -> bool:
        key = (principal, host, operation, resource_type, name)
        decided = self._cache.get(key)
        if decided is None:
            decided = self._decide(principal, host, operation, resource_type, name)
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key] = decided
        return decided

    def _decide(self, principal: str, host: str, operation: Operation,
                resource_type: ResourceType, name: str) -> bool:
        if principal in self.super_users:
            return True
        acls = self.matching(resource_type, name)
        if not acls:
            return self.allow_if_no_acl
        implied = _IMPLIED_BY.get(operation, frozenset({operation}))
        allowed = False
        for acl in acls:
            if not _principal_matches(acl.principal, principal):
                continue
            if acl.host not in (WILDCARD, host):
                continue
            if acl.permission is Permission.DENY:
                if acl.operation in (Operation.ALL, operation):
                    return False
            elif acl.operation is Operation.ALL or acl.operation in implied:
                allowed = True
        return allowed

    def authorize_by_resource_type(self, principal: str, host: str, operation: Operation,
                                   resource_type: ResourceType) -> bool:
        """Kafka's authorizeByResourceType (KIP-679): whether the principal may do
        `operation` on at least one resource of the type. First a made-up resource name is
        asked about (super users, and everyone under allow.everyone.if.no.acl.found when no
        ACL names it, pass); then an ALLOW of the operation (or ALL) for the principal (or
        User:*), from its host or any, must stand that no DENY covers: a DENY on the same
        literal name or on a prefix of it, and a DENY of the literal `*`, which denies all."""
        if self.authorize(principal, host, operation, resource_type, _ANY_RESOURCE_PROBE):
            return True
        acls = [a for a in self.bindings
                if a.resource_type is resource_type and _principal_matches(a.principal, principal)
                and a.host in (host, WILDCARD) and a.operation in (operation, Operation.ALL)]
        denied = [a for a in acls if a.permission is Permission.DENY]
        literal = {a.name for a in denied if a.pattern is PatternType.LITERAL}
        prefixes = {a.name for a in denied if a.pattern is PatternType.PREFIXED}
        if WILDCARD in literal:
            return False
        for a in acls:
            if a.permission is not Permission.ALLOW:
                continue
            if a.pattern is PatternType.LITERAL and a.name == WILDCARD:
                return True
            if a.pattern is PatternType.LITERAL and a.name in literal:
                continue
            if not any(a.name[:end] in prefixes for end in range(1, len(a.name) + 1)):
                return True
        return False

    def authorized_operations(self, principal: str, host: str, resource_type: ResourceType,
                              name: str) -> int:
        """Kafka's authorized_operations bit field (1 << operation) for one resource."""
        bits = 0
        for op in SUPPORTED_OPERATIONS.get(resource_type, ()):
            if self.authorize(principal, host, op, resource_type, name):
                bits |= 1 << op
        return bits
