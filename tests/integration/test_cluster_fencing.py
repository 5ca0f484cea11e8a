"""A broker whose session lapses cannot write, emulated in this process on a 3-broker strom
cluster:

* paused: node 3's event loop is blocked (as SIGSTOP would stop the process) for longer
  than its session while idempotent producers and a group run; nodes 1 and 2 take its
  partitions and its coordinator shards over, and when node 3 runs again it acknowledges
  nothing at its old leases, starts a new session and gets its share back; the history shows
  no lost or duplicated write;
* cut off: node 3 reaches PostgreSQL through a TCP proxy that stalls (it keeps reading, and
  forwards nothing, with no error and no reset). An append node 3 accepted just before is
  stuck in the proxy; node 1 or 2 takes the partition over at the next leader epoch and
  writes the same offset; when the link comes back the stuck statement reaches PostgreSQL
  and inserts nothing (the epoch fence), node 3 answers that produce with an error, and the
  partition holds exactly the records of the new leader. Meanwhile node 3 names no leader
  for what it held, and producers move on within a few seconds of its session.

A real SIGSTOP/SIGKILL of broker processes is the fault harness's (another suite)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from strom.protocol.client import KafkaConnection
from strom.protocol.messages import RequestBuilder
from strom.protocol.record_builder import build_batch
from strom.testing import EmbeddedBroker
from strom.testing.history import Event, ProduceAcked
from strom.testing.postgres import PostgresServer
from tests.integration.cluster import Cluster, eventually
from tests.integration.cluster_workload import Workload, errors_of
from tests.integration.conftest import DEADLINE_S, produce_all, producer
from tests.integration.test_cluster_moves import run_for, summary
from tests.integration.three_clients import read

PARTITIONS = 6
PRODUCE = 0
SESSION_S = 2.0  # broker.session.timeout.ms of the cluster


# -- node 3 paused -------------------------------------------------------------------------------


@contextlib.contextmanager
def paused(broker: EmbeddedBroker) -> Iterator[None]:
    """Blocks the broker's event loop thread (its sockets stay open, nothing is answered, no
    timer runs) until the block ends."""
    gate, entered = threading.Event(), threading.Event()

    def block() -> None:
        entered.set()
        gate.wait(DEADLINE_S * 3)

    async def schedule() -> None:
        # later, not soon: `run` gets this coroutine's result from a callback of the loop,
        # which must run before the loop blocks
        asyncio.get_running_loop().call_later(0.05, block)

    broker.run(schedule())
    assert entered.wait(5), "the broker's loop never ran the pause"
    try:
        yield
    finally:
        gate.set()


@pytest.fixture
def cluster(postgres_server: PostgresServer) -> Iterator[Cluster]:
    with Cluster(postgres_server.new_database()) as running:
        running.wait_whole()
        yield running


@pytest.mark.slow
def test_a_paused_broker_loses_its_leases_and_acknowledges_nothing_stale(
        cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="strom.storage.postgres")
    topic = cluster.spread_topic("cl-pause", PARTITIONS)
    group = cluster.key_on("cl-pause", 3)
    before = cluster.partitions(1, topic)
    workload = Workload(cluster.bootstrap, topic, PARTITIONS, group).start()
    try:
        run_for(workload, 2.0)
        workload.wait_group_caught_up()
        workload.note("pausing node 3")
        fault = time.monotonic()
        with paused(cluster.brokers[3]):
            cluster.stopped.add(3)  # for `whole`: nodes 1 and 2 must do without it
            taken_s = cluster.wait_whole([topic])
            moved = cluster.partitions(1, topic)
            run_for(workload, 1.0)
            workload.note("node 3 runs again")
        cluster.stopped.discard(3)
        back_s = cluster.wait_whole([topic])
        run_for(workload, 2.0)
        report = workload.finish()
    finally:
        workload.close()
    print(f"\npause of node 3: nodes 1 and 2 took over after {taken_s:.2f} s, node 3 back "
          f"{back_s:.2f} s after it resumed; {summary(workload, fault)}")
    assert taken_s >= SESSION_S * 0.5, "leases moved before node 3's session could expire"
    for p, entry in moved.items():
        assert int(entry.leader_id) in (1, 2), (p, entry)
        if int(before[p].leader_id) == 3:
            assert int(entry.leader_epoch) > int(before[p].leader_epoch)
    assert report.ok, report.render()
    assert report.summary.writes_acknowledged == report.summary.writes_attempted
    assert errors_of(workload.writers) == []
    assert any("session" in r.getMessage() and "expired" in r.getMessage()
               for r in caplog.records), "node 3 never noticed its session had lapsed"


# -- node 3 cut off from PostgreSQL ----------------------------------------------------------------


class StallingProxy:
    """A raw TCP proxy to PostgreSQL (strom.testing.fault_proxy speaks Kafka frames; this one
    forwards bytes). `hold()` stalls it: it keeps reading both ways and forwards nothing;
    `release()` forwards what it held, in order, and goes on. What it held from the broker
    (`held_from_broker()`) shows which statements are stuck."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-proxy",
                                        daemon=True)
        self._thread.start()
        self._flowing: asyncio.Event = self._call(self._event())
        self._held = bytearray()
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server = self._call(asyncio.start_server(
            self._connection, "127.0.0.1", 0))
        self.port: int = self._server.sockets[0].getsockname()[1]

    async def _event(self) -> asyncio.Event:
        flowing = asyncio.Event()
        flowing.set()
        return flowing

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1",
                                                                 self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, writer, up_writer, from_broker=True),
                             self._pipe(up_reader, up_writer, writer, from_broker=False),
                             return_exceptions=True)

    async def _pipe(self, src: asyncio.StreamReader, src_writer: asyncio.StreamWriter,
                    dst: asyncio.StreamWriter, from_broker: bool) -> None:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def forward() -> None:
            while (data := await queue.get()) is not None:
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
            await self._flowing.wait()
            dst.close()

        sender = asyncio.create_task(forward())
        try:
            while data := await src.read(65536):
                if from_broker and not self._flowing.is_set():
                    with self._lock:
                        self._held += data
                queue.put_nowait(data)
        except OSError:
            pass
        finally:
            queue.put_nowait(None)
            with contextlib.suppress(OSError):
                await sender
            src_writer.close()

    def hold(self) -> None:
        with self._lock:
            self._held.clear()
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def held_from_broker(self) -> bytes:
        with self._lock:
            return bytes(self._held)

    async def _shutdown(self) -> None:
        self._flowing.set()
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def close(self) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def proxy(postgres_server: PostgresServer) -> Iterator[StallingProxy]:
    running = StallingProxy(postgres_server.port)
    try:
        yield running
    finally:
        running.close()


