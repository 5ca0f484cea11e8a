"""What a run reports: checks that held or not, and findings with reproducer frames."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

HEX_CHARS_MAX: Final = 1200


@dataclass
class Check:
    """One liveness or state check."""

    name: str
    ok: bool
    detail: str = ""
    elapsed_s: float = 0.0
    frame: str | None = None  # the request that shows the failure, as pretty_hex


@dataclass
class Finding:
    """Something a sound broker would not do. `frames` are reproducers (pretty_hex)."""

    kind: str
    title: str
    detail: str = ""
    frames: list[str] = field(default_factory=list)
    count: int = 1


def pretty_hex(frame: bytes) -> str:
    """Hex with the size prefix split off; a run of 8+ equal bytes xx is written `xx{xN}`."""
    parts = [frame[:4].hex()] if len(frame) >= 4 else []
    body = frame[4:] if len(frame) >= 4 else frame
    out: list[str] = []
    i = 0
    while i < len(body):
        j = i
        while j < len(body) and body[j] == body[i]:
            j += 1
        run = j - i
        out.append(f"{body[i]:02x}{{x{run}}}" if run >= 8 else body[i:j].hex())
        i = j
    text = " ".join([*parts, "".join(out)])
    if len(text) > HEX_CHARS_MAX:
        text = text[:HEX_CHARS_MAX] + f"… ({len(frame)} bytes)"
    return text


def run_check(name: str, body: Callable[[], str | None]) -> Check:
    """Runs `body` (which returns a detail or raises) and times it; any exception fails it."""
    start = time.monotonic()
    try:
        detail = body() or ""
        ok = True
    except Exception as exc:  # a check fails on anything, and says what
        detail, ok = f"{exc.__class__.__name__}: {exc}", False
    return Check(name, ok, detail, round(time.monotonic() - start, 2))


class FindingLog:
    """Findings from many threads; the same (kind, title) is counted, not repeated."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], Finding] = {}

    def add(self, kind: str, title: str, detail: str = "", frame: bytes | None = None,
            frame_hex: str | None = None) -> None:
        with self._lock:
            found = self._by_key.get((kind, title))
            if found is None:
                found = self._by_key[(kind, title)] = Finding(kind, title, detail)
            else:
                found.count += 1
            if frame is not None:
                frame_hex = pretty_hex(frame)
            if frame_hex is not None and len(found.frames) < 3:
                found.frames.append(frame_hex)

    def all(self) -> list[Finding]:
        with self._lock:
            return list(self._by_key.values())
