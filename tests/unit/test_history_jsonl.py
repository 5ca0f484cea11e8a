"""Histories survive a round trip through JSON lines (every event type, any generated
history), a recorder appends from several threads without losing or splitting an event, and a
malformed line is refused with its line number and the reason."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from strom.testing.history import (
    EVENT_TYPES,
    FinalRead,
    Note,
    ProduceAttempted,
    ProduceUnknown,
    RecordRead,
)
from strom.testing.history_check import check, check_file
from strom.testing.history_jsonl import (
    HistoryFormatError,
    HistoryRecorder,
    decode_event,
    encode_event,
    iter_history,
    read_history,
    write_history,
)
from tests.history_sim import SimKafka, histories


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_any_history_round_trips_and_checks_the_same(sim: SimKafka) -> None:
    lines = [encode_event(e) for e in sim.events]
    assert all("\n" not in line for line in lines)
    assert list(iter_history(lines)) == sim.events
    assert check(iter_history(lines)) == check(sim.events)


def test_every_event_type_has_a_name_and_round_trips() -> None:
    samples = [
        ProduceAttempted(producer="p", topic="t", partition=1, value="v", txn="x", time_ms=5),
        ProduceUnknown(producer="p", value="v\n\"quoted\" ü", error="timed out"),
        RecordRead(consumer="c", topic="t", partition=0, offset=9, value="v",
                   isolation="read_committed"),
        Note(text="SIGKILL broker 2"),
    ]
    for event in samples:
        assert json.loads(encode_event(event))["type"] in EVENT_TYPES
        assert decode_event(encode_event(event)) == event


def test_a_file_written_is_read_back_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    events = [ProduceAttempted(producer="p", topic="t", partition=0, value="a"),
              FinalRead(consumer="c", topic="t", partition=0, end_offset=0)]
    write_history(path, events)
    assert read_history(path) == events
    assert check_file(path).summary.writes_unknown == 1


@pytest.mark.parametrize(("line", "reason"), [
    ("{not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"type": "produce_teleported"}', "no known 'type'"),
    ('{"type": "note"}', "missing 'text'"),
    ('{"type": "note", "text": "x", "colour": 1}', "unknown fields ['colour']"),
    ('{"type": "produce_failed", "producer": "p", "value": 3}', "ProduceFailed.value"),
    ('{"type": "final_read", "consumer": "c", "topic": "t", "partition": true, '
     '"end_offset": 1}', "FinalRead.partition"),
    ('{"type": "record_read", "consumer": "c", "topic": "t", "partition": 0, "offset": 1, '
     '"value": "v", "isolation": "read_whatever"}', "RecordRead.isolation"),
])
def test_a_bad_line_is_refused_with_its_number(line: str, reason: str) -> None:
    good = encode_event(Note(text="start"))
    with pytest.raises(HistoryFormatError, match=rf"^line 3: .*{re.escape(reason)}") as e:
        list(iter_history([good, "", line]))
    assert reason in str(e.value)


def test_recorder_stamps_time_and_keeps_every_event_of_every_thread(tmp_path: Path) -> None:
    path = tmp_path / "soak.jsonl"
    threads_count, per_thread = 4, 500

    def produce(recorder: HistoryRecorder, n: int) -> None:
        for i in range(per_thread):
            recorder.record(ProduceAttempted(producer=f"p{n}", topic="t", partition=0,
                                             value=f"p{n}-{i}"))

    with HistoryRecorder(path, flush_every=7) as recorder:
        threads = [threading.Thread(target=produce, args=(recorder, n))
                   for n in range(threads_count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        kept = recorder.events
    from_file = read_history(path)
    assert from_file == kept
    assert len({e.value for e in from_file if isinstance(e, ProduceAttempted)}) == (
        threads_count * per_thread)
    assert all(e.time_ms > 0 for e in from_file)
    mine = [e.value for e in from_file if isinstance(e, ProduceAttempted) and e.producer == "p1"]
    assert mine == [f"p1-{i}" for i in range(per_thread)]


def test_recorder_without_keep_only_writes_and_keeps_a_given_time(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryRecorder(path, keep=False) as recorder:
        recorder.record(Note(text="partition broker 1", time_ms=42))
        assert recorder.events == []
    assert read_history(path) == [Note(text="partition broker 1", time_ms=42)]
