"""CreateAcls (30), DescribeAcls (29), DeleteAcls (31): the ACLs of the standard authorizer
(strom.security.acl), stored by the engine so every broker applies them. Without an
authorizer (`authorizer.class.name` unset) all three answer SECURITY_DISABLED, as Kafka does.
Creating and deleting need ALTER on the cluster, describing DESCRIBE (CLUSTER_AUTHORIZATION_
FAILED otherwise)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Final

from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import (
    CLUSTER_NAME,
    AclBinding,
    AclError,
    AclFilter,
    Operation,
    PatternType,
    Permission,
    ResourceType,
)

DISABLED: Final = "No Authorizer is configured (authorizer.class.name)"


def _enum(kind: Any, value: int) -> Any:
    try:
        return kind(int(value))
    except ValueError:
        return kind(0)  # UNKNOWN


def _filter(f: Any) -> AclFilter:
    return AclFilter(_enum(ResourceType, f.resource_type_filter), f.resource_name_filter,
                     _enum(PatternType, f.pattern_type_filter), f.principal_filter,
                     f.host_filter, _enum(Operation, f.operation),
                     _enum(Permission, f.permission_type))


def _refusal(broker: Broker, ctx: RequestContext, operation: Operation
             ) -> tuple[ErrorCode, str] | None:
    if broker.acls.authorizer is None:
        return ErrorCode.security_disabled, DISABLED
    if not ctx.allowed(operation, ResourceType.CLUSTER, CLUSTER_NAME):
        return ErrorCode.cluster_authorization_failed, "Cluster authorization failed."
    return None


@api(30, "CreateAcls", (1, 3), "LITERAL and PREFIXED bindings of every resource type; "
     "stored by the engine, applied on every broker")
async def handle_create_acls(broker: Broker, ctx: RequestContext, request: Any,
                             b: ResponseBuilder) -> Any:
    refused = _refusal(broker, ctx, Operation.ALTER)
    results: list[Any] = []
    valid: list[AclBinding] = []
    for c in request.creations:
        error, message = refused or (ErrorCode.none, None)
        if refused is None:
            binding = AclBinding(_enum(ResourceType, c.resource_type), str(c.resource_name),
                                 _enum(PatternType, c.resource_pattern_type), str(c.principal),
                                 str(c.host), _enum(Operation, c.operation),
                                 _enum(Permission, c.permission_type))
            try:
                binding.check()
                valid.append(binding)
            except AclError as exc:
                error, message = ErrorCode.invalid_request, str(exc)
        results.append(b.make("AclCreationResult", error_code=error, error_message=message))
    if valid:
        await broker.acls.create(valid)
    return b.make("CreateAclsResponse", throttle_time=NO_THROTTLE, results=tuple(results))


@api(29, "DescribeAcls", (1, 3), "filters with ANY and MATCH")
async def handle_describe_acls(broker: Broker, ctx: RequestContext, request: Any,
                               b: ResponseBuilder) -> Any:
    refused = _refusal(broker, ctx, Operation.DESCRIBE)
    flt = _filter(request)
    if refused is None:
        try:
            flt.check()
        except AclError as exc:
            refused = ErrorCode.invalid_request, str(exc)
    if refused is not None:
        return b.make("DescribeAclsResponse", throttle_time=NO_THROTTLE, error_code=refused[0],
                      error_message=refused[1], resources=())
    by_resource: dict[tuple[int, str, int], list[AclBinding]] = defaultdict(list)
    for binding in broker.acls.bindings():
        if flt.matches(binding):
            by_resource[(binding.resource_type, binding.name, binding.pattern)].append(binding)
    resources = tuple(
        b.make("DescribeAclsResource", resource_type=rtype, resource_name=name,
               pattern_type=pattern, acls=tuple(
                   b.make("AclDescription", principal=x.principal, host=x.host,
                          operation=int(x.operation), permission_type=int(x.permission))
                   for x in sorted(found, key=lambda x: (x.principal, x.host, x.operation,
                                                         x.permission))))
        for (rtype, name, pattern), found in sorted(by_resource.items()))
    return b.make("DescribeAclsResponse", throttle_time=NO_THROTTLE, error_code=ErrorCode.none,
                  error_message=None, resources=resources)


@api(31, "DeleteAcls", (1, 3), "filters with ANY and MATCH; each filter's matches listed")
async def handle_delete_acls(broker: Broker, ctx: RequestContext, request: Any,
                             b: ResponseBuilder) -> Any:
    refused = _refusal(broker, ctx, Operation.ALTER)
    filters = [_filter(f) for f in request.filters]
    problems: list[tuple[ErrorCode, str] | None] = []
    for flt in filters:
        try:
            flt.check()
            problems.append(refused)
        except AclError as exc:
            problems.append(refused or (ErrorCode.invalid_request, str(exc)))
    usable = [f for f, p in zip(filters, problems, strict=True) if p is None]
    deleted = iter(await broker.acls.delete(usable) if usable else [])
    results = []
    for problem in problems:
        if problem is not None:
            results.append(b.make("DeleteAclsFilterResult", error_code=problem[0],
                                  error_message=problem[1], matching_acls=()))
            continue
        matching = tuple(
            b.make("DeleteAclsMatchingAcl", error_code=ErrorCode.none, error_message=None,
                   resource_type=int(x.resource_type), resource_name=x.name,
                   pattern_type=int(x.pattern), principal=x.principal, host=x.host,
                   operation=int(x.operation), permission_type=int(x.permission))
            for x in next(deleted))
        results.append(b.make("DeleteAclsFilterResult", error_code=ErrorCode.none,
                              error_message=None, matching_acls=matching))
    return b.make("DeleteAclsResponse", throttle_time=NO_THROTTLE,
                  filter_results=tuple(results))
