"""Three strom brokers share one PostgreSQL database, each through a fault proxy of its own,
while the recording workload runs (idempotent and transactional producers, a read_committed
consumer group committing offsets, a consume-transform-produce stage) and the nemesis
injects one fault of each kind, in a shuffled order: brokers SIGKILLed, SIGSTOPped past their
session timeout and SIGTERMed, a broker's database link black-holed or losing one direction,
PostgreSQL SIGKILLed. Afterwards every partition is read from the start, and the checker
finds no anomaly: no acknowledged write lost, nothing stored twice or out of order, no offset
handed out twice, no aborted write visible to read_committed, no group offset going
backwards, every consume-transform-produce input transformed exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strom.testing.fault_run import FaultRunConfig, run_faults
from strom.testing.nemesis import ALL_KINDS, FaultKind
from strom.testing.postgres import PostgresServer, PostgresUnavailable
from strom.testing.workload import WorkloadConfig
from tests.integration.conftest import unique_name

BROKERS = 3
FAULTS = 7  # one of each kind but the PostgreSQL failover (test_postgres_failover)
SEED = 20261206


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own (the nemesis kills it)."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_mixed_faults_leave_no_anomaly(own_postgres: PostgresServer, tmp_path: Path) -> None:
    config = FaultRunConfig(
        brokers=BROKERS, faults=FAULTS, seed=SEED, session_timeout_ms=3000,
        heartbeat_interval_ms=500, gap_s=(1.0, 2.0),
        workload=WorkloadConfig(name=unique_name("faults"), seed=SEED, drain_timeout_s=60,
                                final_read_timeout_s=60))
    result = run_faults(config, own_postgres, tmp_path, progress=print)
    print(result.render())
    assert len(result.faults) == FAULTS
    assert {f.kind for f in result.faults} == set(ALL_KINDS) - {FaultKind.POSTGRES_FAILOVER}
    assert result.report.summary.writes_acknowledged > 0
    assert result.ok, result.render()
