"""LocalCluster, the fault harness's cluster: two `strom serve` processes on one PostgreSQL
database, each through its own TCP fault proxy, list each other; a broker SIGKILLed,
SIGSTOPped or cut off from the database drops out of the other's Metadata once its session
expires, and comes back when restarted, resumed or healed; PostgreSQL killed and restarted
leaves a whole cluster; the logs are kept per broker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from strom.testing.cluster import LocalCluster
from strom.testing.postgres import PostgresServer, PostgresUnavailable

SESSION_MS = 1500
DEADLINE_S = 30.0


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own (the test kills it)."""
    try:
        server = PostgresServer(fsync=False)
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with server:
        yield server


def eventually(condition: Callable[[], bool], what: str, cluster: LocalCluster) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"{what}\n{cluster.log_tails()}"
        time.sleep(0.1)


def test_brokers_drop_out_and_come_back(own_postgres: PostgresServer, tmp_path: Path) -> None:
    settings = {"broker.session.timeout.ms": str(SESSION_MS),
                "broker.heartbeat.interval.ms": "300"}
    with LocalCluster(own_postgres, brokers=2, settings=settings, log_dir=tmp_path) as cluster:
        assert cluster.node_ids == [1, 2]
        assert cluster.listed_by(1) == cluster.listed_by(2) == {1, 2}
        assert len(cluster.bootstrap_servers.split(",")) == 2

        cluster.kill(2)
        assert not cluster.brokers[2].alive
        eventually(lambda: cluster.listed_by(1) == {1}, "killed broker 2 still listed", cluster)
        cluster.restart(2)
        cluster.wait_ready()

        cluster.pause(2)
        assert cluster.serving() == {1}
        eventually(lambda: cluster.listed_by(1) == {1}, "paused broker 2 still listed", cluster)
        cluster.resume(2)
        cluster.wait_ready()

        cluster.partition_from_database(1)
        assert all(set(p.modes().values()) == {"hold"} for p in cluster.proxies[1])
        eventually(lambda: cluster.listed_by(2) == {2}, "cut-off broker 1 still listed",
                   cluster)
        cluster.heal(1)
        cluster.wait_ready()

        cluster.drop_database_traffic(2, "to_client")
        eventually(lambda: cluster.proxies[2][0].counters.bytes_dropped["to_client"] > 0,
                   "nothing dropped on broker 2's link", cluster)
        cluster.heal(2)
        cluster.wait_ready()

        cluster.kill_database()
        cluster.restart_database()
        cluster.wait_ready()
        assert cluster.terminate(1) == 0
        assert not cluster.brokers[1].alive
    logs = {p.name: p.read_text() for p in tmp_path.glob("broker-*.log")}
    assert sorted(logs) == ["broker-1.log", "broker-2.log"]
    assert logs["broker-2.log"].count("strom is ready on") == 2  # started, then restarted
