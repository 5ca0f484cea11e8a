"""Three instances of the word count (examples/streams/wordcount.py, exactly-once) share six
partitions; one is SIGKILLed mid-stream and started again. Read with read_committed, every
word's counts are strictly increasing (none written twice: the record cache writes only the
latest count of a word at each commit, so counts may be skipped, never repeated or taken
back) and the final counts are exact (none lost): what the killed instance had done but not
committed was aborted, and the tasks it had were restored from their changelogs where they
went."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, create_topic, producer, unique_name

EXAMPLE = Path(__file__).parents[2] / "examples" / "streams" / "wordcount.py"
WORDS = [f"w{i}" for i in range(40)]
PARTITIONS = 6
EXTRA: list[str] = []  # more settings for the instances


def start_instance(bootstrap: str, app_id: str, state_dir: Path, log: Path
                   ) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(EXAMPLE), "--bootstrap-servers", bootstrap,
             "--application-id", app_id, "--state-dir", str(state_dir),
             "--partitions", str(PARTITIONS),
             # The killed instance's tasks move once its session expires.
             "--config", "consumer.session.timeout.ms=6000",
             "--config", "consumer.heartbeat.interval.ms=500"] + [f"--config={c}" for c in EXTRA],
            stdout=out, stderr=subprocess.STDOUT, env=env)


def wait_for_tasks(logs: list[Path]) -> None:
    """Until every instance has created its tasks and restored its stores."""
    deadline = time.monotonic() + 2 * DEADLINE_S
    while time.monotonic() < deadline:
        texts = [log.read_text() if log.exists() else "" for log in logs]
        if all("task 1_" in t and "restored" in t for t in texts):
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
            writer.start()
            time.sleep(1.5)  # mid-stream: the writer takes about 3 s
            instances[1].send_signal(signal.SIGKILL)
            instances[1].wait(10)
            time.sleep(1.0)
            instances[1] = start_instance(bootstrap, app_id, tmp_path / "state-1", logs[1])
            writer.join(DEADLINE_S * 2)
            seen = read_counts(bootstrap, "word-counts", sum(expected.values()))
        finally:
            for instance in instances:
                instance.send_signal(signal.SIGTERM)
            for instance in instances:
                try:
                    instance.wait(DEADLINE_S)
                except subprocess.TimeoutExpired:
                    instance.kill()
        shown = "\n".join(log.read_text()[-2000:] for log in logs)
        assert {w: v[-1] for w, v in seen.items()} == expected, shown
        for word, counts in seen.items():
            # with the record cache on (the default), a commit writes a word's latest count
            # only: counts may be skipped, but a count written twice (an update processed
            # again after the kill) would repeat or go back
            assert all(a < b for a, b in itertools.pairwise(counts)), \
                f"{word}: {counts[:20]}"
            assert counts[0] >= 1 and counts[-1] == expected[word], f"{word}: {counts[:20]}"
