"""The state directory (locks, process id, checkpoints) and the partition layout of an
application's topics (co-partitioning, repartition and changelog topics)."""

from __future__ import annotations

from pathlib import Path

import pytest

from strom.streams import Consumed, Grouped, Materialized, Repartitioned, Serdes, StreamsBuilder
from strom.streams.internal_topics import TopicLayoutError, layout
from strom.streams.state_dir import StateDirectory, StateDirectoryLocked

S = Serdes.String()


def test_a_task_directory_is_locked_by_one_holder(tmp_path: Path) -> None:
    state = StateDirectory(str(tmp_path), "app")
    first, second = state.task("0_1"), state.task("0_1")
    first.lock()
    with pytest.raises(StateDirectoryLocked, match="another instance"):
        second.lock()
    first.unlock()
    second.lock()
    second.unlock()


def test_the_process_id_survives_a_restart_and_checkpoints_round_trip(tmp_path: Path) -> None:
    pid = StateDirectory(str(tmp_path), "app").process_id()
    assert StateDirectory(str(tmp_path), "app").process_id() == pid
    assert StateDirectory(str(tmp_path), "other").process_id() != pid
    task = StateDirectory(str(tmp_path), "app").task("1_0")
    task.lock()
    assert task.read_checkpoint() == {}
    task.write_checkpoint({("app-s-changelog", 0): 42})
    assert task.read_checkpoint() == {("app-s-changelog", 0): 42}
    (task.path / "store-file").write_text("x")
    task.wipe_stores()
    assert sorted(p.name for p in task.path.iterdir()) == [".lock"]
    (task.path / ".checkpoint").write_text("not json")
    assert task.read_checkpoint() == {}


def word_count(partitions: int | None = None) -> StreamsBuilder:
    b = StreamsBuilder()
    stream = b.stream("lines", consumed=Consumed(S, S)).flat_map_values(str.split)
    if partitions is not None:
        stream = stream.repartition(Repartitioned(S, S, "words", partitions))
    stream.group_by(lambda k, w: w, Grouped(S, S)).count(Materialized("counts"))
    return b


def test_layout_of_repartition_and_changelog_topics() -> None:
    planned = layout(word_count().build(), "wc", {"lines": 4})
    assert planned.sub_partitions == {0: 4, 1: 4}
    topics = {p.name: (p.partitions, p.config["cleanup.policy"]) for p in planned.internal}
    assert topics == {"wc-counts-repartition": (4, "delete"),
                      "wc-counts-changelog": (4, "compact")}
    planned = layout(word_count(partitions=2).build(), "wc", {"lines": 4})
    assert planned.sub_partitions == {0: 4, 1: 2, 2: 2}


def test_layout_refuses_missing_and_not_co_partitioned_sources() -> None:
    with pytest.raises(TopicLayoutError, match="do not exist"):
        layout(word_count().build(), "wc", {})
    b = StreamsBuilder()
    left = b.stream("a", consumed=Consumed(S, S))
    left.merge(b.stream("b", consumed=Consumed(S, S))).group_by_key().count()
    with pytest.raises(TopicLayoutError, match="not co-partitioned"):
        layout(b.build(), "app", {"a": 2, "b": 3})
    assert layout(b.build(), "app", {"a": 3, "b": 3}).sub_partitions == {0: 3}
