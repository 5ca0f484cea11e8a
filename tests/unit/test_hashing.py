"""Group and transactional ids map to the same internal-topic partition as in Kafka
(`Utils.abs(id.hashCode) % partitions`), including ids whose Java hash is negative."""

from strom.coordinator.group.context import Context
from strom.coordinator.group.model import GroupConfig
from strom.coordinator.hashing import java_string_hash, partition_for


def test_java_string_hash_matches_java() -> None:
    assert java_string_hash("") == 0
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("txn-10") == -859841438  # checked with javac + java
    assert java_string_hash("\U0001f600") == 1772899  # a surrogate pair, as Java sees it


def test_negative_hash_uses_utils_abs_not_a_mask() -> None:
    h = java_string_hash("txn-10")
    assert partition_for("txn-10", 50) == abs(h) % 50 == 38
    assert (h & 0x7FFFFFFF) % 50 != 38


def test_group_coordinator_uses_the_same_mapping() -> None:
    ctx = Context(GroupConfig())
    for group_id in ("txn-10", "console-consumer-12345", "g"):
        assert ctx.partition_for(group_id) == partition_for(group_id, 50)
