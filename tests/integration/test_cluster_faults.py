"""Three strom brokers share one PostgreSQL database, each through a fault proxy of its own,
while the recording workload runs (idempotent and transactional producers, a read_committed
consumer group committing offsets, a consume-transform-produce stage) and the nemesis
injects eight faults of mixed kinds one after another: brokers SIGKILLed, SIGSTOPped past their
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
from strom.testing.postgres import PostgresServer, PostgresUnavailable
from strom.testing.workload import WorkloadConfig
from tests.integration.conftest import unique_name

BROKERS = 3
FAULTS = 8
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
        heartbeat_interval_ms=500,
        workload=WorkloadConfig(name=unique_name("faults"), seed=SEED, drain_timeout_s=60,
                                final_read_timeout_s=60))
    result = run_faults(config, own_postgres, tmp_path, progress=print)
    print(result.render())
    assert len(result.faults) == FAULTS
    assert result.report.summary.writes_acknowledged > 0
    assert result.ok, result.render()
