"""The socket-free parts of the fault proxy: it pairs responses with their requests' api key and
version by correlation id (bounded), rewrites the broker's advertised address in Metadata and
FindCoordinator responses of old and flexible versions while leaving everything else byte for
byte alone, and consumes armed drops in order, only for the responses they match."""

from __future__ import annotations

import struct
from datetime import timedelta
from typing import Any

import pytest

from strom.protocol.messages import ErrorCode, ResponseBuilder, encode_response, response_type
from strom.protocol.safe_decoder import decode
from strom.testing.fault_proxy import (
    DropRules,
    FaultProxy,
    PendingRequests,
    ResponseFrame,
    rewrite_response,
)

BROKER = ("127.0.0.1", 40001)
PROXY = ("127.0.0.1", 50002)
METADATA, FIND_COORDINATOR, PRODUCE = 3, 10, 0


def request(api_key: int, version: int, correlation_id: int) -> bytes:
    return struct.pack(">hhih", api_key, version, correlation_id, -1)


def frame(api_key: int | None, version: int | None, correlation_id: int = 7) -> ResponseFrame:
    return ResponseFrame(1, correlation_id, api_key, version, 0)


def metadata_response(version: int, brokers: list[tuple[int, str, int]]) -> bytes:
    b = ResponseBuilder(METADATA, version)
    body = b.make("MetadataResponse", throttle_time=timedelta(0), controller_id=1,
                  cluster_id="c", topics=(), brokers=tuple(
                      b.make("MetadataResponseBroker", node_id=n, host=h, port=p, rack=None)
                      for n, h, p in brokers))
    return encode_response(METADATA, version, 7, body)[4:]


def decoded(api_key: int, version: int, response: bytes) -> Any:
    body_offset = 4 if version < (9 if api_key == METADATA else 3) else 5
    return decode(response_type(api_key, version), response, body_offset)[0]


@pytest.mark.parametrize("version", [1, 8, 9, 12])
def test_metadata_advertises_the_proxy(version: int) -> None:
    original = metadata_response(version, [(1, *BROKER), (2, "elsewhere", 9092)])
    rewritten = rewrite_response(frame(METADATA, version), original, BROKER, PROXY)
    assert rewritten[:4] == original[:4]  # the correlation id
    brokers = decoded(METADATA, version, rewritten).brokers
    assert [(b.node_id, b.host, b.port) for b in brokers] == [
        (1, *PROXY), (2, "elsewhere", 9092)]


def test_find_coordinator_old_and_new_versions() -> None:
    b1 = ResponseBuilder(FIND_COORDINATOR, 1)
    old = encode_response(FIND_COORDINATOR, 1, 7, b1.make(
        "FindCoordinatorResponse", throttle_time=timedelta(0), error_code=ErrorCode.none,
        error_message=None, node_id=1, host=BROKER[0], port=BROKER[1]))[4:]
    body = decoded(FIND_COORDINATOR, 1,
                   rewrite_response(frame(FIND_COORDINATOR, 1), old, BROKER, PROXY))
    assert (body.host, body.port) == PROXY

    b4 = ResponseBuilder(FIND_COORDINATOR, 4)
    new = encode_response(FIND_COORDINATOR, 4, 7, b4.make(
        "FindCoordinatorResponse", throttle_time=timedelta(0), coordinators=(b4.make(
            "Coordinator", key="g", node_id=1, host=BROKER[0], port=BROKER[1],
            error_code=ErrorCode.none, error_message=None),)))[4:]
    body = decoded(FIND_COORDINATOR, 4,
                   rewrite_response(frame(FIND_COORDINATOR, 4), new, BROKER, PROXY))
    assert [(c.key, c.host, c.port) for c in body.coordinators] == [("g", *PROXY)]


def test_other_responses_pass_unchanged() -> None:
    foreign = metadata_response(12, [(2, "elsewhere", 9092)])
    assert rewrite_response(frame(METADATA, 12), foreign, BROKER, PROXY) is foreign
    ours = metadata_response(12, [(1, *BROKER)])
    for unknown in (frame(PRODUCE, 9), frame(None, None)):
        assert rewrite_response(unknown, ours, BROKER, PROXY) is ours
    garbage = b"\0\0\0\x07\xff\xff"
    assert rewrite_response(frame(METADATA, 12), garbage, BROKER, PROXY) is garbage


def test_pending_requests_pair_responses_and_stay_bounded() -> None:
    pending = PendingRequests(limit=2)
    pending.add(request(PRODUCE, 9, 1))
    pending.add(request(METADATA, 12, 2))
    answer = pending.answer(4, struct.pack(">i", 2) + b"body")
    assert answer == ResponseFrame(4, 2, METADATA, 12, 8)
    assert pending.answer(4, struct.pack(">i", 2)).api_key is None  # answered once only
    pending.add(request(METADATA, 12, 3))
    pending.add(request(METADATA, 12, 4))  # over the limit: the oldest (1) is forgotten
    assert pending.answer(4, struct.pack(">i", 1)).api_key is None
    assert pending.answer(4, struct.pack(">i", 3)).api_key == METADATA


def test_drop_rules_are_used_up_in_order() -> None:
    rules = DropRules()
    rules.add(lambda f: f.api_key == PRODUCE, 2, True)
    rules.add(lambda f: True, 1, False)
    assert rules.pending == 3
    assert rules.take(frame(METADATA, 12)) is not None  # only the catch-all matches
    assert rules.take(frame(METADATA, 12)) is None
    produce = [rules.take(frame(PRODUCE, 9)) for _ in range(3)]
    assert [r is not None and r.close_connection for r in produce] == [True, True, False]
    assert rules.dropped == 3 and rules.pending == 0
    with pytest.raises(ValueError, match="positive"):
        rules.add(lambda f: True, 0, True)


def test_proxy_arms_faults_before_it_starts() -> None:
    proxy = FaultProxy(*BROKER)
    proxy.drop_responses(2, api_key=PRODUCE, where=lambda f: f.correlation_id > 5)
    proxy.pause()
    proxy.resume()
    assert proxy.pending_drops == 2 and proxy.dropped_responses == 0
    with pytest.raises(RuntimeError, match="not running"):
        proxy.sever()
    proxy.clear_faults()
    assert proxy.pending_drops == 0
    proxy.stop()  # stopping a proxy that never started does nothing
