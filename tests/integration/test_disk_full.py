"""A real full disk (a 4 MiB tmpfs holding the broker's data directory): produce answers
KAFKA_STORAGE_ERROR while acknowledged records stay fetchable, and once space is freed the same
idempotent confluent-kafka producer carries on by itself, every acknowledged record in the
log exactly once and in order, and nothing that failed."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer

from strom.testing import EmbeddedBroker
from tests.integration.conftest import (
    DEADLINE_S,
    Delivered,
    consume_partitions,
    create_topic,
    producer,
    unique_name,
)

TMPFS_SIZE = "4m"
FILLER_BYTES = 1536 * 1024  # freed to end the episode
VALUE_BYTES = 16 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted at tmp_path/disk (skipped where mounting is not permitted)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    with mount_tmpfs(mount_point):
        yield mount_point


@contextlib.contextmanager
def mount_tmpfs(mount_point: Path) -> Iterator[None]:
    """A TMPFS_SIZE tmpfs at `mount_point` (the test is skipped where mounting is not
    permitted), unmounted on the way out."""
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs",
                        str(mount_point)], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {exc}")
    try:
        yield
    finally:
        done = subprocess.run(["umount", str(mount_point)], capture_output=True, timeout=10)
        if done.returncode:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=10)


def value(i: int) -> bytes:
    return f"{i:08d}".encode() + b"x" * (VALUE_BYTES - 8)


def probe_fails_with_storage_error(bootstrap: str, topic: str) -> bool:
    """A producer without retries or idempotence sends one record: whether it gets
    KAFKA_STORAGE_ERROR (raises if it got anything but that or success)."""
    probe = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False,
                      "retries": 0, "acks": "all", "message.timeout.ms": 10000})
    delivered = Delivered()
    probe.produce(topic, value=b"probe" + b"p" * VALUE_BYTES, on_delivery=delivered)
    assert probe.flush(DEADLINE_S) == 0
    if not delivered.failed:
        return False
    error = delivered.failed[0][0]
    assert error.code() == KafkaError.KAFKA_STORAGE_ERROR, error
    return True


def fill_until_full(p: Producer, bootstrap: str, topic: str, delivered: Delivered) -> int:
    """Produces records 0, 1, ... until the broker refuses them for lack of space; returns
    how many were sent."""
    sent = 0
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        for _ in range(16):
            p.produce(topic, value=value(sent), on_delivery=delivered)
            sent += 1
        if p.flush(1.0) and probe_fails_with_storage_error(bootstrap, topic):
            return sent
    raise AssertionError("the disk never filled up")


def test_full_disk_refuses_writes_keeps_reads_and_recovers(small_disk: Path) -> None:
    filler = small_disk / "filler"
    with open(filler, "wb") as f:
        f.write(os.urandom(FILLER_BYTES))
    settings = {"offsets.topic.num.partitions": "1",
                "transaction.state.log.num.partitions": "1"}
    with EmbeddedBroker(settings=settings, data_dir=small_disk / "data") as broker:
        bootstrap = broker.bootstrap_servers
        topic = create_topic(bootstrap, unique_name("full"), 1,
                             {"segment.bytes": str(512 * 1024)})
        delivered = Delivered()
        p = producer(bootstrap, enable_idempotence=True, message_timeout_ms=120000,
                     linger_ms=0, batch_num_messages=4)
        sent = fill_until_full(p, bootstrap, topic, delivered)
        acked_while_full = [m.value() for m in delivered.acked]
        assert acked_while_full and len(acked_while_full) < sent
        assert broker.server.engine.partition(topic, 0).disk_full  # type: ignore[attr-defined]
        stored = [m.value() for m in consume_partitions(bootstrap, topic)]
        assert [v for v in stored if not v.startswith(b"probe")] == acked_while_full
        assert probe_fails_with_storage_error(bootstrap, topic)  # still full: still refused

        filler.unlink()  # space is back: the producer's retries go through by themselves
        assert p.flush(DEADLINE_S) == 0
        for i in range(sent, sent + 16):
            p.produce(topic, value=value(i), on_delivery=delivered)
        assert p.flush(DEADLINE_S) == 0
        assert not delivered.failed, delivered.failed[:3]
        assert [m.value() for m in delivered.acked] == [value(i) for i in range(sent + 16)]
        stored = [m.value() for m in consume_partitions(bootstrap, topic)]
        records = [v for v in stored if not v.startswith(b"probe")]
        assert records == [value(i) for i in range(sent + 16)]  # each once, in order
        assert not broker.server.engine.partition(topic, 0).disk_full  # type: ignore[attr-defined]
