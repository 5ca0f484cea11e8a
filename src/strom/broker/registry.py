"""ApiKey -> handler, with the versions each serves; ApiVersions and docs/protocol.md read it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strom.protocol.messages import ResponseBuilder

if TYPE_CHECKING:
    from strom.broker.state import Broker, RequestContext

# (broker, context, decoded request, builder of the request version's response) -> response,
# or None when no response is sent (Produce with acks=0).
Handler = Callable[["Broker", "RequestContext", Any, ResponseBuilder], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ApiSpec:
    key: int
    name: str
    min_version: int
    max_version: int
    handler: Handler
    notes: str
    # Versions advertised below min_version but answered with UNSUPPORTED_VERSION (KAFKA-18659).
    advertised_min_version: int | None = None

    @property
    def advertised_min(self) -> int:
        if self.advertised_min_version is None:
            return self.min_version
        return self.advertised_min_version

    def serves(self, version: int) -> bool:
        return self.min_version <= version <= self.max_version


REGISTRY: dict[int, ApiSpec] = {}


def api(key: int, name: str, versions: tuple[int, int], notes: str,
        advertised_min_version: int | None = None) -> Callable[[Handler], Handler]:
    """Registers a handler for `versions` (inclusive) of API `key`."""

    def register(handler: Handler) -> Handler:
        if key in REGISTRY:
            raise RuntimeError(f"API key {key} registered twice")
        REGISTRY[key] = ApiSpec(key, name, versions[0], versions[1], handler, notes,
                                advertised_min_version)
        return handler

    return register


def load_handlers() -> dict[int, ApiSpec]:
    """Imports every handler module so that each registers itself."""
    from strom.broker import handlers  # noqa: F401

    return REGISTRY
