"""The broker processes of the benchmarks, started and stopped by the scripts themselves.

A `Broker` is what a benchmark talks to: one process (Tansu, strom on its local log, strom on
PostgreSQL) or a cluster of strom processes sharing one PostgreSQL database (`strom-pg3`).
Each process is a `Node`: its own process group (so a signal reaches its children too), its
own port, its log file, and the command line it was started with, so that a cluster benchmark
can kill one node and start it again as the same broker (same node id, same address).

Every wait here is bounded: a broker that does not start, or does not stop, costs seconds.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

REPO = Path(__file__).resolve().parent.parent
TANSU_SCRIPT = Path("/work/shared/peers/tansu.sh")
CLUSTER_SIZE = 3  # the brokers of "strom-pg3"
POSTGRES: list[Any] = []  # the run's PostgreSQL server, started on first use
START_LIMIT_S = 30.0  # bound on one broker's start
CLUSTER_START_LIMIT_S = 60.0  # bound on a cluster's start: all accept, Metadata lists all
STOP_GRACE_S = 3.0  # SIGTERM -> SIGKILL
CLUSTER_STOP_GRACE_S = 10.0  # a cluster's brokers hand their leases over as they stop
KILL_WAIT_S = 5.0  # SIGKILL -> gone


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tansu_binary() -> str:
    """The Tansu binary installed by the peers script (installs it on first use)."""
    out = subprocess.run(["bash", str(TANSU_SCRIPT), "path"], capture_output=True,
                         text=True, timeout=300, check=True)
    return out.stdout.strip().splitlines()[-1]


def postgres_database() -> str:
    """A new database on the run's private PostgreSQL server (started on first use)."""
    if not POSTGRES:
        sys.path.insert(0, str(REPO / "src"))
        from strom.testing.postgres import PostgresServer

        server = PostgresServer(fsync=True, settings={"shared_buffers": "256MB"})
        server.start()
        POSTGRES.append(server)
    url: str = POSTGRES[0].new_database()
    return url


def close_postgres() -> None:
    for server in POSTGRES:
        server.close()
    POSTGRES.clear()


def strom_command(storage: list[str], port: int, node_id: int | None = None,
                  settings: dict[str, str] | None = None) -> list[str]:
    """`python -m strom serve` with the given storage arguments, on 127.0.0.1:port."""
    command = [sys.executable, "-m", "strom", "serve", *storage, "--listen", f"127.0.0.1:{port}"]
    if node_id is not None:
        command += ["--node-id", str(node_id)]
    for name, value in (settings or {}).items():
        command += ["--set", f"{name}={value}"]
    return command


# --------------------------------------------------------------------------- one process


@dataclass
class Node:
    """One broker process; it can be signalled and started again with the same command."""

    node_id: int
    port: int
    command: list[str]
    cwd: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def spawn(self) -> None:
        """Start the process (again), appending to its log file."""
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        with open(self.log_path, "ab") as logfile:
            self.proc = subprocess.Popen(self.command, cwd=self.cwd, stdout=logfile,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def signal(self, sig: signal.Signals) -> bool:
        """Send `sig` to the node's process group; False if it had already gone."""
        if not self.alive():
            return False
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def wait(self, timeout_s: float) -> bool:
        """True once the process has exited, False if it still runs after timeout_s."""
        if self.proc is None:
            return True
        try:
            self.proc.wait(max(0.0, timeout_s))
        except subprocess.TimeoutExpired:
            return False
        return True

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid) if self.alive() and self.proc is not None else 0.0

    def exit_status(self) -> str:
        code = None if self.proc is None else self.proc.poll()
        return "running" if code is None else f"exited with {code}"

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- a broker


@dataclass
class Broker:
    """A running broker started by this script: one node, or a cluster of them."""

    name: str
    nodes: list[Node]
    data_dir: Path
    startup_s: float = 0.0

    @property
    def bootstrap(self) -> str:
        return ",".join(node.address for node in self.nodes)

    @property
    def port(self) -> int:
        """The first node's port (the one a single-broker check talks to)."""
        return self.nodes[0].port

    def node(self, node_id: int) -> Node:
        return next(node for node in self.nodes if node.node_id == node_id)

    def alive(self) -> bool:
        return all(node.alive() for node in self.nodes)

    def rss_mb(self) -> float:
        """VmRSS summed over every node (and its child processes), in MiB."""
        return sum(node.rss_mb() for node in self.nodes)

    def exit_report(self) -> str:
        """Which nodes exited and how, with the tail of each one's log."""
        if len(self.nodes) == 1:
            return f"{self.name} {self.nodes[0].exit_status()}:\n{self.log_tail()}"
        states = ", ".join(f"node {n.node_id} {n.exit_status()}" for n in self.nodes)
        return f"{self.name}: {states}:\n{self.log_tail()}"

    def log_tail(self, lines: int = 15) -> str:
        if len(self.nodes) == 1:
            return self.nodes[0].log_tail(lines)
        return "\n".join(f"--- node {node.node_id} ({node.log_path.name}) ---\n"
                         f"{node.log_tail(lines)}" for node in self.nodes)


