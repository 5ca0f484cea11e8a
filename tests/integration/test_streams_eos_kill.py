"""Three instances of the word count (examples/streams/wordcount.py, exactly-once) share six
partitions; one is SIGKILLed mid-stream and started again. Read with read_committed, every
word's counts are strictly increasing (none written twice: the record cache writes only the
latest count of a word at each commit, so counts may be skipped, never repeated or taken
back) and the final counts are exact (none lost): what the killed instance had done but not
committed was aborted, and the tasks it had were restored from their changelogs where they
went.

The same with a windowed count emitting on window close (tests/integration/
streams_windowed_app.py): every (key, window) is written exactly once, with its exact count:
the tasks created again know from their committed processor metadata which windows they had
emitted."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, create_topic, producer, unique_name

pytestmark = pytest.mark.slow  # runs first: see tests/conftest.py

EXAMPLE = Path(__file__).parents[2] / "examples" / "streams" / "wordcount.py"
WINDOWED_APP = Path(__file__).parent / "streams_windowed_app.py"
WORDS = [f"w{i}" for i in range(40)]
PARTITIONS = 6
EXTRA: list[str] = []  # more settings for the instances


def start_instance(bootstrap: str, app_id: str, state_dir: Path, log: Path,
                   script: Path = EXAMPLE) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(script), "--bootstrap-servers", bootstrap,
             "--application-id", app_id, "--state-dir", str(state_dir),
             "--partitions", str(PARTITIONS),
             # The killed instance's tasks move once its session expires.
             "--config", "consumer.session.timeout.ms=6000",
             "--config", "consumer.heartbeat.interval.ms=500"] + [f"--config={c}" for c in EXTRA],
            stdout=out, stderr=subprocess.STDOUT, env=env)


def kill_one_mid_stream(instances: list[subprocess.Popen[bytes]], writer: threading.Thread,
                        restart: Callable[[], subprocess.Popen[bytes]]) -> None:
    """Starts the writer, SIGKILLs the second instance mid-stream, starts it again (with the
    same state directory) and waits for the writer."""
    writer.start()
    time.sleep(1.5)  # mid-stream: the writer takes about 3 s
    instances[1].send_signal(signal.SIGKILL)
    instances[1].wait(10)
    time.sleep(1.0)
    instances[1] = restart()
    writer.join(DEADLINE_S * 2)


def stop_all(instances: list[subprocess.Popen[bytes]]) -> None:
    for instance in instances:
        instance.send_signal(signal.SIGTERM)
    for instance in instances:
        try:
            instance.wait(DEADLINE_S)
        except subprocess.TimeoutExpired:
            instance.kill()


def wait_for_tasks(logs: list[Path], task: str = "task 1_") -> None:
    """Until every instance has created its tasks and restored its stores."""
    deadline = time.monotonic() + 2 * DEADLINE_S
    while time.monotonic() < deadline:
        texts = [log.read_text() if log.exists() else "" for log in logs]
        if all(task in t and "restored" in t for t in texts):
            time.sleep(1.0)  # the group settles
            return
        time.sleep(0.2)
    raise AssertionError("the instances did not all get tasks:\n" + "\n".join(
        log.read_text()[-1500:] for log in logs if log.exists()))


def read_counts(bootstrap: str, topic: str, total: int) -> dict[str, list[int]]:
    """Every count written per word (read_committed), until the counts add up to `total`."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("read"),
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen: dict[str, list[int]] = {}
    deadline = time.monotonic() + 3 * DEADLINE_S
    try:
        while time.monotonic() < deadline:
            for msg in c.consume(1000, 0.2):
                if msg.error() is None:
                    seen.setdefault((msg.key() or b"").decode(), []).append(
                        int((msg.value() or b"0").decode()))
            if sum(v[-1] for v in seen.values()) >= total:
                time.sleep(1.0)  # anything written twice would show up now
                for msg in c.consume(1000, 0.5):
                    if msg.error() is None:
                        seen.setdefault((msg.key() or b"").decode(), []).append(
                            int((msg.value() or b"0").decode()))
                break
    finally:
        c.close()
    return seen


