"""The console's pure helpers: sizes for people, rates from successive samples of end offsets
or sizes, the quota form's parsing, and the merge of DescribeLogDirs answers of every broker."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ConfigEntry

from strom.cli.common import ClientOptions, CliError
from strom.cli.wire_admin import entity_label, merge_sizes
from strom.console.app import Rate, growth
from strom.console.html import human_size
from strom.console.kafka import (
    UNKNOWN_SOFTWARE,
    Software,
    broker_software,
    entity_in_order,
    quota_entity,
    total_size,
)
from strom.console.quotas import entity_from_json, quota_value, values_from


@pytest.mark.parametrize(("size", "shown"), [
    (None, "-"), (-1, "-"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
    (1536, "1.5 KiB"), (1024 * 1024 - 1, "1.0 MiB"), (20 * 1024 ** 2, "20.0 MiB"),
    (int(3.25 * 1024 ** 3), "3.2 GiB"), (5 * 1024 ** 4, "5.0 TiB"),
    (2048 * 1024 ** 5, "2048.0 PiB")])
def test_human_size(size: int | None, shown: str) -> None:
    assert human_size(size) == shown


def test_growth_counts_each_partition_s_increase() -> None:
    before = {("a", 0): 10, ("a", 1): 5, ("gone", 0): 100}
    after = {("a", 0): 15, ("a", 1): 5, ("new", 0): 3}
    assert growth(before, after) == 5 + 0 + 3  # a deleted topic hides no traffic
    assert growth(after, {("a", 0): 2}) == 0  # retention or a recreated topic: no growth


def test_rate_from_successive_samples() -> None:
    rate = Rate()
    rate.record(1000.0, {("t", 0): 0})
    assert list(rate.points) == []  # one sample is no rate yet
    rate.record(3000.0, {("t", 0): 100})
    rate.record(3000.0, {("t", 0): 500})  # no time passed: ignored
    rate.record(4000.0, {("t", 0): 150, ("t", 1): 10})
    assert list(rate.points) == [(3000.0, 50.0), (4000.0, 60.0)]


def test_rate_keeps_a_bounded_history() -> None:
    rate = Rate()
    for i in range(1000):
        rate.record(i * 1000.0, {("t", 0): i})
    assert len(rate.points) == 360 and rate.points[-1] == (999_000.0, 1.0)


def test_total_size_of_a_topic() -> None:
    sizes = {("t", 0): 100, ("t", 1): 50, ("u", 0): 7}
    assert total_size(sizes, "t", [0, 1, 2]) == 150
    assert total_size(sizes, "v", [0]) is None  # unknown, not 0


def test_merge_sizes_takes_the_largest_replica() -> None:
    assert merge_sizes([{("t", 0): 100, ("t", 1): 7}, {("t", 0): 90}, {("u", 0): 1}]) == {
        ("t", 0): 100, ("t", 1): 7, ("u", 0): 1}
    assert merge_sizes([]) == {}


def test_quota_entity_from_the_form() -> None:
    assert quota_entity("alice", False, "", False) == (("user", "alice"),)
    assert quota_entity("alice", False, " etl ", False) == (("user", "alice"),
                                                            ("client-id", "etl"))
    assert quota_entity("", True, "", True) == (("user", None), ("client-id", None))
    with pytest.raises(CliError, match="needs a user"):
        quota_entity(" ", False, "", False)
    with pytest.raises(CliError, match="not both"):
        quota_entity("alice", True, "", False)
    assert entity_label(quota_entity("", False, "", True)) == "client-id=<default>"
    assert entity_in_order([("client-id", "etl"), ("user", "bob")]) == (
        ("user", "bob"), ("client-id", "etl"))


def test_quota_values_from_the_form() -> None:
    assert values_from({"producer_byte_rate": "1048576", "request_percentage": " 12.5 ",
                        "consumer_byte_rate": ""}) == {"producer_byte_rate": 1048576.0,
                                                       "request_percentage": 12.5}
    for bad, message in (("fast", "not a number"), ("-1", "zero or more"),
                         ("nan", "zero or more")):
        with pytest.raises(CliError, match=message):
            values_from({"producer_byte_rate": bad})
    with pytest.raises(CliError, match="at least one value"):
        values_from({"producer_byte_rate": " "})
    assert quota_value("producer_byte_rate", 1048576.0) == "1048576 (1.0 MiB/s)"
    assert quota_value("request_percentage", 12.5) == "12.5"


def test_entity_from_a_delete_button() -> None:
    assert entity_from_json('[["user", "a"], ["client-id", null]]') == (
        ("user", "a"), ("client-id", None))
    for bad in ("", "[]", '[["topic", "x"]]', "{", '[["user"]]', "3"):
        with pytest.raises(CliError, match="no entity"):
            entity_from_json(bad)


class FakeAdmin:
    """describe_configs of BROKER resources: broker 1 is strom, 2 another Kafka broker, 3 fails."""

    def describe_configs(self, resources: list[Any], **_: Any) -> dict[Any, Future[Any]]:
        answers: dict[Any, Future[Any]] = {}
        for resource in resources:
            future: Future[Any] = Future()
            if resource.name == "1":
                future.set_result({"strom.version": ConfigEntry("strom.version", "9.9.9"),
                                   "strom.storage.engine": ConfigEntry("strom.storage.engine",
                                                                       "postgresql")})
            elif resource.name == "2":
                future.set_result({"num.partitions": ConfigEntry("num.partitions", "1")})
            else:
                future.set_exception(KafkaException(KafkaError(KafkaError._TIMED_OUT)))
            answers[resource] = future
        return answers


def test_broker_software_falls_back_for_brokers_that_are_not_strom() -> None:
    admin: Any = FakeAdmin()
    found = broker_software(admin, ClientOptions("nowhere:1", {}, 1.0), [1, 2, 3])
    assert found[1] == Software("9.9.9", "postgresql")
    assert found[2] == found[3] == Software(UNKNOWN_SOFTWARE, UNKNOWN_SOFTWARE)
    assert UNKNOWN_SOFTWARE == "unknown (not strom)"
