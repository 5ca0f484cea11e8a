"""The fuzzing itself: worker threads sending one frame at a time, a pause gate for the liveness
oracle, and the replay of timeouts (a hang is a timeout that times out again on replay).

Each worker opens a connection (half of them send ApiVersions first, which lifts the 64 KiB
pre-authentication frame limit), then sends frames until the broker closes the connection or
a frame times out; every frame's outcome is counted by category and by mutator.
"""

from __future__ import annotations

import random
import struct
import threading
import time
from dataclasses import dataclass
from typing import Final

from bench.fuzz import answers, batches, mutators, wire
from bench.fuzz.abuse import api_versions_frame
from bench.fuzz.findings import FindingLog
from bench.fuzz.logscan import FrameHistory
from bench.fuzz.mutators import Seed
from bench.fuzz.tally import Replay, Tally
from bench.fuzz.wire import Conn

CATEGORIES: Final = {"control": 5, "mutated": 62, "header": 8, "produce-batch": 25}
RECORDED_SHARE: Final = 0.3
UNMUTATED: Final = frozenset({"control", "probe"})
# JoinGroup and SyncGroup may wait as long as the rebalance and session timeouts the request
# (or another member's) chose, which Kafka does not bound: a replay that times out is no hang.
PARKING_KEYS: Final = frozenset({11, 14})


@dataclass(frozen=True)
class Settings:
    frame_timeout_s: float
    replay_window_s: float
    replays_per_key: int
    secret: bytes | None  # the broker's data directory: never in a response


class FrameSource:
    """Picks the next frame: an unmutated seed, a mutated one, header abuse, or a Produce with a
    corrupted batch."""

    def __init__(self, seeds: list[Seed], produce_topics: list[tuple[str, int]],
                 produce_versions: tuple[int, int]) -> None:
        self.schema = [s for s in seeds if s.origin != "recorded"]
        self.recorded = [s for s in seeds if s.origin == "recorded"] or self.schema
        self.all = seeds
        self.produce_topics = produce_topics
        self.produce_versions = produce_versions

    def seed(self, rng: random.Random) -> Seed:
        return rng.choice(self.recorded if rng.random() < RECORDED_SHARE else self.schema)

    def next(self, rng: random.Random) -> tuple[bytes, str, list[str]]:
        category = rng.choices(list(CATEGORIES), list(CATEGORIES.values()))[0]
        if category == "produce-batch":
            frame, corruption = batches.corrupt_produce(rng, self.produce_topics,
                                                        self.produce_versions)
            return frame, category, [f"batch:{corruption}"]
        seed = self.seed(rng)
        if category == "control":
            return wire.framed(seed.body), category, [f"seed:{seed.origin}"]
        if category == "header":
            body, names = mutators.mutate(rng, seed, self.all, rng.randint(1, 2), "header")
        else:
            body, names = mutators.mutate(rng, seed, self.all, rng.randint(1, 5))
        return wire.framed(body), category, names


class Gate:
    """Lets the liveness oracle pause the workers between frames and wait until all are idle."""

    def __init__(self, workers: int) -> None:
        self._cond = threading.Condition()
        self._workers = workers
        self._idle = 0
        self._paused = False
        self.stopped = False

    def checkpoint(self) -> None:
        with self._cond:
            while self._paused and not self.stopped:
                self._idle += 1
                self._cond.notify_all()
                self._cond.wait()
                self._idle -= 1

    def pause(self, timeout_s: float) -> bool:
        with self._cond:
            self._paused = True
            return self._cond.wait_for(lambda: self._idle >= self._workers, timeout_s)

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._paused = False
            self._cond.notify_all()


