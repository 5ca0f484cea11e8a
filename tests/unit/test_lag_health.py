"""Consumer-lag health (strom.coordinator.group.lag_health): every status on synthetic
histories, the edge cases, the bounded windows and what drops them."""

from __future__ import annotations

from collections import deque

import pytest

from strom.coordinator.group.lag_health import (
    Commit,
    GroupStatus,
    HealthRules,
    LagHistory,
    PartitionStatus,
    evaluate_group,
    evaluate_partition,
    group_status,
    record,
)

WINDOW = 5


def history(*rows: tuple[int, int, int]) -> list[Commit]:
    """(offset, time_ms, log end offset) rows."""
    return [Commit(offset, time_ms, log_end) for offset, time_ms, log_end in rows]


def status(commits: list[Commit], log_end: int | None, now_ms: int,
           window: int = WINDOW) -> PartitionStatus:
    return evaluate_partition("t", 0, commits, log_end, now_ms, window).status


def steady(lags: list[int], step: int = 100, every_ms: int = 1000) -> list[Commit]:
    """Commits every `every_ms`, the offset moving `step` each time, with these lags."""
    return [Commit(i * step, i * every_ms, i * step + lag) for i, lag in enumerate(lags)]


def test_consumer_keeping_up_is_ok() -> None:
    commits = steady([0, 0, 0, 0, 0])
    assert status(commits, commits[-1].offset, 4500) is PartitionStatus.OK


def test_lag_zero_anywhere_in_the_window_is_ok() -> None:
    commits = steady([5, 6, 0, 7, 8])
    assert status(commits, commits[-1].log_end, 4500) is PartitionStatus.OK


def test_lag_never_going_down_is_warn() -> None:
    commits = steady([5, 6, 6, 7, 9])
    assert status(commits, commits[-1].log_end, 4500) is PartitionStatus.WARN


def test_lag_going_down_once_is_ok() -> None:
    commits = steady([5, 6, 4, 7, 9])
    assert status(commits, commits[-1].log_end, 4500) is PartitionStatus.OK


def test_same_offset_committed_with_lag_is_stall() -> None:
    commits = [Commit(100, i * 1000, 150 + i) for i in range(5)]
    assert status(commits, 160, 4500) is PartitionStatus.STALL


def test_no_commit_for_longer_than_the_window_spans_is_stop() -> None:
    commits = steady([5, 6, 4, 7, 9])  # spans 4000 ms, the newest at 4000
    assert status(commits, commits[-1].log_end + 50, 8001) is PartitionStatus.STOP
    assert status(commits, commits[-1].log_end + 50, 8000) is PartitionStatus.OK


def test_stopped_without_lag_is_ok() -> None:
    commits = steady([5, 6, 4, 7, 0])
    assert status(commits, commits[-1].offset, 60_000) is PartitionStatus.OK


def test_stop_comes_before_stall() -> None:
    commits = [Commit(100, i * 1000, 150) for i in range(5)]
    assert status(commits, 150, 4500) is PartitionStatus.STALL
    assert status(commits, 150, 9000) is PartitionStatus.STOP


def test_offset_going_backwards_is_rewind() -> None:
    commits = history((100, 0, 200), (200, 1000, 300), (50, 2000, 300), (80, 3000, 310),
                      (120, 4000, 320))
    assert status(commits, 320, 4500) is PartitionStatus.REWIND


def test_rewind_even_if_the_lag_was_zero_before_it() -> None:
    commits = history((100, 0, 100), (200, 1000, 200), (50, 2000, 210), (60, 3000, 220),
                      (70, 4000, 230))
    assert status(commits, 230, 4500) is PartitionStatus.REWIND


def test_rewind_recovered_falls_back_to_the_other_rules() -> None:
    commits = history((100, 0, 200), (200, 1000, 300), (50, 2000, 300), (250, 3000, 310),
                      (260, 4000, 320))
    assert status(commits, 320, 4500) is PartitionStatus.OK


