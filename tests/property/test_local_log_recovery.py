"""Property: whatever happens to the active segment's tail in a crash, recovery keeps exactly
the whole batches before the damage, with consecutive offsets, and serves nothing corrupt."""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from strom.config.broker import BrokerConfig
from strom.storage.local import LocalEngine, LocalPartitionLog
from strom.storage.local.log_segment import segment_name
from tests.unit.batch_factory import (
    append_batch,
    batch_base_offset,
    batch_last_offset,
    crash_engine,
    make_batch,
    read_all,
    region_bytes,
    split_batches,
)

LEADER_EPOCH_FIELD = range(12, 16)  # not covered by the CRC, so a flip there is undetectable


@dataclass(frozen=True)
class Scenario:
    appends: list[list[tuple[int, int]]]  # per append call: (record count, value size)
    segment_bytes: int
    index_interval: int
    clean_restart_after: int | None  # close and reopen cleanly after this many appends
    damage: str  # close | crash | truncate | flip
    where: float  # where in the active segment file the damage lands
    xor: int


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    batch_spec = st.tuples(st.integers(1, 4), st.integers(0, 300))
    appends = draw(st.lists(st.lists(batch_spec, min_size=1, max_size=3), min_size=1,
                            max_size=25))
    return Scenario(
        appends=appends,
        segment_bytes=draw(st.integers(300, 3000)),
        index_interval=draw(st.integers(0, 700)),
        clean_restart_after=draw(st.none() | st.integers(0, len(appends))),
        damage=draw(st.sampled_from(["close", "crash", "truncate", "flip"])),
        where=draw(st.floats(0, 1, exclude_max=True)),
        xor=draw(st.integers(1, 255)),
    )


def engine_for(data_dir: Path) -> LocalEngine:
    return LocalEngine(data_dir, BrokerConfig.build(data_dir, "localhost", 0))


def damage_active_segment(directory: Path, stored: list[bytes], s: Scenario) -> list[bytes]:
    """Damages the last segment file; returns the batches that must survive."""
    name = sorted(n for n in os.listdir(directory) if n.endswith(".log"))[-1]
    active_base = int(name[:20])
    path = directory / name
    kept = [b for b in stored if batch_base_offset(b) < active_base]
    active = [b for b in stored if batch_base_offset(b) >= active_base]
    size = path.stat().st_size
    assert size == sum(len(b) for b in active)
    if s.damage == "crash" or size == 0:
        return stored
    position = int(s.where * size)
    if s.damage == "truncate":
        os.truncate(path, position)
    else:
        start = 0
        for b in active:  # move a flip out of the leader epoch field
            if start <= position < start + len(b) and position - start in LEADER_EPOCH_FIELD:
                position = start + 20
            start += len(b)
        data = bytearray(path.read_bytes())
        data[position] ^= s.xor
        path.write_bytes(bytes(data))
    end = 0
    for b in active:
        end += len(b)
        if s.damage == "truncate" and end > position:
            break
        if s.damage == "flip" and end > position:
            break
        kept.append(b)
    return kept


async def check_reads(plog: LocalPartitionLog, expected: list[bytes]) -> None:
    assert await read_all(plog) == expected
    by_offset = {}
    for b in expected:
        for offset in range(batch_base_offset(b), batch_last_offset(b) + 1):
            by_offset[offset] = b
    for offset in list(by_offset)[::3]:
        max_bytes = len(by_offset[offset]) * 2 - 1
        result = await plog.read(offset, max_bytes, True)
        got = split_batches(region_bytes(result))
        assert got[0] == by_offset[offset]
        assert result.size <= max_bytes


async def play(data_dir: Path, s: Scenario) -> None:
    configs = {"segment.bytes": str(s.segment_bytes),
               "index.interval.bytes": str(s.index_interval)}
    engine = engine_for(data_dir)
    await engine.open()
    await engine.create_topic("t", 1, configs)
    stored: list[bytes] = []
    for i, specs in enumerate(s.appends):
        if i == s.clean_restart_after:
            await engine.close()
            engine = engine_for(data_dir)
            await engine.open()
        datas = [make_batch(n, base_timestamp=1000 * i, value_size=v) for n, v in specs]
        await engine.partition("t", 0).append([append_batch(d) for d in datas])
        stored.extend(bytes(d) for d in datas)  # as stored: the base offset is rewritten
    if s.damage == "close":
        await engine.close()
        survivors = stored
    else:
        await crash_engine(engine)
        survivors = damage_active_segment(data_dir / "t-0", stored, s)

    engine = engine_for(data_dir)
    await engine.open()
    plog = engine.partition("t", 0)
    expected_end = batch_last_offset(survivors[-1]) + 1 if survivors else 0
    assert plog.log_end_offset == expected_end
    await check_reads(plog, survivors)
    extra = make_batch(2, base_timestamp=5)
    result = await plog.append([append_batch(extra)])
    assert result.base_offset == expected_end
    await engine.close()

    engine = engine_for(data_dir)
    await engine.open()
    await check_reads(engine.partition("t", 0), [*survivors, bytes(extra)])
    await engine.close()


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_recovery_keeps_exactly_the_intact_prefix(s: Scenario) -> None:
    with tempfile.TemporaryDirectory(prefix="strom-prop-") as tmp:
        asyncio.run(play(Path(tmp), s))


def test_segment_name_is_kafkas() -> None:
    assert segment_name(1234) == "00000000000000001234"
