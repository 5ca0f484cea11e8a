"""Acknowledged data survives broker restarts: a clean restart keeps every offset and value, and
with flush.messages=1 every message the broker acknowledged survives a SIGKILL of the broker."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from strom.testing import EmbeddedBroker
from tests.integration.broker_process import serve_process
from tests.integration.conftest import (
    DEADLINE_S,
    Delivered,
    consume_partitions,
    create_topic,
    produce_all,
    producer,
    unique_name,
)

READY = re.compile(r"strom is ready on (\S+):(\d+) ")
# Messages the SIGKILL test lets the producer have unreported at any moment.
WINDOW = 500


def test_clean_restart_keeps_offsets_and_values(tmp_path: Path) -> None:
    with EmbeddedBroker(data_dir=tmp_path / "data") as b:
        topic = create_topic(b.bootstrap_servers, unique_name("restart"), partitions=2,
                             config={"segment.bytes": "4096"})
        records = [{"key": f"k{i}".encode(), "value": f"value {i} ".encode() * 20,
                    "partition": i % 2, "headers": [("i", str(i).encode())]}
                   for i in range(200)]
        delivered = produce_all(producer(b.bootstrap_servers), topic, records)
        assert not delivered.failed
        before = [(m.partition(), m.offset(), m.key(), m.value(), m.headers(), m.timestamp())
                  for m in consume_partitions(b.bootstrap_servers, topic, (0, 1))]
        assert len(before) == 200
        port = b.port

        b.restart()

        assert b.port == port
        after = [(m.partition(), m.offset(), m.key(), m.value(), m.headers(), m.timestamp())
                 for m in consume_partitions(b.bootstrap_servers, topic, (0, 1))]
        assert after == before
        more = produce_all(producer(b.bootstrap_servers), topic,
                           [{"value": b"after restart", "partition": p} for p in (0, 1)])
        assert not more.failed
        assert sorted((m.partition(), m.offset()) for m in more.acked) == [(0, 100), (1, 100)]
        tail = consume_partitions(b.bootstrap_servers, topic, (0, 1), start=100)
        assert sorted((m.partition(), m.offset(), m.value()) for m in tail) == [
            (0, 100, b"after restart"), (1, 100, b"after restart")]


def test_acknowledged_messages_survive_sigkill(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    topic = unique_name("sigkill")
    partitions = (0, 1)
    delivered = Delivered()
    produced = 0
    with serve_process(data_dir, tmp_path / "first.log", "flush.messages=1") as (proc, bootstrap):
        create_topic(bootstrap, topic, partitions=len(partitions))
        prod = producer(bootstrap, linger_ms=1, message_timeout_ms=1500, retries=0)
        killed_at = None
        in_flight_at_kill = 0
        deadline = time.monotonic() + DEADLINE_S
        # Produce with up to WINDOW messages unreported; once enough were acknowledged, kill the
        # broker while messages are in flight, and keep producing into the dead broker a while.
        while time.monotonic() < deadline:
            in_flight = produced - len(delivered.acked) - len(delivered.failed)
            if in_flight < WINDOW:
                prod.produce(topic, value=f"message-{produced}".encode(),
                          partition=partitions[produced % len(partitions)],
                          on_delivery=delivered)
                produced += 1
                prod.poll(0)
            else:
                prod.poll(0.001)
            # The kill waits for a moment with messages unreported (a fast broker can have
            # acknowledged everything sent so far at the instant the count reaches 2000).
            unreported = produced - len(delivered.acked) - len(delivered.failed)
            if killed_at is None and len(delivered.acked) >= 2000 and unreported > 0:
                proc.send_signal(signal.SIGKILL)
                killed_at = produced
                in_flight_at_kill = unreported
                proc.wait(10)
            elif killed_at is not None and produced >= killed_at + 100:
                break
        assert killed_at is not None, "too few messages were acknowledged before the deadline"
        assert prod.flush(DEADLINE_S) == 0
    assert len(delivered.acked) + len(delivered.failed) == produced
    assert in_flight_at_kill > 0, "nothing was in flight when the broker was killed"
    assert len(delivered.acked) < produced, "every message was acknowledged despite the kill"
    acked: dict[int, list[tuple[int, bytes]]] = {p: [] for p in partitions}
    for m in delivered.acked:
        acked[m.partition()].append((m.offset(), m.value()))

    with serve_process(data_dir, tmp_path / "second.log") as (_proc, bootstrap):
        survived = consume_partitions(bootstrap, topic, partitions)
        by_partition: dict[int, list[tuple[int, bytes]]] = {p: [] for p in partitions}
        for m in survived:
            by_partition[m.partition()].append((m.offset(), m.value()))
        for p in partitions:
            log = by_partition[p]
            assert [o for o, _ in log] == list(range(len(log))), f"gaps in partition {p}"
            assert acked[p] == sorted(acked[p]), "acknowledged offsets went backwards"
            stored = dict(log)
            lost = [(o, v) for o, v in acked[p] if stored.get(o) != v]
            assert not lost, f"partition {p} lost {len(lost)} acknowledged messages: {lost[:5]}"
            # Each partition holds a prefix of what was sent to it: every acknowledged message
            # and perhaps some that were written but not acknowledged before the kill.
            sent = [f"message-{n}".encode() for n in range(p, produced, len(partitions))]
            assert [v for _, v in log] == sent[:len(log)]

        # The recovered log takes new messages at its end.
        more = produce_all(producer(bootstrap), topic, [{"value": b"after", "partition": 0}])
        assert [m.offset() for m in more.acked] == [len(by_partition[0])]