def produce_request(topic: str, partition: int, value: bytes) -> Any:
    now = int(time.time() * 1000)
    records = build_batch([(None, value, [], now)])
    return lambda b: b.make(
        "ProduceRequest", transactional_id=None, acks=-1, timeout=timedelta(seconds=30),
        topic_data=(b.make("TopicProduceData", name=topic, partition_data=(b.make(
            "PartitionProduceData", index=partition, records=records),)),))


async def raw_produce(port: int, topic: str, partition: int, value: bytes
                      ) -> tuple[int, int]:
    """One Produce (acks=all, v12 at most) straight to a broker: the partition's error code
    and the leader its KIP-951 hint names (-1: none)."""
    connection = await KafkaConnection.open("127.0.0.1", port, "stale-writer",
                                            connect_timeout_s=5, request_timeout_s=40)
    try:
        version = connection.version_for(PRODUCE, 12)
        answer = await connection.request(produce_request(topic, partition, value)(
            RequestBuilder(PRODUCE, version)))
        found = answer.responses[0].partition_responses[0]
        return int(found.error_code), int(found.current_leader.leader_id)
    finally:
        await connection.close()


@pytest.fixture
def cut_cluster(postgres_server: PostgresServer, proxy: StallingProxy) -> Iterator[Cluster]:
    """A cluster whose node 3 reaches PostgreSQL through `proxy`; PostgreSQL logs every
    statement that writes to its database, with its parameters (`executed_with`)."""
    url = postgres_server.new_database()
    database = url.rsplit("/", 1)[1]
    postgres_server.psql(database, f"ALTER DATABASE {database} SET log_statement = 'mod'")
    through_proxy = url.replace(f":{postgres_server.port}/", f":{proxy.port}/")
    with Cluster(url, urls={3: through_proxy}) as running:
        running.wait_whole()
        yield running


def executed_with(server: PostgresServer, value: bytes) -> bool:
    """Whether PostgreSQL's log shows a statement run with `value` in a parameter (bytea
    parameters are logged in hex)."""
    return value.hex() in server.log_file.read_text(errors="replace")


