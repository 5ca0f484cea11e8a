"""Property: under random keyed writes and deletes over many small segments, random cleaning
passes and crashes at random points of a pass (then recovery), the log stays contiguous and
intact, never loses a key's latest record (a tombstone goes only after delete.retention.ms),
never removes a record newer than min.compaction.lag.ms, never resurrects a deleted key, and
finally equals the last value of each live key."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from strom.protocol.compression import GZIP, LZ4, NONE
from strom.storage.local import LocalEngine, LocalPartitionLog
from strom.storage.local.cleaner import CRASH_POINTS
from tests.unit.batch_factory import crash_engine, read_all
from tests.unit.test_log_cleaner import (
    Rec,
    SimulatedCrash,
    check_contiguous,
    engine_for,
    keyed,
    map_bytes,
    parse,
)

KEYS = [b"k%d" % i for i in range(6)]
FILLER = b"filler"

# Operations: ("write", [(key index, value or None)], codec), ("tick", ms), ("reopen",),
# ("clean", None or (step, n): crash after the n-th time the pass reaches `step`).
# A scenario is rounds of a few writes, maybe a tick, then a pass or a clean restart.
write_op = st.tuples(st.just("write"),
                     st.lists(st.tuples(st.integers(0, len(KEYS) - 1),
                                        st.none() | st.binary(min_size=1, max_size=30)),
                              min_size=1, max_size=3),
                     st.sampled_from([NONE, NONE, GZIP, LZ4]))
tick_op = st.tuples(st.just("tick"), st.integers(1, 300))
crash_spec = st.tuples(st.sampled_from(CRASH_POINTS), st.integers(0, 2))
clean_op = st.tuples(st.just("clean"), st.none() | crash_spec)
reopen_op = st.tuples(st.just("reopen"))
rounds = st.lists(
    st.tuples(st.lists(write_op, min_size=1, max_size=10), st.lists(tick_op, max_size=1),
              st.one_of(clean_op, clean_op, clean_op, reopen_op)),
    min_size=1, max_size=8)
operations = rounds.map(lambda rs: [op for w, t, end in rs for op in (*w, *t, end)])


@dataclass
class Model:
    """What was written and when the log was cleaned, to judge what the cleaner removed."""

    min_lag_ms: int
    retention_ms: int
    history: list[Rec] = field(default_factory=list)
    written_at: dict[int, int] = field(default_factory=dict)  # offset -> timestamp
    passes: list[int] = field(default_factory=list)  # clock of each pass, crashed ones too

    def check(self, plog: LocalPartitionLog, batches: list[bytes], now: int) -> None:
        check_contiguous(batches, plog.log_start_offset, plog.log_end_offset)
        present = parse(batches)
        assert set(present) <= set(self.history)  # nothing invented or altered
        offsets = [r[0] for r in present]
        assert offsets == sorted(set(offsets))
        latest: dict[bytes | None, Rec] = {}
        for r in self.history:
            latest[r[1]] = r
        by_key: dict[bytes | None, list[Rec]] = {}
        for r in present:
            by_key.setdefault(r[1], []).append(r)
        last_pass = self.passes[-1] if self.passes else -(2**62)
        for r in set(self.history) - set(present):
            assert self.written_at[r[0]] <= last_pass - self.min_lag_ms  # only old ones go
        for key, r in latest.items():
            if r in present:
                continue
            assert r[2] is None and not by_key.get(key)  # a deleted key, gone entirely
            first_pass = min(p for p in self.passes if p >= self.written_at[r[0]])
            assert now >= first_pass + self.retention_ms  # after delete.retention.ms


async def write(plog: LocalPartitionLog, model: Model, records: list[tuple[int, bytes | None]],
                codec: int, now: int) -> None:
    batch = [(KEYS[k], v) for k, v in records]
    result = await plog.append([keyed(batch, now, compression=codec)])
    for i, (key, value) in enumerate(batch):
        model.history.append((result.base_offset + i, key, value))
        model.written_at[result.base_offset + i] = now


async def opened(data_dir: Path, map_budget: int) -> LocalEngine:
    engine = engine_for(data_dir)
    await engine.open()
    engine.cleaner.dedupe_buffer_bytes = map_budget
    return engine


async def clean(engine: LocalEngine, data_dir: Path, model: Model,
                crash_at: tuple[str, int] | None, now: int) -> tuple[LocalEngine, int]:
    """A pass, crashing at crash_at (if the pass gets there), then recovering."""
    seen: dict[str, int] = {}

    def hook(step: str) -> None:
        seen[step] = seen.get(step, 0) + 1
        if (step, seen[step] - 1) == crash_at:
            raise SimulatedCrash(step)

    await engine.partition("c", 0).flush()
    engine.cleaner.crash_hook = hook
    model.passes.append(now)
    try:
        return engine, await engine.run_cleaner(now)
    except SimulatedCrash as crash:
        event(f"crash after step {crash}")
        end = engine.partition("c", 0).log_end_offset
        await crash_engine(engine)
        engine = await opened(data_dir, engine.cleaner.dedupe_buffer_bytes)
        assert engine.partition("c", 0).log_end_offset == end
        return engine, 1


async def scenario(data_dir: Path, configs: dict[str, str], model: Model,
                   ops: list[tuple[object, ...]], max_keys: int,
                   final_crashes: list[tuple[str, int]]) -> None:
    engine = await opened(data_dir, map_bytes(max_keys))
    await engine.create_topic("c", 1, configs)
    now = 1_000_000
    for op in ops:
        plog = engine.partition("c", 0)
        if op[0] == "write":
            await write(plog, model, op[1], op[2], now)  # type: ignore[arg-type]
        elif op[0] == "tick":
            now += op[1]  # type: ignore[operator]
        elif op[0] == "clean":
            engine, _ = await clean(engine, data_dir, model, op[1], now)  # type: ignore[arg-type]
            model.check(engine.partition("c", 0), await read_all(engine.partition("c", 0)), now)
        else:
            await engine.close()
            engine = await opened(data_dir, map_bytes(max_keys))
    # Finally everything becomes old and inactive, any dirt is enough, and passes (the first
    # ones may crash) run until none is due (the map may be small; tombstones get a horizon
    # in one pass and go in a later one): what is left is the last value of each live key.
    await engine.set_topic_configs("c", {**configs, "min.cleanable.dirty.ratio": "0"})
    now += model.min_lag_ms + 1
    plog = engine.partition("c", 0)
    await plog.append([keyed([(FILLER, b"x" * 600)], now)])  # rolls: the rest is inactive
    model.history.append((plog.log_end_offset - 1, FILLER, b"x" * 600))
    model.written_at[plog.log_end_offset - 1] = now
    for i in range(200):
        now += model.retention_ms + model.min_lag_ms + 1
        crash_at = final_crashes[i] if i < len(final_crashes) else None
        engine, cleaned = await clean(engine, data_dir, model, crash_at, now)
        model.check(engine.partition("c", 0), await read_all(engine.partition("c", 0)), now)
        if not cleaned:
            break
    plog = engine.partition("c", 0)
    batches = await read_all(plog)
    model.check(plog, batches, now)
    live: dict[bytes | None, Rec] = {}
    for r in model.history[:-1]:
        live[r[1]] = r
    assert parse(batches)[:-1] == sorted(r for r in live.values() if r[2] is not None)
    removed = len(model.history) - len(parse(batches))
    event("10 or more records removed" if removed >= 10 else "fewer than 10 removed")
    await engine.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, segment_bytes=st.integers(150, 600),
       ratio=st.sampled_from(["0", "0.2", "0.5"]), retention=st.sampled_from([0, 100, 500]),
       lag=st.sampled_from([0, 0, 200]), max_keys=st.sampled_from([2, 1000]),
       final_crashes=st.lists(crash_spec, max_size=4))
def test_compaction_keeps_the_latest_record_of_each_key(
        ops: list[tuple[object, ...]], segment_bytes: int, ratio: str, retention: int,
        lag: int, max_keys: int, final_crashes: list[tuple[str, int]]) -> None:
    configs = {"cleanup.policy": "compact", "segment.bytes": str(segment_bytes),
               "min.cleanable.dirty.ratio": ratio, "delete.retention.ms": str(retention),
               "min.compaction.lag.ms": str(lag)}
    model = Model(min_lag_ms=lag, retention_ms=retention)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp), configs, model, ops, max_keys, final_crashes))
