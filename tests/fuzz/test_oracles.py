"""The fuzzer's per-frame and log oracles judge correctly: an answer that leaves out a topic
it was asked about is incomplete (and a full one is not), a server path is seen in an answer,
a Produce frame's acks=0 is read from every header layout, and a traceback in the broker log
gets one signature and the frame sent on the connection it names."""

from __future__ import annotations

import random
import time
from datetime import timedelta
from pathlib import Path

from kio.schema.delete_topics.v4.request import DeleteTopicsRequest
from kio.schema.delete_topics.v4.response import DeletableTopicResult, DeleteTopicsResponse
from kio.schema.errors import ErrorCode

from bench.fuzz import answers, batches, wire
from bench.fuzz.campaign import _acks_zero
from bench.fuzz.logscan import FrameHistory, LogWatch
from strom.protocol.messages import encode_response


def delete_frame(names: list[str]) -> bytes:
    request = DeleteTopicsRequest(topic_names=tuple(names), timeout=timedelta(seconds=1))
    return wire.encode_frame(request, 42)


def delete_answer(names: list[str]) -> bytes:
    body = DeleteTopicsResponse(throttle_time=timedelta(0), responses=tuple(
        DeletableTopicResult(name=n, error_code=ErrorCode.none) for n in names))
    return encode_response(20, 4, 42, body)[4:]


def test_an_answer_leaving_a_topic_out_is_incomplete() -> None:
    frame = delete_frame(["a", "b"])
    assert answers.incomplete(frame, delete_answer(["a", "b"])) is None
    missing = answers.incomplete(frame, delete_answer(["a"]))
    assert missing is not None and "1 of 2" in missing and "b" in missing
    assert answers.incomplete(frame, delete_answer([])) is not None


def test_correlation_ids_and_server_paths() -> None:
    frame = delete_frame(["a"])
    assert answers.correlation_mismatch(frame, delete_answer(["a"])) is None
    other = b"\x00\x00\x00\x07" + delete_answer(["a"])[4:]
    assert answers.correlation_mismatch(frame, other) == "sent correlation id 42, answer has 7"
    answer = b"....error: cannot write /tmp/strom-fuzz-x/data/__topics/t.json"
    assert answers.leaks_path(20, answer, b"/tmp/strom-fuzz-x")
    assert not answers.leaks_path(35, answer, b"/tmp/strom-fuzz-x")  # DescribeLogDirs
    assert not answers.leaks_path(20, answer, None)


def test_acks_zero_is_read_for_every_produce_layout() -> None:
    batch = bytes(batches.valid_batch(random.Random(1)))
    for version in (3, 8, 9, 12):
        for acks in (0, 1, -1):
            frame = batches.produce_frame(version, "t", 0, batch, acks, 5,
                                          transactional_id="tx" if version % 2 else None)
            assert _acks_zero(frame) == (acks == 0), (version, acks)
    v2 = bytearray(batches.produce_frame(3, "t", 0, batch, 1, 5))
    v2[6:8] = (2).to_bytes(2, "big")  # v2 has no transactional id: acks comes first
    v2[4 + 10 + 10:4 + 10 + 12] = b"\x00\x00"
    assert _acks_zero(bytes(v2))


def test_a_traceback_gets_a_signature_and_its_frame(tmp_path: Path) -> None:
    log = tmp_path / "broker.log"
    log.write_text("")
    history = FrameHistory()
    watch = LogWatch(log, history)
    history.sent(51000, b"old frame")
    history.sent(51000, b"the frame")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()) + ",123"
    record = (f"{stamp} ERROR strom.server.connection: error handling API 3 v12 from "
              "127.0.0.1:51000\nTraceback (most recent call last):\n"
              '  File "/x/engine.py", line 12, in save\n    do()\n'
              "OSError: [Errno 36] File name too long: 'aaaa'\n")
    with log.open("a") as out:
        out.write(record + record.replace("51000", "51999"))
        out.write(f"{stamp} WARNING strom.server.connection: closing connection\n")
        out.write(f"{stamp} ERROR strom.broker.txn: appending failed 17 times\n")
    watch.stop()
    assert watch.counts.tracebacks == 2 and watch.counts.errors == 3
    assert watch.counts.warnings == 1
    [signature] = watch.counts.signatures.values()
    assert signature.count == 2 and "File name too long" in signature.key
    assert signature.frames == [b"the frame"]  # port 51999 sent nothing
    assert watch.counts.error_messages == {"strom.broker.txn: appending failed N times": 1}
