"""ApiVersions (18): what this broker serves, read from the registry."""

from __future__ import annotations

from typing import Any

from strom.broker.registry import REGISTRY, api
from strom.broker.state import Broker, RequestContext
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder


def api_version_entries(b: ResponseBuilder) -> tuple[Any, ...]:
    return tuple(
        b.make("ApiVersion", api_key=spec.key, min_version=spec.advertised_min,
               max_version=spec.max_version)
        for spec in sorted(REGISTRY.values(), key=lambda s: s.key)
    )


def api_versions_response(b: ResponseBuilder, error: ErrorCode) -> Any:
    return b.make("ApiVersionsResponse", error_code=error, api_keys=api_version_entries(b),
                  throttle_time=NO_THROTTLE)


@api(18, "ApiVersions", (0, 4), "unsupported versions get a v0 answer with UNSUPPORTED_VERSION")
async def handle_api_versions(broker: Broker, ctx: RequestContext, request: Any,
                              b: ResponseBuilder) -> Any:
    return api_versions_response(b, ErrorCode.none)
