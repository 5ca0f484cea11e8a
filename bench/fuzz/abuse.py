"""Protocol abuse on the connection level: bad size prefixes, idle connections, slowloris,
pipelining and responses never read. Each scenario says what a sound broker does and whether
it did; a scenario that did not hold is a finding.
"""

from __future__ import annotations

import contextlib
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsV0
from kio.schema.api_versions.v3.request import ApiVersionsRequest as ApiVersionsV3
from kio.schema.metadata.v12.request import MetadataRequest as MetadataV12

from bench.fuzz import wire
from bench.fuzz.wire import Closed, Conn

CLOSE_WITHIN_S: Final = 5.0
PIPELINE: Final = 1000
IDLE_MARGIN_S: Final = 30.0
API_VERSIONS_V3: Final = ApiVersionsV3(client_software_name="strom-fuzz",
                                       client_software_version="1")
METADATA_V12: Final = MetadataV12(topics=None, allow_auto_topic_creation=False,
                                  include_topic_authorized_operations=False)


@dataclass
class Scenario:
    name: str
    expected: str
    observed: str = ""
    ok: bool = False
    elapsed_s: float = 0.0
    skipped: bool = False  # the run ended before the scenario could finish: no verdict


def api_versions_frame(correlation_id: int) -> bytes:
    return wire.encode_frame(API_VERSIONS_V3, correlation_id)


def handshake(conn: Conn) -> None:
    """ApiVersions first, which lifts the pre-authentication frame-size limit."""
    conn.send(api_versions_frame(1))
    conn.recv_frame(10.0)


def _expect_close(address: tuple[str, int], prefix: int, after_handshake: bool,
                  extra: bytes = b"") -> Scenario:
    when = "after" if after_handshake else "before"
    scenario = Scenario(f"size prefix {prefix & 0xFFFFFFFF:#010x} {when} ApiVersions",
                        f"connection closed within {CLOSE_WITHIN_S:.0f} s")
    start = time.monotonic()
    with Conn(address) as conn:
        if after_handshake:
            handshake(conn)
        conn.send(struct.pack(">I", prefix & 0xFFFFFFFF) + extra)
        try:
            conn.recv_frame(CLOSE_WITHIN_S)
            scenario.observed = "a response"
        except Closed:
            scenario.observed, scenario.ok = "closed", True
        except TimeoutError:
            scenario.observed = f"still open after {CLOSE_WITHIN_S:.0f} s"
        except OSError as exc:
            scenario.observed, scenario.ok = f"reset ({exc.__class__.__name__})", True
    scenario.elapsed_s = time.monotonic() - start
    return scenario


def size_prefixes(address: tuple[str, int]) -> list[Scenario]:
    cases = [(0, False), (-1, False), (0x7FFFFFFF, False), (-0x80000000, False),
             (3, False), (65_537, False), (0x7FFFFFFF, True), (100 * 2**20 + 1, True),
             (-1, True)]
    return [_expect_close(address, prefix, after, b"\x00" * 8) for prefix, after in cases]


def pipelined(address: tuple[str, int], request: Any, name: str) -> Scenario:
    """PIPELINE requests in one write; every answer must come back, in order."""
    scenario = Scenario(f"{PIPELINE} x {name} in one write", "all answered, in order")
    start = time.monotonic()
    frames = b"".join(wire.encode_frame(request, i) for i in range(PIPELINE))
    answered = 0
    with Conn(address) as conn:
        try:
            if name.startswith("Metadata"):
                handshake(conn)
            conn.send(frames)
            for i in range(PIPELINE):
                response = conn.recv_frame(60.0)
                if struct.unpack_from(">i", response, 0)[0] != i:
                    scenario.observed = f"answer {answered} has another correlation id"
                    break
                answered += 1
        except (OSError, Closed) as exc:
            scenario.observed = f"{answered} answered, then {exc.__class__.__name__}"
    if answered == PIPELINE:
        scenario.observed, scenario.ok = f"{PIPELINE} answered in order", True
    scenario.elapsed_s = time.monotonic() - start
    return scenario


