"""Standby tasks without a broker: kept in their task directories for the tasks asked for,
never for a task this instance runs, handed over (stores, locked directory, changelog
positions) when a stream thread is given the task, checkpointed when dropped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strom.streams import Consumed, Materialized, Serdes, StreamsBuilder, StreamsConfig
from strom.streams.standby import StandbyTasks, stateful_sub_topologies
from strom.streams.state_dir import StateDirectory, StateDirectoryLocked

S = Serdes.String()


@pytest.fixture
def standbys(tmp_path: Path) -> Iterator[StandbyTasks]:
    builder = StreamsBuilder()
    (builder.stream("words", consumed=Consumed(S, S)).group_by(lambda k, v: v)
     .count(Materialized("counts")))
    config = StreamsConfig({"application.id": "app", "bootstrap.servers": "127.0.0.1:1",
                            "state.dir": str(tmp_path), "num.standby.replicas": 1,
                            "socket.connection.setup.timeout.ms": 1000})
    kept = StandbyTasks(builder.build(), config, "pid", StateDirectory(str(tmp_path), "app"))
    yield kept
    kept.close()


def test_only_stateful_tasks_have_standbys(standbys: StandbyTasks) -> None:
    assert list(stateful_sub_topologies(standbys.topology)) == [1]
    standbys.update({"0_0", "1_0", "1_1"})
    assert standbys.task_ids == ["1_0", "1_1"]


def test_a_taken_standby_hands_over_and_comes_back_when_released(
        standbys: StandbyTasks, tmp_path: Path) -> None:
    standbys.update({"1_0", "1_1"})
    store = standbys._tasks["1_0"].stores["counts"]
    store.restore(b"word", (7).to_bytes(8, "big"), 5)  # a changelog record: count 7
    standbys._tasks["1_0"].positions[("app-counts-changelog", 0)] = 42
    handover = standbys.take("1_0")
    assert handover is not None
    assert handover.stores == {"counts": store}
    assert handover.positions == {("app-counts-changelog", 0): 42}
    assert handover.directory.locked  # the active task's now
    assert standbys.task_ids == ["1_1"]
    # Still wanted, but it runs here: no standby of it.
    standbys.update({"1_0", "1_1"})
    assert standbys.task_ids == ["1_1"]
    assert standbys.take("1_2") is None  # nothing to hand over; it runs here too
    for taken in handover.stores.values():  # the active task closes, then is released
        taken.close()
    handover.directory.unlock()
    standbys.released("1_0")
    standbys.update({"1_0", "1_1"})
    assert standbys.task_ids == ["1_0", "1_1"]
    # Its store on disk comes back with it.
    again = standbys._tasks["1_0"].stores["counts"]
    assert again.get(b"word") == 7
    # Dropped: its directory unlocked (anyone may take it), a checkpoint where it had one.
    standbys.update({"1_0"})
    assert standbys.task_ids == ["1_0"]
    StateDirectory(str(tmp_path), "app").task("1_1").lock()
    with pytest.raises(StateDirectoryLocked):
        StateDirectory(str(tmp_path), "app").task("1_0").lock()
