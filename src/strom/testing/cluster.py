"""A local strom cluster for fault tests: N `strom serve` processes on loopback sharing one
PostgreSQL database (or a primary with a synchronous standby), each reaching the database
through a TcpFaultProxy of its own, so one broker can be cut off from the database while the
others carry on.

    with PostgresServer() as pg, LocalCluster(pg, brokers=3, log_dir=tmp,
                                              settings={"broker.session.timeout.ms": "3000"}) as c:
        producer = Producer({"bootstrap.servers": c.bootstrap_servers})
        c.kill(2); c.restart(2); c.wait_ready()
        c.partition_from_database(1); ...; c.heal(1)

Brokers are known by node id (1..N). Each keeps its port across restarts (the same address is
the same broker coming back). Logs go to `broker-N.log` in `log_dir`, which the cluster keeps;
`log_tails()` is what to print when a test fails.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Final
from urllib.parse import urlsplit

from confluent_kafka.admin import AdminClient

from strom.testing.cluster_broker import BrokerFailed, BrokerProcess
from strom.testing.postgres import PASSWORD, USER, PostgresServer, free_port
from strom.testing.postgres_pair import PostgresPair
from strom.testing.tcp_proxy import Direction, TcpFaultProxy

READY_TIMEOUT_S: Final = 60.0
METADATA_TIMEOUT_S: Final = 5.0
FAILOVER_PAUSE_S: Final = 1.0  # from the primary's death to the standby's promotion


class ClusterNotReady(RuntimeError):
    """The cluster did not come together in time; the message has the brokers' log tails."""


