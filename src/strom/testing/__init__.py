"""Test tooling for users of strom and of any Kafka client: an in-process broker, the
storage engine conformance checker (check_storage_engine), a recorded-history format with
its checker for fault tests (history, history_jsonl, history_check), and the cluster fault
harness that records such histories (cluster, tcp_proxy, workload, nemesis, fault_run);
docs/testing.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strom.testing.embedded import EmbeddedBroker
    from strom.testing.storage_conformance import check_storage_engine

__all__ = ["EmbeddedBroker", "check_storage_engine"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the pytest plugin imports this package before any test runs.
    if name == "EmbeddedBroker":
        from strom.testing.embedded import EmbeddedBroker

        return EmbeddedBroker
    if name == "check_storage_engine":
        from strom.testing.storage_conformance import check_storage_engine

        return check_storage_engine
    raise AttributeError(name)
