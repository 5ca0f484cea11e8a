"""Regressions found in review: subscription regexes cannot stall the broker (RE2, linear
time), and the generic error answer encodes for every served API version."""

from __future__ import annotations

import io

import pytest
from kio.serial import entity_writer

from strom.broker.registry import load_handlers
from strom.coordinator.group.topic_regex import RegexError, compile_topic_regex, matches
from strom.protocol.messages import ErrorCode, response_type
from strom.server.dispatch import error_body


def test_catastrophic_backtracking_pattern_runs_in_linear_time() -> None:
    # Python's re would take longer than the age of the universe here; RE2 answers at once.
    assert not matches("(a|aa)+b", "a" * 100_000 + "-")
    assert matches("orders-.*", "orders-eu")
    assert not matches("orders", "orders-eu")  # full match, as Kafka does


@pytest.mark.parametrize("pattern", ["(?=a)b", r"(a)\1", "(unclosed"])
def test_patterns_kafka_refuses_are_refused(pattern: str) -> None:
    with pytest.raises(RegexError):
        compile_topic_regex(pattern)


SERVED = sorted((spec.key, v) for spec in load_handlers().values()
                for v in range(spec.min_version, spec.max_version + 1))


@pytest.mark.parametrize("key, version", SERVED, ids=[f"{k}-v{v}" for k, v in SERVED])
def test_error_answer_encodes_for_every_served_version(key: int, version: int) -> None:
    cls = response_type(key, version)
    body = error_body(cls, ErrorCode.unknown_server_error)
    entity_writer(cls)(io.BytesIO(), body)