class LocalCluster:
    """Brokers 1..`brokers` on `postgres` (a server, or a pair: then each broker's URL names
    both hosts through its own proxies, with target_session_attrs=read-write)."""

    def __init__(self, postgres: PostgresServer | PostgresPair, *, brokers: int = 3,
                 settings: Mapping[str, str] | None = None, log_dir: Path | None = None,
                 database_url: str | None = None) -> None:
        if brokers < 1:
            raise ValueError(f"a cluster needs a broker, not {brokers}")
        self.postgres = postgres
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="strom-cluster-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.database = _database_name(database_url or postgres.new_database())
        self.failed_over = False
        self.proxies: dict[int, list[TcpFaultProxy]] = {}
        self.brokers: dict[int, BrokerProcess] = {}
        for node_id in range(1, brokers + 1):
            self.proxies[node_id] = [TcpFaultProxy("127.0.0.1", port)
                                     for port in self._database_ports()]
            self.brokers[node_id] = BrokerProcess(
                node_id=node_id, port=free_port(), storage="",
                log_path=self.log_dir / f"broker-{node_id}.log", settings=settings)

    @property
    def node_ids(self) -> list[int]:
        return sorted(self.brokers)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(b.address for b in self.brokers.values())

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> LocalCluster:
        """Starts every proxy and broker and waits until each broker lists all of them."""
        for node_id, proxies in self.proxies.items():
            for proxy in proxies:
                proxy.start()
            self.brokers[node_id].storage = self._storage_url(proxies)
        for broker in self.brokers.values():
            broker.start()
        self.wait_ready()
        return self

    def close(self) -> None:
        """Stops the brokers cleanly (killing one that hangs) and the proxies; keeps the logs."""
        for broker in self.brokers.values():
            with contextlib.suppress(BrokerFailed):  # killed; its log says why it hung
                broker.terminate()
        for proxies in self.proxies.values():
            for proxy in proxies:
                proxy.stop()

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S,
                   expected: Iterable[int] | None = None) -> None:
        """Returns once Metadata asked of every running broker lists exactly the `expected`
        brokers (by default every broker that is running and not paused)."""
        deadline = time.monotonic() + timeout_s
        while True:
            want = set(expected) if expected is not None else self.serving()
            seen = {node_id: self.listed_by(node_id) for node_id in self.serving()}
            if seen and all(listed == want for listed in seen.values()):
                return
            if time.monotonic() > deadline:
                raise ClusterNotReady(f"brokers never all listed {sorted(want)}: {seen}\n"
                                      f"{self.log_tails()}")
            time.sleep(0.2)

    def serving(self) -> set[int]:
        """The brokers running and not paused."""
        return {n for n, b in self.brokers.items() if b.alive and not b.paused}

    def listed_by(self, node_id: int) -> set[int] | None:
        """The brokers `node_id`'s Metadata lists, or None if it does not answer."""
        admin = AdminClient({"bootstrap.servers": self.brokers[node_id].address,
                             "socket.timeout.ms": int(METADATA_TIMEOUT_S * 1000)})
        try:
            metadata = admin.list_topics(timeout=METADATA_TIMEOUT_S)
        except Exception:  # KafkaException: no answer in time
            return None
        return set(metadata.brokers)

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(b.log_tail(lines) for b in self.brokers.values())

    # -- broker faults -----------------------------------------------------------------------

    def kill(self, node_id: int) -> None:
        """SIGKILL of broker `node_id`."""
        self.brokers[node_id].kill()

    def terminate(self, node_id: int) -> int:
        """SIGTERM of broker `node_id` (a clean stop); returns its exit status."""
        return self.brokers[node_id].terminate()

    def terminate_quietly(self, node_id: int) -> None:
        """SIGTERM of broker `node_id`, its exit status not wanted."""
        self.brokers[node_id].terminate()

    def restart(self, node_id: int) -> None:
        """Starts broker `node_id` again (at the same address), killing it first if it still
        runs; returns once it is ready."""
        broker = self.brokers[node_id]
        if broker.alive:
            broker.kill()
        broker.start()

    def pause(self, node_id: int) -> None:
        """SIGSTOP of broker `node_id`."""
        self.brokers[node_id].pause()

    def resume(self, node_id: int) -> None:
        """SIGCONT of broker `node_id`."""
        self.brokers[node_id].resume()

    def partition_from_database(self, node_id: int) -> None:
        """Broker `node_id` loses the network to the database (every host): a black hole."""
        for proxy in self.proxies[node_id]:
            proxy.blackhole()

    def drop_database_traffic(self, node_id: int, direction: Direction) -> None:
        """One-way loss between broker `node_id` and the database: `to_upstream` loses what
        the broker sends, `to_client` what the database answers."""
        for proxy in self.proxies[node_id]:
            proxy.drop(direction)

    def heal(self, node_id: int) -> None:
        """Broker `node_id`'s network to the database works again."""
        for proxy in self.proxies[node_id]:
            proxy.heal()

    # -- database faults ---------------------------------------------------------------------

    @property
    def primary(self) -> PostgresServer:
        """The server that takes writes now."""
        if isinstance(self.postgres, PostgresServer):
            return self.postgres
        if self.failed_over:
            assert self.postgres.standby is not None
            return self.postgres.standby
        return self.postgres.primary

    @property
    def can_fail_over(self) -> bool:
        return isinstance(self.postgres, PostgresPair) and not self.failed_over

    def kill_database(self) -> None:
        """SIGKILL of the primary PostgreSQL server (every process of it)."""
        self.primary.kill()

    def restart_database(self) -> None:
        """Starts the primary again (crash recovery)."""
        self.primary.start()

    def fail_over(self, pause_s: float = FAILOVER_PAUSE_S) -> None:
        """The primary SIGKILLed and, `pause_s` later, the standby promoted. Once per pair: the
        old primary is left dead, and the promoted standby runs alone."""
        if not isinstance(self.postgres, PostgresPair) or self.failed_over:
            raise RuntimeError("fail_over needs a PostgresPair that has not failed over yet")
        self.postgres.primary.kill()
        time.sleep(pause_s)
        self.postgres.promote()
        self.failed_over = True

    # -- helpers ---------------------------------------------------------------------------

    def _database_ports(self) -> list[int]:
        if isinstance(self.postgres, PostgresServer):
            return [self.postgres.port]
        assert self.postgres.standby is not None, "start the PostgresPair first"
        return [self.postgres.primary.port, self.postgres.standby.port]

    def _storage_url(self, proxies: list[TcpFaultProxy]) -> str:
        hosts = ",".join(proxy.address for proxy in proxies)
        query = "?target_session_attrs=read-write" if len(proxies) > 1 else ""
        return f"postgresql://{USER}:{PASSWORD}@{hosts}/{self.database}{query}"


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")