def test_rewind_with_no_lag_now_is_ok() -> None:
    commits = history((100, 0, 200), (200, 1000, 300), (50, 2000, 300), (60, 3000, 310),
                      (70, 4000, 320))
    assert status(commits, 70, 4500) is PartitionStatus.OK


def test_fewer_commits_than_the_window_are_not_evaluated() -> None:
    commits = [Commit(100, i * 1000, 150) for i in range(4)]
    health = evaluate_partition("t", 0, commits, 150, 60_000, WINDOW)
    assert health.status is PartitionStatus.OK
    assert not health.evaluated
    assert health.reason == "4 of 5 commits"
    assert health.lag == 50


def test_never_committed_is_not_evaluated() -> None:
    health = evaluate_partition("t", 0, [], 150, 60_000, WINDOW)
    assert (health.status, health.evaluated, health.offset, health.lag) == (
        PartitionStatus.OK, False, None, None)


def test_deleted_topic_is_not_evaluated() -> None:
    commits = [Commit(100, i * 1000, 150) for i in range(5)]
    health = evaluate_partition("t", 0, commits, None, 60_000, WINDOW)
    assert (health.status, health.evaluated, health.lag) == (PartitionStatus.OK, False, None)


def test_group_status_is_the_worst_partitions() -> None:
    assert group_status([]) is GroupStatus.OK
    assert group_status([PartitionStatus.OK, PartitionStatus.WARN]) is GroupStatus.WARN
    for bad in (PartitionStatus.STOP, PartitionStatus.STALL, PartitionStatus.REWIND):
        assert group_status([PartitionStatus.WARN, bad, PartitionStatus.OK]) is GroupStatus.ERR


def test_evaluate_group_by_topic_and_partition() -> None:
    stalled = [Commit(100, i * 1000, 150) for i in range(5)]
    fine = steady([0, 0, 0, 0, 0])
    health = evaluate_group("g", {("b", 0): stalled, ("a", 1): fine, ("a", 0): []},
                            {("b", 0): 150, ("a", 1): 400}, 4500, WINDOW)
    assert health.status is GroupStatus.ERR
    assert [(p.topic, p.partition, p.status) for p in health.partitions] == [
        ("a", 0, PartitionStatus.OK), ("a", 1, PartitionStatus.OK),
        ("b", 0, PartitionStatus.STALL)]
    assert health.total_lag == 50
    data = health.to_json(4500)
    assert data["status"] == "ERR"
    assert data["partitions"][2]["last_commit_age_ms"] == 500  # type: ignore[index]


def test_window_is_bounded_and_close_commits_replace_the_newest() -> None:
    rules = HealthRules(window=3, min_distance_ms=100)
    window: deque[Commit] = deque(maxlen=rules.window)
    for i in range(5):
        record(window, Commit(i, i * 1000, 10), rules)
    record(window, Commit(9, 4050, 10), rules)
    assert [c.offset for c in window] == [2, 3, 9]


def test_rules_need_two_commits() -> None:
    with pytest.raises(ValueError):
        HealthRules(window=1)


def test_history_drops_groups_and_partitions() -> None:
    history_ = LagHistory(HealthRules(window=2, min_distance_ms=0))
    for i in range(4):
        history_.record("g", "t", 0, Commit(i, i, 10))
        history_.record("g", "t", 1, Commit(i, i, 10))
        history_.record("h", "t", 0, Commit(i, i, 10))
    assert [c.offset for c in history_.windows("g")[("t", 0)]] == [2, 3]
    history_.drop_partitions("g", [("t", 0)])
    assert list(history_.windows("g")) == [("t", 1)]
    history_.keep("g", [("t", 0)])
    assert "g" not in history_.groups()
    history_.drop_group("h")
    assert history_.groups() == []
    assert history_.evaluate("h", {}, 0).partitions == ()


