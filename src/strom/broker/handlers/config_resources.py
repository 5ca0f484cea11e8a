"""ListConfigResources (74; ListClientMetricsResources before KIP-1142): the resources whose
configs DescribeConfigs and AlterConfigs address, as Kafka's KafkaApis lists them.

v0 lists client-metrics subscriptions only; v1 takes resource types (none: every type the
version supports) and answers UNSUPPORTED_VERSION if one of them is not among TOPIC, BROKER,
BROKER_LOGGER, CLIENT_METRICS and GROUP. strom has no client-metrics subscriptions, no group
configs and no broker loggers configurable through Kafka's APIs (DescribeConfigs serves TOPIC
and BROKER), so it lists the brokers and the topics (internal ones included, as Kafka does).

With an authorizer the request needs DESCRIBE_CONFIGS on the cluster, else it is answered
CLUSTER_AUTHORIZATION_FAILED with nothing listed (checked first, as Kafka does).
"""

from __future__ import annotations

from typing import Any, Final

from strom.broker.authorize import cluster_allowed
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import Operation

TOPIC: Final = 2
BROKER: Final = 4
BROKER_LOGGER: Final = 8
CLIENT_METRICS: Final = 16
GROUP: Final = 32
# ListConfigResourcesRequest.supportedResourceTypes, by version.
SUPPORTED_V0: Final = frozenset({CLIENT_METRICS})
SUPPORTED_V1: Final = frozenset({TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP})


async def listed_resources(broker: Broker, types: frozenset[int]) -> list[tuple[str, int]]:
    """(name, type) in Kafka's order: group, client-metrics, broker-logger, broker, topic."""
    listed: list[tuple[str, int]] = []
    if BROKER in types:
        nodes = sorted(r.node_id for r in await broker.engine.brokers())
        listed += [(str(node), BROKER) for node in nodes]
    if TOPIC in types:
        listed += [(name, TOPIC) for name in sorted(broker.engine.topics())]
    return listed


@api(74, "ListConfigResources", (0, 1), "brokers and topics (v1); no client-metrics "
     "subscriptions, group configs or broker loggers exist to list; unsupported types "
     "UNSUPPORTED_VERSION")
async def handle_list_config_resources(broker: Broker, ctx: RequestContext, request: Any,
                                       b: ResponseBuilder) -> Any:
    supported = SUPPORTED_V0 if b.version == 0 else SUPPORTED_V1
    asked = frozenset(int(t) for t in getattr(request, "resource_types", ()))
    if not cluster_allowed(ctx, Operation.DESCRIBE_CONFIGS):
        return b.make("ListConfigResourcesResponse", throttle_time=NO_THROTTLE,
                      error_code=ErrorCode.cluster_authorization_failed, config_resources=())
    if not asked <= supported:
        return b.make("ListConfigResourcesResponse", throttle_time=NO_THROTTLE,
                      error_code=ErrorCode.unsupported_version, config_resources=())
    resources = tuple(b.make("ConfigResource", resource_name=name, resource_type=kind)
                      for name, kind in await listed_resources(broker, asked or supported))
    return b.make("ListConfigResourcesResponse", throttle_time=NO_THROTTLE,
                  error_code=ErrorCode.none, config_resources=resources)