def test_exactly_once_through_a_sigkill(tmp_path: Path) -> None:
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        app_id = unique_name("wc-eos")
        create_topic(bootstrap, "words-input", PARTITIONS)
        create_topic(bootstrap, "word-counts", PARTITIONS)
        logs = [tmp_path / f"instance-{i}.log" for i in range(3)]
        instances = [start_instance(bootstrap, app_id, tmp_path / f"state-{i}", logs[i])
                     for i in range(3)]
        rng = random.Random(7)
        lines = [" ".join(rng.choice(WORDS) for _ in range(5)) for _ in range(3000)]
        expected: dict[str, int] = {}
        for line in lines:
            for word in line.split():
                expected[word] = expected.get(word, 0) + 1

        def produce() -> None:
            p = producer(bootstrap)
            for i, line in enumerate(lines):
                p.produce("words-input", key=str(i).encode(), value=line.encode())
                if i % 100 == 99:
                    p.poll(0)
                    time.sleep(0.1)
            assert p.flush(DEADLINE_S) == 0

        writer = threading.Thread(target=produce)
        try:
            wait_for_tasks(logs)
            kill_one_mid_stream(instances, writer, lambda: start_instance(
                bootstrap, app_id, tmp_path / "state-1", logs[1]))
            seen = read_counts(bootstrap, "word-counts", sum(expected.values()))
        finally:
            stop_all(instances)
        shown = "\n".join(log.read_text()[-2000:] for log in logs)
        assert {w: v[-1] for w, v in seen.items()} == expected, shown
        for word, counts in seen.items():
            # with the record cache on (the default), a commit writes a word's latest count
            # only: counts may be skipped, but a count written twice (an update processed
            # again after the kill) would repeat or go back
            assert all(a < b for a, b in itertools.pairwise(counts)), \
                f"{word}: {counts[:20]}"
            assert counts[0] >= 1 and counts[-1] == expected[word], f"{word}: {counts[:20]}"


def read_windows(bootstrap: str, topic: str, expected: set[str]) -> dict[str, list[int]]:
    """Every count written per "key@window" (read_committed), until every expected one is."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("read"),
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen: dict[str, list[int]] = {}

    def consume(timeout: float) -> None:
        for msg in c.consume(1000, timeout):
            if msg.error() is None:
                seen.setdefault((msg.key() or b"").decode(), []).append(
                    int((msg.value() or b"0").decode()))

    deadline = time.monotonic() + 3 * DEADLINE_S
    try:
        while time.monotonic() < deadline and not expected <= seen.keys():
            consume(0.2)
        consume(1.0)  # anything written twice would show up now
    finally:
        c.close()
    return seen


def test_windows_emitted_on_close_exactly_once_through_a_sigkill(tmp_path: Path) -> None:
    """Tumbling windows of one second over 24 keys in 6 partitions, 30 windows, each key's
    count in each window chosen at random; an instance SIGKILLed mid-stream and started
    again. Without the processor metadata, a task created again (restored from its changelog)
    emits all the closed windows still in its store again."""
    windows, window_ms = 30, 1000
    keys = [f"k{i}" for i in range(24)]
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        app_id = unique_name("win-eos")
        create_topic(bootstrap, "clicks-input", PARTITIONS)
        create_topic(bootstrap, "click-counts", PARTITIONS)
        logs = [tmp_path / f"instance-{i}.log" for i in range(3)]
        instances = [start_instance(bootstrap, app_id, tmp_path / f"state-{i}", logs[i],
                                    WINDOWED_APP) for i in range(3)]
        rng = random.Random(11)
        base = int(time.time()) * 1000  # event times of now: nothing for retention to drop
        expected: dict[str, int] = {}
        by_window: list[list[tuple[int, str]]] = []  # (timestamp, key) in time order
        for w in range(windows):
            start = base + w * window_ms
            records = []
            for key in keys:
                count = rng.randint(1, 4)
                expected[f"{key}@{start}"] = count
                records += [(start + rng.randrange(window_ms), key) for _ in range(count)]
            by_window.append(sorted(records))

        def produce() -> None:
            p = producer(bootstrap)
            for records in by_window:
                for timestamp, key in records:
                    p.produce("clicks-input", key=key.encode(), value=b"x",
                              partition=int(key[1:]) % PARTITIONS, timestamp=timestamp)
                p.poll(0)
                time.sleep(0.1)
            # A record in every partition after the last window closes it.
            for partition in range(PARTITIONS):
                p.produce("clicks-input", key=b"closer", value=b"x", partition=partition,
                          timestamp=base + windows * window_ms)
            assert p.flush(DEADLINE_S) == 0

        writer = threading.Thread(target=produce)
        try:
            wait_for_tasks(logs, "task 0_")
            kill_one_mid_stream(instances, writer, lambda: start_instance(
                bootstrap, app_id, tmp_path / "state-1", logs[1], WINDOWED_APP))
            seen = read_windows(bootstrap, "click-counts", set(expected))
        finally:
            stop_all(instances)
        shown = "\n".join(log.read_text()[-2000:] for log in logs)
        missing = sorted(set(expected) - seen.keys())
        assert not missing, f"{len(missing)} windows never emitted: {missing[:10]}\n{shown}"
        twice = {w: counts for w, counts in seen.items() if len(counts) > 1}
        assert not twice, f"{len(twice)} windows emitted more than once: " \
            f"{dict(list(twice.items())[:10])}"
        assert {w: counts[0] for w, counts in seen.items()} == expected