def test_broker_settings() -> None:
    from pathlib import Path

    from strom.broker.state import lag_rules
    from strom.config.broker import BrokerConfig
    from strom.config.topic import ConfigError

    config = BrokerConfig.build(Path("."), "localhost", 9092, {
        "lag.health.window.commits": "4", "lag.health.min.distance.ms": "0"})
    assert lag_rules(config) == HealthRules(window=4, min_distance_ms=0)
    assert lag_rules(BrokerConfig()) == HealthRules(window=10, min_distance_ms=1000)
    with pytest.raises(ConfigError, match="at least 2"):
        BrokerConfig.build(Path("."), "localhost", 9092, {"lag.health.window.commits": "1"})


# docs/operations.md's examples: (offset, lag) per commit one second apart, the high watermark
# now, how long after the newest commit, the status.
EXAMPLES = [
    ([(100, 0), (200, 0), (300, 0), (400, 0), (500, 0)], 500, 500, PartitionStatus.OK),
    ([(0, 5), (100, 6), (200, 0), (300, 7), (400, 8)], 408, 500, PartitionStatus.OK),
    ([(0, 5), (100, 6), (200, 6), (300, 7), (400, 9)], 409, 500, PartitionStatus.WARN),
    ([(0, 5), (100, 6), (200, 4), (300, 7), (400, 9)], 409, 500, PartitionStatus.OK),
    ([(100, 50), (100, 51), (100, 52), (100, 53), (100, 54)], 160, 500,
     PartitionStatus.STALL),
    ([(0, 5), (100, 6), (200, 4), (300, 7), (400, 9)], 459, 4100, PartitionStatus.STOP),
    ([(100, 100), (200, 100), (50, 250), (80, 230), (120, 200)], 320, 500,
     PartitionStatus.REWIND),
    ([(100, 100), (200, 100), (50, 250), (250, 60), (260, 60)], 320, 500,
     PartitionStatus.OK),
]


@pytest.mark.parametrize(("rows", "high_watermark", "after_ms", "expected"), EXAMPLES)
def test_documented_examples(rows: list[tuple[int, int]], high_watermark: int, after_ms: int,
                             expected: PartitionStatus) -> None:
    commits = [Commit(offset, i * 1000, offset + lag) for i, (offset, lag) in enumerate(rows)]
    assert status(commits, high_watermark, commits[-1].time_ms + after_ms) is expected


def test_group_runtime_records_commits_with_the_high_watermark(tmp_path: object) -> None:
    import asyncio
    from pathlib import Path

    from strom.broker.group_runtime import GroupRuntime
    from strom.config.broker import BrokerConfig
    from strom.coordinator.group.model import GroupConfig
    from strom.protocol.record_builder import build_batch
    from strom.storage.api import AppendBatch
    from strom.storage.memory.engine import MemoryEngine

    async def body() -> None:
        assert isinstance(tmp_path, Path)
        engine = MemoryEngine(BrokerConfig.build(tmp_path, "127.0.0.1", 0, {}))
        await engine.open()
        clock = iter(range(0, 100_000, 1000))
        runtime = GroupRuntime(engine, GroupConfig(offsets_topic_partitions=1),
                               engine.config.node_id, clock=lambda: next(clock),
                               lag_rules=HealthRules(window=2, min_distance_ms=0))
        try:
            await engine.create_topic("t", 1, {}, engine.config.node_id)
            data = build_batch([(None, b"x", (), 0)] * 4)
            await engine.partition("t", 0).append([AppendBatch(bytearray(data), 4, 0, 0)])
            for offset in (1, 2, 3):
                await runtime.record_commits("g", [("t", 0, offset),
                                                   ("missing", 0, offset)])
            windows = runtime.lag_history.windows("g")
            assert list(windows) == [("t", 0)]  # a partition that does not exist is left out
            assert [(c.offset, c.log_end) for c in windows[("t", 0)]] == [(2, 4), (3, 4)]
        finally:
            await engine.close()

    asyncio.run(body())
