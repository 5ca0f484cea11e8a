"""ApiVersions (18): what this broker serves, read from the registry.

From v3 the client names its software (KIP-511); a name or version outside Kafka's pattern
(ApiVersionsRequest.SOFTWARE_NAME_VERSION_PATTERN) is answered INVALID_REQUEST with no API
list, as Kafka's broker answers it.
"""

from __future__ import annotations

import re
from typing import Any, Final

from strom.broker.registry import REGISTRY, api
from strom.broker.state import Broker, RequestContext
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder

SOFTWARE_NAME_VERSION: Final = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")


def api_version_entries(b: ResponseBuilder) -> tuple[Any, ...]:
    return tuple(
        b.make("ApiVersion", api_key=spec.key, min_version=spec.advertised_min,
               max_version=spec.max_version)
        for spec in sorted(REGISTRY.values(), key=lambda s: s.key)
    )


def api_versions_response(b: ResponseBuilder, error: ErrorCode) -> Any:
    return b.make("ApiVersionsResponse", error_code=error, api_keys=api_version_entries(b),
                  throttle_time=NO_THROTTLE)


def valid_software(request: Any) -> bool:
    """Whether a v3+ request's client_software_name and _version both match Kafka's pattern."""
    return all(isinstance(text, str) and SOFTWARE_NAME_VERSION.fullmatch(text) is not None
               for text in (request.client_software_name, request.client_software_version))


@api(18, "ApiVersions", (0, 4), "unsupported versions get a v0 answer with UNSUPPORTED_VERSION; "
     "v3+ software names outside Kafka's pattern get INVALID_REQUEST")
async def handle_api_versions(broker: Broker, ctx: RequestContext, request: Any,
                              b: ResponseBuilder) -> Any:
    if b.version >= 3 and not valid_software(request):
        return b.make("ApiVersionsResponse", error_code=ErrorCode.invalid_request, api_keys=(),
                      throttle_time=NO_THROTTLE)
    return api_versions_response(b, ErrorCode.none)