class Replayer:
    """Replays timeouts on fresh connections, a few per API key, a few at a time."""

    def __init__(self, address: tuple[str, int], settings: Settings, tally: Tally,
                 findings: FindingLog) -> None:
        self.address = address
        self.settings = settings
        self.tally = tally
        self.findings = findings
        self._lock = threading.Lock()
        self._per_key: dict[int, int] = {}
        self._slots = threading.BoundedSemaphore(4)
        self._threads: list[threading.Thread] = []

    def offer(self, frame: bytes, category: str) -> None:
        head = wire.frame_header(frame)
        key = -99999 if head is None else head[0]
        if key == 0 and _acks_zero(frame):
            with self._lock:
                self.tally.no_answer_due += 1
            return
        with self._lock:
            if self._per_key.get(key, 0) >= self.settings.replays_per_key:
                return
            if not self._slots.acquire(blocking=False):
                return
            self._per_key[key] = self._per_key.get(key, 0) + 1
        thread = threading.Thread(target=self._replay, args=(frame, key, category),
                                  name="replay", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _replay(self, frame: bytes, key: int, category: str) -> None:
        try:
            with Conn(self.address) as conn:
                conn.exchange(api_versions_frame(0), 10.0)
                exchange = conn.exchange(frame, self.settings.replay_window_s)
            verdict = {"response": "answered", "close": "closed", "reset": "reset"}.get(
                exchange.outcome, "hang")
            if verdict == "hang" and key in PARKING_KEYS:
                verdict = "parked (waits on its group's rebalance, bounded by the client's own "
                verdict += "timeouts: not judged)"
            elif verdict == "hang":
                if not _responsive(self.address):
                    verdict = "broker unresponsive"
                self.findings.add("hang", f"{verdict}: API key {key} ({category})",
                                  f"no answer and no close within "
                                  f"{self.settings.replay_window_s:.0f} s, twice", frame)
            self.tally.replays.append(Replay(key, category, exchange.outcome,
                                             round(exchange.elapsed_s, 2), verdict))
        except OSError as exc:
            self.tally.replays.append(Replay(key, category, "error", 0.0, repr(exc)))
        finally:
            self._slots.release()

    def drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _acks_zero(frame: bytes) -> bool:
    """Whether a Produce frame says acks=0 (read by hand: versions below 3 have no schema)."""
    body = frame[4:]
    try:
        version, client_len = struct.unpack_from(">h4xh", body, 2)
        pos = 10 + max(client_len, 0)
        if 3 <= version <= 8:
            (length,) = struct.unpack_from(">h", body, pos)
            pos += 2 + max(length, 0)
        elif version >= 9:
            count, used = mutators.read_uvarint(body, pos)
            pos += used
            for _ in range(count):
                _tag, used = mutators.read_uvarint(body, pos)
                size, used2 = mutators.read_uvarint(body, pos + used)
                pos += used + used2 + size
            length, used = mutators.read_uvarint(body, pos)
            pos += used + max(length - 1, 0)
        return struct.unpack_from(">h", body, pos)[0] == 0
    except (struct.error, ValueError):
        return False


def _responsive(address: tuple[str, int]) -> bool:
    try:
        with Conn(address) as conn:
            return conn.exchange(api_versions_frame(1), 10.0).outcome == wire.RESPONSE
    except OSError:
        return False


class Worker:
    def __init__(self, index: int, seed: int, address: tuple[str, int], source: FrameSource,
                 gate: Gate, tally: Tally, findings: FindingLog, history: FrameHistory,
                 replayer: Replayer, settings: Settings) -> None:
        self.rng = random.Random(seed * 1_000_003 + index)
        self.address, self.source, self.gate = address, source, gate
        self.tally, self.findings, self.history = tally, findings, history
        self.replayer, self.settings = replayer, settings
        self.last_frame: bytes | None = None
        self.thread = threading.Thread(target=self.run, name=f"fuzz-{index}", daemon=True)

    def connect(self) -> Conn | None:
        try:
            conn = Conn(self.address)
        except OSError:
            time.sleep(0.2)
            return None
        preamble = self.rng.random() < 0.5
        answered = preamble and conn.exchange(api_versions_frame(0), 10.0).outcome == "response"
        self.tally.connection(preamble, answered)
        if preamble and not answered:
            conn.close()
            return None
        return conn

    def run(self) -> None:
        conn: Conn | None = None
        while not self.gate.stopped:
            self.gate.checkpoint()
            if conn is None:
                conn = self.connect()
                continue
            try:
                conn = self.step(conn)
            except Exception as exc:  # a harness bug: counted and shown, the worker goes on
                self.tally.harness_error(repr(exc))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def step(self, conn: Conn) -> Conn | None:
        """One frame; the connection to go on with (None: it is closed)."""
        frame, category, labels = self.source.next(self.rng)
        self.history.sent(conn.local_port, frame)
        self.last_frame = frame
        exchange = conn.exchange(frame, self.settings.frame_timeout_s)
        self.tally.frame(category, labels, wire.frame_header(frame), exchange.outcome)
        if exchange.response is not None:
            check_answer(frame, exchange.response, category, self.tally, self.findings,
                         self.settings.secret)
            return conn
        conn.close()
        if exchange.outcome == wire.TIMEOUT:
            self.replayer.offer(frame, category)
        return None


def check_answer(frame: bytes, response: bytes, category: str, tally: Tally,
                 findings: FindingLog, secret: bytes | None) -> None:
    """The per-frame oracle: correlation id, no server path, complete answers (for frames
    sent unmutated)."""
    mismatch = answers.correlation_mismatch(frame, response)
    if mismatch:
        tally.mismatch()
        findings.add("correlation-id", "answer with another correlation id", mismatch, frame)
    head = wire.frame_header(frame)
    if head is not None and answers.leaks_path(head[0], response, secret):
        findings.add("path-leak", f"server path in an answer to API key {head[0]}",
                     "the broker's data directory appears in the response", frame)
    if category in UNMUTATED:
        missing = answers.incomplete(frame, response)
        if missing:
            findings.add("incomplete-answer", f"API key {head[0] if head else '?'} answer "
                         "leaves out what was asked", missing, frame)
