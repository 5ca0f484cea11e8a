"""The pieces of the runtime that decide without a broker: Kafka's murmur2 partitioner,
standby placement from the group's assignment, task ids from a group description, where a
key of a store lives, keys read from text (the HTTP endpoint), and the settings."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from strom.streams import Consumed, Materialized, Serdes, StreamsBuilder, StreamsConfig
from strom.streams.config import StreamsConfigError
from strom.streams.http_api import key_from_text
from strom.streams.membership import (
    GroupView,
    consumer_client_id,
    place_standbys,
    process_of,
    view_of,
)
from strom.streams.murmur2 import murmur2, partition_for
from strom.streams.queries import all_metadata, metadata_for_key

S = Serdes.String()


@pytest.mark.parametrize(("text", "expected"), [
    # Java's Utils.murmur2 of these UTF-8 strings
    ("21", -973932308), ("foobar", -790332482), ("a-little-bit-long-string", -985981536),
    ("a-little-bit-longer-string", -1486304829),
    ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971), ("abc", 479470107),
    ("1", -1993445489), ("12", 126087238), ("123", -267702483), ("12345", -1188365604)])
def test_murmur2_is_javas(text: str, expected: int) -> None:
    assert murmur2(text.encode()) == expected


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=64))
def test_murmur2_partitions_agree_with_another_client(data: bytes, partitions: int) -> None:
    assert murmur2(data) & 0xFFFFFFFF == kafka_python_murmur2(data)
    assert partition_for(data, partitions) == (kafka_python_murmur2(data) & 0x7FFFFFFF) \
        % partitions


def test_standbys_go_to_the_next_instances_never_to_the_owner() -> None:
    active = {"b": {"1_1", "0_1"}, "a": {"1_0", "0_0"}, "c": {"1_2", "0_2"}}

    def stateful(task: str) -> bool:
        return task.startswith("1_")

    assert place_standbys(active, 1, stateful) == {"a": {"1_1"}, "b": {"1_2"}, "c": {"1_0"}}
    assert place_standbys(active, 2, stateful) == {"a": {"1_1", "1_2"}, "b": {"1_2", "1_0"},
                                                   "c": {"1_0", "1_1"}}
    # More replicas than other instances: every other instance's tasks, once.
    assert place_standbys(active, 5, stateful) == place_standbys(active, 2, stateful)
    assert place_standbys({"a": {"1_0", "1_1"}}, 1, stateful) == {"a": set()}
    # A task listed for two instances (a stale view) is never a standby of its owner.
    assert place_standbys({"a": {"1_0"}, "b": {"1_0", "1_1"}}, 1, stateful) == {
        "a": {"1_1"}, "b": set()}


def test_process_ids_come_from_the_stream_threads_client_ids() -> None:
    client = consumer_client_id("my-app", "0123abcd", 3)
    assert process_of(client, "my-app") == "0123abcd"
    assert process_of("my-app-0123abcd-global-consumer", "my-app") is None
    assert process_of("other-0123abcd-0-consumer", "my-app") is None
    assert process_of("rdkafka", "my-app") is None


@dataclass
class _TP:
    topic: str
    partition: int


@dataclass
class _Assignment:
    topic_partitions: list[_TP]


@dataclass
class _Member:
    client_id: str
    assignment: _Assignment | None


@dataclass
class _Description:
    members: list[_Member] = field(default_factory=list)


def counting() -> StreamsBuilder:
    builder = StreamsBuilder()
    (builder.stream("words", consumed=Consumed(S, S)).group_by(lambda k, v: v)
     .count(Materialized("counts")))
    builder.global_table("products", Consumed(S, S), Materialized("products"))
    return builder


def test_a_group_description_tells_each_instances_tasks() -> None:
    topology = counting().build()
    anchors = {topology.physical("app", sub.source_topics[0]): sub.id
               for sub in topology.sub_topologies()}
    repartition = f"app-{next(iter(topology.internal_topics))}"
    assert anchors == {"words": 0, repartition: 1}
    description = _Description([
        _Member(consumer_client_id("app", "p1", 0),
                _Assignment([_TP("words", 0), _TP(repartition, 0)])),
        _Member(consumer_client_id("app", "p1", 1), _Assignment([_TP(repartition, 2)])),
        _Member(consumer_client_id("app", "p2", 0),
                _Assignment([_TP("words", 1), _TP(repartition, 1), _TP("elsewhere", 0)])),
        _Member("someone-else", _Assignment([_TP("words", 2)])),
        _Member(consumer_client_id("app", "p3", 0), None),  # joining
    ])
    view = view_of(description, "app", anchors, 1, lambda t: t.startswith("1_"))
    assert view.active == {"p1": {"0_0", "1_0", "1_2"}, "p2": {"0_1", "1_1"}, "p3": set()}
    assert view.standby == {"p1": {"1_1"}, "p2": set(), "p3": {"1_0", "1_2"}}
    assert view.owner("1_2") == "p1" and view.owner("0_2") is None
    assert view.standbys_of("1_0") == ["p3"]

    metadata = all_metadata(topology, view, {"p1": "h1:1", "p2": "h2:2"})
    assert [(m.process_id, m.endpoint, m.stores, m.standby_stores) for m in metadata] == [
        ("p1", "h1:1", ("counts", "products"), ("counts",)),
        ("p2", "h2:2", ("counts", "products"), ()),
        ("p3", None, ("products",), ("counts",))]
    assert metadata[0].as_json()["active_tasks"] == ["0_0", "1_0", "1_2"]


def test_metadata_for_a_key_names_the_instance_running_its_partition() -> None:
    topology = counting().build()
    view = GroupView({"p1": frozenset({"1_0", "1_2"}), "p2": frozenset({"1_1"})},
                     {"p2": frozenset({"1_0", "1_2"})})
    endpoints = {"p1": "h1:1", "p2": "h2:2"}
    for word in ["the", "quick", "brown", "fox", "jumps"]:
        found = metadata_for_key(topology, {0: 3, 1: 3}, view, endpoints, ("p1", "h1:1"),
                                 "counts", word, S)
        partition = (kafka_python_murmur2(word.encode()) & 0x7FFFFFFF) % 3
        assert (found.partition, found.task_id) == (partition, f"1_{partition}")
        assert found.active == ("h2:2" if partition == 1 else "h1:1")
        assert found.standbys == (() if partition == 1 else ("h2:2",))
    # A store fed by a topic written with another partitioner: the caller's partitioner.
    found = metadata_for_key(topology, {0: 3, 1: 3}, view, endpoints, ("p1", "h1:1"),
                             "counts", "the", S, lambda data, count: count - 2)
    assert (found.task_id, found.active) == ("1_1", "h2:2")
    # A global store is everywhere: this instance answers.
    here = metadata_for_key(topology, {0: 3, 1: 3}, view, endpoints, ("p1", "h1:1"),
                            "products", "x", S)
    assert (here.active, here.process_id) == ("h1:1", "p1")
    with pytest.raises(KeyError):
        metadata_for_key(topology, {0: 3, 1: 3}, view, endpoints, ("p1", None), "nope", "x", S)


def test_keys_from_text_as_the_store_reads_them() -> None:
    assert key_from_text("42", Serdes.Long()) == 42
    assert key_from_text("42", Serdes.Integer()) == 42
    assert key_from_text("1.5", Serdes.Double()) == 1.5
    assert key_from_text("42", S) == "42"
    assert key_from_text("ab", Serdes.Bytes()) == b"ab"
    assert key_from_text('{"a": 1}', Serdes.Json()) == {"a": 1}
    assert key_from_text("plain", Serdes.Json()) == "plain"
    with pytest.raises(ValueError):
        key_from_text("x", Serdes.Long())


def test_endpoint_settings() -> None:
    base = {"application.id": "app", "bootstrap.servers": "b:9092"}
    config = StreamsConfig({**base, "application.server": "host-1:8080",
                            "application.server.http": "true", "num.standby.replicas": 1})
    assert (config.application_server, config.application_server_http,
            config.num_standby_replicas) == ("host-1:8080", True, 1)
    assert "application.server.http" not in config.client_settings("consumer")
    assert StreamsConfig({**base, "application.server": "[::1]:80"}).application_server
    with pytest.raises(StreamsConfigError, match="host:port"):
        StreamsConfig({**base, "application.server": "no-port"})
    with pytest.raises(StreamsConfigError, match=r"needs application\.server"):
        StreamsConfig({**base, "application.server.http": "true"})
    with pytest.raises(StreamsConfigError, match="at least 0"):
        StreamsConfig({**base, "num.standby.replicas": -1})