def slowloris(address: tuple[str, int], stop: threading.Event, bytes_per_s: float = 1.0,
              ) -> Scenario:
    """An ApiVersions v0 request sent one byte a second is still answered."""
    frame = wire.encode_frame(ApiVersionsV0(), 7, client_id=None)
    scenario = Scenario(f"ApiVersions ({len(frame)} B) at {bytes_per_s:g} byte/s",
                        "answered once complete")
    start = time.monotonic()
    with Conn(address) as conn:
        try:
            for byte in frame:
                conn.send(bytes([byte]))
                if stop.wait(1 / bytes_per_s):
                    scenario.observed, scenario.skipped = "not finished: the run ended", True
                    return scenario
            response = conn.recv_frame(10.0)
            scenario.ok = struct.unpack_from(">i", response, 0)[0] == 7
            scenario.observed = "answered" if scenario.ok else "wrong correlation id"
        except (OSError, Closed) as exc:
            scenario.observed = f"{exc.__class__.__name__} after {time.monotonic() - start:.0f} s"
    scenario.elapsed_s = time.monotonic() - start
    return scenario


class HeldConnections:
    """Connections kept open for the whole run: idle ones, a slow partial frame and one with
    1,000 Metadata responses never read. `check` tries samples of the idle ones."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.idle: list[Conn] = []
        self.others: list[Conn] = []
        self.opened_at = 0.0

    def open(self, idle: int) -> None:
        self.opened_at = time.monotonic()
        for _ in range(idle):
            with contextlib.suppress(OSError):
                self.idle.append(Conn(self.address))
        with contextlib.suppress(OSError, Closed, TimeoutError):
            unread = Conn(self.address)
            self.others.append(unread)
            handshake(unread)
            unread.send(b"".join(wire.encode_frame(METADATA_V12, i) for i in range(PIPELINE)))
            slow = Conn(self.address)
            self.others.append(slow)
            handshake(slow)
            slow.send(struct.pack(">i", 60_000) + b"\x00\x03")

    def check(self, idle_timeout_s: float, sample: int, at_end: bool) -> Scenario:
        """Sends ApiVersions on `sample` idle connections (the first ones mid-run, the last
        ones at the end). Before the broker's connections.max.idle.ms they must answer; well
        after it they must have been closed, as Kafka closes idle connections."""
        held = time.monotonic() - self.opened_at
        picked = self.idle[-sample:] if at_end else self.idle[:sample]
        scenario = Scenario(f"{len(self.idle)} idle connections held {held:.0f} s "
                            f"(idle timeout {idle_timeout_s:.0f} s), {len(picked)} sampled", "")
        if abs(held - idle_timeout_s) < IDLE_MARGIN_S or not picked:
            scenario.observed, scenario.skipped = "too close to the idle timeout to judge", True
            return scenario
        expect_open = held < idle_timeout_s
        scenario.expected = "all still answer" if expect_open else "all closed by the broker"
        outcomes = [conn.exchange(api_versions_frame(i), 10.0).outcome
                    for i, conn in enumerate(picked)]
        answered = outcomes.count(wire.RESPONSE)
        closed = outcomes.count(wire.CLOSE) + outcomes.count(wire.RESET)
        scenario.ok = answered == len(picked) if expect_open else closed == len(picked)
        scenario.observed = f"{answered} answered, {closed} closed"
        return scenario

    def close(self) -> None:
        for conn in self.idle + self.others:
            conn.close()


def run_all(address: tuple[str, int], stop: threading.Event) -> list[Scenario]:
    """The scenarios that run once, on their own thread, while the workers fuzz."""
    results: list[Scenario] = []
    slow: list[Scenario] = []
    thread = threading.Thread(target=lambda: slow.append(slowloris(address, stop)),
                              name="slowloris", daemon=True)
    thread.start()
    for run in (lambda: size_prefixes(address),
                lambda: [pipelined(address, API_VERSIONS_V3, "ApiVersions v3")],
                lambda: [pipelined(address, METADATA_V12, "Metadata v12")]):
        if stop.is_set():
            break
        try:
            results += run()
        except OSError as exc:
            results.append(Scenario("abuse scenario", "runs", f"{exc!r}"))
    thread.join(60)
    return results + slow