def make_nodes(name: str, data_dir: Path, tansu: str,
               settings: dict[str, str] | None = None) -> list[Node]:
    """The nodes of one broker: Tansu mirrors `tansu.sh start` (memory engine); strom-pg3 is
    CLUSTER_SIZE strom processes (node ids 1..N) on one new database."""
    if name == "tansu":
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        command = [tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                   "--storage-engine", "memory://tansu/"]
        return [Node(1, port, command, data_dir, data_dir / "broker.log")]
    if name in ("strom-pg", "strom-pg3"):
        storage = ["--storage", postgres_database()]
        count = CLUSTER_SIZE if name == "strom-pg3" else 1
        nodes = []
        for node_id in range(1, count + 1):
            port = free_port()
            log_name = "broker.log" if count == 1 else f"broker-{node_id}.log"
            command = strom_command(storage, port, node_id if count > 1 else None, settings)
            nodes.append(Node(node_id, port, command, data_dir, data_dir / log_name))
        return nodes
    port = free_port()
    storage = (["--storage", "memory:"] if name.startswith("strom-mem")  # no disk at all
               else ["--data-dir", str(data_dir / "data")])
    command = strom_command(storage, port, None, settings)
    return [Node(1, port, command, data_dir, data_dir / "broker.log")]


def start_broker(name: str, root: Path, tansu: str, timeout_s: float | None = None,
                 settings: dict[str, str] | None = None) -> Broker:
    """Spawn a broker in a fresh dir on free ports; return once it is ready: its node accepts
    a connection, or (a cluster) every node accepts and Metadata lists them all.

    `settings` are strom `--set` settings (not for Tansu)."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    nodes = make_nodes(name, data_dir, tansu, settings)
    broker = Broker(name, nodes, data_dir)
    if timeout_s is None:
        timeout_s = START_LIMIT_S if len(nodes) == 1 else CLUSTER_START_LIMIT_S
    begin = time.perf_counter()
    for node in nodes:
        node.spawn()
    try:
        wait_ready(broker, begin + timeout_s)
    except BaseException:
        stop_broker(broker)
        raise
    broker.startup_s = time.perf_counter() - begin
    return broker


def wait_ready(broker: Broker, deadline: float, nodes: list[Node] | None = None) -> None:
    """Wait until `nodes` (default: all) accept connections and, for a cluster, until
    Metadata lists every node; raise RuntimeError if a node exits or time runs out."""
    waiting = list(broker.nodes if nodes is None else nodes)
    while waiting:
        for node in list(waiting):
            if not node.alive():
                raise RuntimeError(f"{broker.name} node {node.node_id} {node.exit_status()}:\n"
                                   f"{node.log_tail()}")
            if node.accepts():
                waiting.remove(node)
        if waiting and time.perf_counter() > deadline:
            ids = ", ".join(str(node.node_id) for node in waiting)
            raise RuntimeError(f"{broker.name}: node(s) {ids} did not accept a connection in"
                               f" time:\n{broker.log_tail()}")
        if waiting:
            time.sleep(0.005)
    if len(broker.nodes) > 1:
        wait_listed(broker, {node.node_id for node in broker.nodes}, deadline)


def wait_listed(broker: Broker, node_ids: set[int], deadline: float) -> None:
    """Wait until Metadata (asked of any node) lists exactly `node_ids`."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    listed: set[int] = set()
    while time.perf_counter() < deadline:
        try:
            meta = admin.list_topics(timeout=max(0.1, min(2.0, deadline - time.perf_counter())))
            listed = set(meta.brokers)
        except KafkaException:
            listed = set()
        if listed == node_ids:
            return
        time.sleep(0.02)
    raise RuntimeError(f"{broker.name}: Metadata lists brokers {sorted(listed)}, not"
                       f" {sorted(node_ids)}, after the time bound:\n{broker.log_tail()}")


def stop_broker(broker: Broker) -> None:
    """SIGTERM every node's process group, SIGKILL what still runs after the grace period.

    Tansu only exits on SIGTERM once its clients have gone, so close clients first: clients
    kept alive by exception tracebacks are only freed by the cycle collector.
    """
    gc.collect()
    grace_s = STOP_GRACE_S if len(broker.nodes) == 1 else CLUSTER_STOP_GRACE_S
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, KILL_WAIT_S)):
        running = [node for node in broker.nodes if node.signal(sig)]
        deadline = time.perf_counter() + wait_s
        for node in running:
            node.wait(deadline - time.perf_counter())
        if not any(node.alive() for node in broker.nodes):
            return


def rss_mb(pid: int) -> float:
    """VmRSS of pid plus its descendants, in MiB."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        family.update(children)
        frontier.extend(children)
    total_kb = 0
    for member in family:
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024
