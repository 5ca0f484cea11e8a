"""DescribeClientQuotas (48) and AlterClientQuotas (49): client quotas (strom.security.quotas)
on user, client-id and ip entities and their defaults, stored by the engine and enforced by
every broker (strom.broker.quotas). Describing needs DESCRIBE_CONFIGS on the cluster,
altering ALTER_CONFIGS (CLUSTER_AUTHORIZATION_FAILED otherwise)."""

from __future__ import annotations

from typing import Any, Final

from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import CLUSTER_NAME, Operation, ResourceType
from strom.security.quotas import Entity, QuotaError, check_value, entity_of, record_key

EXACT, DEFAULT, SPECIFIED = 0, 1, 2
UNAUTHORIZED: Final = "Cluster authorization failed."


def _component_matches(entity: dict[str, str | None], kind: str, match_type: int,
                       match: str | None) -> bool:
    if kind not in entity:
        return False
    name = entity[kind]
    if match_type == EXACT:
        return name is not None and name == match
    if match_type == DEFAULT:
        return name is None
    return name is not None


def _describe_error(b: ResponseBuilder, code: ErrorCode, message: str) -> Any:
    return b.make("DescribeClientQuotasResponse", throttle_time=NO_THROTTLE, error_code=code,
                  error_message=message, entries=None)


@api(48, "DescribeClientQuotas", (0, 1), "user, client-id and ip entities and defaults; "
     "EXACT, DEFAULT and SPECIFIED matches, strict or not")
async def handle_describe_client_quotas(broker: Broker, ctx: RequestContext, request: Any,
                                        b: ResponseBuilder) -> Any:
    if not ctx.allowed(Operation.DESCRIBE_CONFIGS, ResourceType.CLUSTER, CLUSTER_NAME):
        return _describe_error(b, ErrorCode.cluster_authorization_failed, UNAUTHORIZED)
    components = [(str(c.entity_type), int(c.match_type), c.match) for c in request.components]
    kinds = [kind for kind, _, _ in components]
    if len(set(kinds)) != len(kinds):
        return _describe_error(b, ErrorCode.invalid_request,
                               "Duplicate entity type in the request components")
    if any(match_type not in (EXACT, DEFAULT, SPECIFIED) for _, match_type, _ in components):
        return _describe_error(b, ErrorCode.invalid_request, "Unknown match type")
    entries = []
    for entity, values in sorted(broker.quotas.quotas.values.items(),
                                 key=lambda item: record_key(item[0])):
        names = dict(entity)
        if bool(request.strict) and set(names) != set(kinds):
            continue
        if not all(_component_matches(names, *c) for c in components):
            continue
        entries.append(b.make(
            "EntryData",
            entity=tuple(b.make("EntityData", entity_type=kind, entity_name=name)
                         for kind, name in entity),
            values=tuple(b.make("ValueData", key=key, value=value)
                         for key, value in sorted(values.items()))))
    return b.make("DescribeClientQuotasResponse", throttle_time=NO_THROTTLE,
                  error_code=ErrorCode.none, error_message=None, entries=tuple(entries))


def _changes(entry: Any) -> tuple[Entity, dict[str, float | None]]:
    entity = entity_of((str(e.entity_type), e.entity_name) for e in entry.entity)
    ops: dict[str, float | None] = {}
    for op in entry.ops:
        key = str(op.key)
        if key in ops:
            raise QuotaError(f"{key} appears twice for one entity")
        if bool(op.remove):
            ops[key] = None
            check_value(entity, key, 1.0)  # the key must be one of the entity's
        else:
            check_value(entity, key, float(op.value))
            ops[key] = float(op.value)
    return entity, ops


@api(49, "AlterClientQuotas", (0, 1), "set and remove quota values; validate_only")
async def handle_alter_client_quotas(broker: Broker, ctx: RequestContext, request: Any,
                                     b: ResponseBuilder) -> Any:
    allowed = ctx.allowed(Operation.ALTER_CONFIGS, ResourceType.CLUSTER, CLUSTER_NAME)
    results = []
    changes: dict[Entity, dict[str, float | None]] = {}
    for entry in request.entries:
        error, message = ErrorCode.none, None
        if not allowed:
            error, message = ErrorCode.cluster_authorization_failed, UNAUTHORIZED
        else:
            try:
                entity, ops = _changes(entry)
                if entity in changes:
                    raise QuotaError("the same entity appears twice in the request")
                changes[entity] = ops
            except QuotaError as exc:
                error, message = ErrorCode.invalid_request, str(exc)
        results.append(b.make("EntryData", error_code=error, error_message=message,
                              entity=tuple(b.make("EntityData", entity_type=e.entity_type,
                                                  entity_name=e.entity_name)
                                           for e in entry.entity)))
    if changes and not bool(request.validate_only):
        await broker.quotas.alter(changes)
    return b.make("AlterClientQuotasResponse", throttle_time=NO_THROTTLE,
                  entries=tuple(results))
