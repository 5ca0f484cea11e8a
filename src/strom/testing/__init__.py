"""Test tooling for users of strom and of any Kafka client: an in-process broker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strom.testing.embedded import EmbeddedBroker

__all__ = ["EmbeddedBroker"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the pytest plugin imports this package before any test runs.
    if name == "EmbeddedBroker":
        from strom.testing.embedded import EmbeddedBroker

        return EmbeddedBroker
    raise AttributeError(name)