def test_an_append_stuck_on_a_cut_off_link_is_fenced(cut_cluster: Cluster,
                                                     proxy: StallingProxy,
                                                     postgres_server: PostgresServer) -> None:
    """Node 3 accepts an append, whose statement the stalled link holds; node 1 or 2 takes
    the partition over and writes the offset node 3 wanted; the held statement then reaches
    PostgreSQL (its log shows it run) and inserts nothing, and node 3 answers the produce
    with an error (once its leases may have lapsed, or when the link is back)."""
    cluster = cut_cluster
    topic = cluster.spread_topic("cl-fence", PARTITIONS)
    before = cluster.partitions(1, topic)
    partition = min(p for p, e in before.items() if int(e.leader_id) == 3)
    old_epoch = int(before[partition].leader_epoch)
    others = f"{cluster.address(1)},{cluster.address(2)}"
    first = produce_all(producer(others, enable_idempotence=True), topic,
                        [{"value": b"before", "partition": partition}])
    assert [m.offset() for m in first.acked] == [0]

    proxy.hold()
    answer: list[tuple[int, int]] = []
    stale = threading.Thread(target=lambda: answer.append(asyncio.run(raw_produce(
        cluster.port(3), topic, partition, b"stale-append"))), daemon=True)
    stale.start()
    try:
        eventually(lambda: b"stale-append" in proxy.held_from_broker(),
                   "node 3 never sent the append (it refused it before: the test "
                   "lost a race with its failing heartbeat)", deadline_s=SESSION_S)
        cluster.stopped.add(3)
        cluster.wait_whole([topic])
        moved = cluster.partitions(1, topic)[partition]
        assert int(moved.leader_id) in (1, 2) and int(moved.leader_epoch) > old_epoch
        second = produce_all(producer(others, enable_idempotence=True), topic,
                             [{"value": b"after", "partition": partition}])
        assert [m.offset() for m in second.acked] == [1]  # the offset node 3 wanted
        assert not executed_with(postgres_server, b"stale-append")
    finally:
        proxy.release()
    # The statement the link held reaches PostgreSQL now, after the takeover.
    eventually(lambda: executed_with(postgres_server, b"stale-append"),
               "the held append never reached PostgreSQL")
    stale.join(DEADLINE_S)
    assert answer and answer[0][0] != ErrorCode.none, answer
    cluster.stopped.discard(3)
    cluster.wait_whole([topic])
    got = read("confluent-kafka", cluster.bootstrap, topic, [partition], 2)
    assert [(o, v) for _, o, v in got] == [(0, b"before"), (1, b"after")]
    print(f"\nthe stuck append was answered {ErrorCode(answer[0][0]).name}")


def test_a_cut_off_broker_stops_naming_itself_leader(cut_cluster: Cluster,
                                                      proxy: StallingProxy) -> None:
    """Once nodes 1 and 2 took node 3's partitions over (node 3's session lapsed), node 3,
    still cut off, does not send clients back to itself: its Metadata and the leader hint of
    its NOT_LEADER_OR_FOLLOWER name another leader or none. (Until main's 1f1db84 it named
    itself for as long as the cut lasted.)"""
    cluster = cut_cluster
    topic = cluster.spread_topic("cl-cut", PARTITIONS)
    led_by_3 = [p for p, n in cluster.leaders(1, topic).items() if n == 3]
    proxy.hold()
    try:
        cluster.stopped.add(3)
        cluster.wait_whole([topic])  # nodes 1 and 2 lead them now
        seen = cluster.leaders(3, topic)
        hint = asyncio.run(raw_produce(cluster.port(3), topic, led_by_3[0], b"misdirected"))
    finally:
        proxy.release()
    assert hint[0] == ErrorCode.not_leader_or_follower, hint
    assert hint[1] != 3, f"node 3's hint names node 3 for partition {led_by_3[0]}"
    assert all(seen[p] != 3 for p in led_by_3), f"node 3's Metadata says it leads: {seen}"


def test_writes_move_on_within_the_session_when_a_broker_is_cut_off(
        cut_cluster: Cluster, proxy: StallingProxy) -> None:
    """Idempotent producers write over all partitions while node 3 is cut off from
    PostgreSQL for 12 s: the partitions node 3 led take writes again (at their new leaders)
    within a few seconds of its 2 s session, not after the cut. (Until main's 1f1db84 the
    appends node 3 had sent held them until the client's own request timeout, 10 s here.)"""
    cluster = cut_cluster
    topic = cluster.spread_topic("cl-cut", PARTITIONS)
    led_by_3 = {p for p, n in cluster.leaders(1, topic).items() if n == 3}
    workload = Workload(cluster.bootstrap, topic, PARTITIONS, cluster.key_on("cl-cut", 1))
    try:
        workload.start()
        run_for(workload, 2.0)
        proxy.hold()
        try:
            run_for(workload, 12.0)
        finally:
            proxy.release()
        cluster.wait_whole([topic])
        report = workload.finish()
    finally:
        workload.close()
    assert report.ok, report.render()
    gaps = ack_gaps(workload.history.events)
    print(f"\nlongest gap between acknowledgements per partition: {gaps}; node 3 led "
          f"{sorted(led_by_3)}")
    assert max(gaps[p] for p in led_by_3) < SESSION_S + 4.0, gaps


def ack_gaps(events: Sequence[Event]) -> dict[int, float]:
    """Per partition, the longest time (s) between two consecutive acknowledgements."""
    times: dict[int, list[int]] = {}
    for e in events:
        if isinstance(e, ProduceAcked):
            times.setdefault(e.partition, []).append(e.time_ms)
    return {p: max((b - a for a, b in itertools.pairwise(ts)), default=0) / 1000
            for p, ts in sorted(times.items())}
