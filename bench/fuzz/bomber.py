"""Compression bombs, one every few seconds on their own thread: zeros compressed with each
codec to 1 MiB above `message.max.decompressed.bytes` (must be refused with an error code),
to half of it (a valid batch: must be accepted), and many tiny records (accepted).

The bomb topic is created with a large max.message.bytes, so that the decompression bound,
not the compressed-size limit, is what refuses the big ones.
"""

from __future__ import annotations

import threading
import time
from typing import Final

from kio.schema.errors import ErrorCode

from bench.fuzz import batches, wire
from bench.fuzz.abuse import api_versions_frame
from bench.fuzz.campaign import Gate
from bench.fuzz.findings import FindingLog, pretty_hex
from bench.fuzz.tally import Tally
from bench.fuzz.wire import Conn

BOMB_TOPIC: Final = "fuzz-bomb"
BOMB_TOPIC_CONFIG: Final = {"max.message.bytes": str(64 * 2**20)}
KINDS: Final = [(kind, codec) for codec in ("zstd", "gzip", "lz4", "snappy")
                for kind in ("above", "below")] + [("tiny", "zstd")]
ANSWER_WITHIN_S: Final = 60.0
PRODUCE_VERSION: Final = 9


class Bomber:
    def __init__(self, address: tuple[str, int], limit: int, every_s: float, tiny_count: int,
                 gate: Gate, tally: Tally, findings: FindingLog) -> None:
        self.address = address
        self.limit = limit
        self.every_s = every_s
        self.tiny_count = tiny_count
        self.gate = gate
        self.tally = tally
        self.findings = findings
        self.thread = threading.Thread(target=self.run, name="bomber", daemon=True)

    def run(self) -> None:
        i = 0
        next_at = time.monotonic() + self.every_s / 2
        while not self.gate.stopped:
            if time.monotonic() < next_at:
                self.gate.checkpoint()  # a liveness round need not wait for the next bomb
                time.sleep(0.2)
                continue
            self.gate.checkpoint()
            if self.gate.stopped:
                return
            kind, codec = KINDS[i % len(KINDS)]
            try:
                self.one(kind, codec)
            except Exception as exc:  # a harness or connection failure: shown, not fatal
                self.tally.harness_error(f"bomb {kind} {codec}: {exc!r}")
            i += 1
            next_at = time.monotonic() + self.every_s

    def one(self, kind: str, codec: str) -> None:
        batch, count = batches.bomb(kind, codec, self.limit, self.tiny_count)
        frame = batches.produce_frame(PRODUCE_VERSION, BOMB_TOPIC, 0, batch, 1, 77,
                                      timeout_ms=30000)
        del batch
        error: str | None = None
        with Conn(self.address) as conn:
            conn.exchange(api_versions_frame(0), 10.0)
            exchange = conn.exchange(frame, ANSWER_WITHIN_S)
        if exchange.response is not None:
            body = wire.decode_response(0, PRODUCE_VERSION, exchange.response)
            codes = [p.error_code for t in body.responses for p in t.partition_responses]
            error = codes[0].name if codes else "no partition result"
        self.tally.bombs.append({"kind": kind, "codec": codec, "records": count,
                                 "frame_bytes": len(frame), "outcome": exchange.outcome,
                                 "error": error, "elapsed_s": round(exchange.elapsed_s, 2)})
        self.judge(kind, codec, frame, exchange.outcome, error)

    def judge(self, kind: str, codec: str, frame: bytes, outcome: str,
              error: str | None) -> None:
        accepted = error == ErrorCode.none.name
        what = f"{kind} {codec} bomb ({len(frame):,} B frame)"
        if outcome != wire.RESPONSE:
            self.findings.add("bomb", f"{kind} bomb not answered ({outcome})", what)
        elif kind == "above" and accepted:
            self.findings.add("bomb", "batch above message.max.decompressed.bytes accepted",
                              what)
        elif kind != "above" and not accepted:
            self.findings.add("bomb", f"valid {kind} batch refused ({error})",
                              f"{what}: {pretty_hex(frame[:200])}")
