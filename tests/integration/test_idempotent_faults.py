"""confluent-kafka's idempotent producer under injected failures writes every message exactly
once and in order: Produce responses lost on the way back (swallowed by a FaultProxy, which then
closes the connection) make the client retry requests the broker already appended, and a broker
stopped mid-stream (SIGTERM, or SIGKILL with flush.messages=1) and restarted on the same data
directory and port makes it retry whatever was in flight; afterwards every partition holds each
message once, in send order, with no gaps, at the offsets its delivery report gave. Each runs
on the local engine and on PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from strom.testing import EmbeddedBroker
from strom.testing.fault_proxy import FaultProxy
from tests.integration.broker_process import serve_process
from tests.integration.conftest import (
    DEADLINE_S,
    Delivered,
    consume_partitions,
    create_topic,
    producer,
    storage_url,
    unique_name,
)

STORAGE_ENGINES = ("file", "postgresql")

PRODUCE_KEY = 0
PARTITIONS = (0, 1, 2)
# Messages the restart test lets the producer have unreported at any moment.
WINDOW = 1000
# How long the broker stays down before it is started again.
DOWN_S = 1.0


@pytest.fixture
def proxy(broker: EmbeddedBroker) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", broker.port) as running:
        yield running


def idempotent_producer(bootstrap: str, **extra: Any) -> Producer:
    return producer(bootstrap, enable_idempotence=True, acks="all", linger_ms=2,
                    batch_num_messages=100, message_timeout_ms=30000,
                    reconnect_backoff_ms=50, reconnect_backoff_max_ms=500, **extra)


def value(n: int) -> bytes:
    return f"seq-{n:08d}".encode()


def sent_by_partition(count: int) -> dict[int, list[bytes]]:
    """Message n goes to partition n % 3; what each partition must hold, in order."""
    return {p: [value(n) for n in range(p, count, len(PARTITIONS))] for p in PARTITIONS}


def send(p: Producer, topic: str, n: int, delivered: Delivered) -> None:
    while True:
        try:
            p.produce(topic, value=value(n), partition=n % len(PARTITIONS),
                      on_delivery=delivered)
            break
        except BufferError:
            p.poll(0.05)
    p.poll(0)


def assert_exactly_once_in_order(bootstrap: str, topic: str, count: int,
                                 delivered: Delivered) -> None:
    """Every delivery succeeded and each partition holds exactly what was sent to it, in send
    order from offset 0 without gaps, each message at the offset its report gave."""
    assert not delivered.failed, [str(err) for err, _ in delivered.failed[:3]]
    assert len(delivered.acked) == count
    messages = consume_partitions(bootstrap, topic, PARTITIONS,
                                  isolation_level="read_uncommitted")
    stored: dict[int, list[tuple[int, bytes]]] = {p: [] for p in PARTITIONS}
    for m in messages:
        stored[m.partition()].append((m.offset(), m.value()))
    expected = sent_by_partition(count)
    for p in PARTITIONS:
        log = stored[p]
        assert [o for o, _ in log] == list(range(len(log))), f"gaps in partition {p}"
        values = [v for _, v in log]
        duplicates = len(values) - len(set(values))
        assert duplicates == 0, f"partition {p} holds {duplicates} duplicates"
        assert values == expected[p], f"partition {p} differs from what was sent"
    reported = sorted((m.partition(), m.offset(), m.value()) for m in delivered.acked)
    assert reported == sorted((p, o, v) for p in PARTITIONS for o, v in stored[p])


def produce_windowed(p: Producer, topic: str, count: int,
                     step: Callable[[int, Delivered], None]) -> Delivered:
    """Produces messages 0..count-1 with at most WINDOW unreported, so that sending spans the
    whole run and faults land mid-stream; calls `step(sent, delivered)` after each turn."""
    delivered = Delivered()
    n = 0
    deadline = time.monotonic() + DEADLINE_S
    while n < count:
        assert time.monotonic() < deadline, f"only {n} of {count} messages sent in time"
        if n - len(delivered.acked) - len(delivered.failed) < WINDOW:
            send(p, topic, n, delivered)
            n += 1
        else:
            p.poll(0.001)
        step(n, delivered)
    while p.flush(0.05) > 0:  # a fault armed late can still hit what is in flight
        assert time.monotonic() < deadline, "the producer did not flush in time"
        step(n, delivered)
    return delivered


def drop_produce_responses(proxy: FaultProxy, count: int, drops: int,
                           close_connection: bool = True) -> Callable[[int, Delivered], None]:
    """A step for produce_windowed: arms one Produce response drop each time another
    count/(2*drops+2) messages were acknowledged, once the previous drop has happened. The
    last one is due halfway: one produce request can carry hundreds of messages, so a drop
    armed near the end may find no response left to drop."""
    armed = 0

    def step(_sent: int, delivered: Delivered) -> None:
        nonlocal armed
        due = count * (armed + 1) // (2 * drops + 2)
        if armed < drops and proxy.pending_drops == 0 and len(delivered.acked) >= due:
            proxy.drop_responses(1, api_key=PRODUCE_KEY, close_connection=close_connection)
            armed += 1

    return step


def test_lost_produce_responses_are_retried_without_duplicates(
        broker: EmbeddedBroker, proxy: FaultProxy) -> None:
    topic = create_topic(broker.bootstrap_servers, unique_name("idem-drop"), len(PARTITIONS))
    count, drops = 9000, 6
    p = idempotent_producer(proxy.bootstrap_servers)
    delivered = produce_windowed(p, topic, count, drop_produce_responses(proxy, count, drops))

    # The faults really happened, on connections the client kept making through the proxy.
    assert proxy.dropped_responses == drops and proxy.pending_drops == 0
    assert proxy.connections_accepted > drops
    brokers = AdminClient({"bootstrap.servers": proxy.bootstrap_servers}).list_topics(
        timeout=10).brokers
    assert [(b.host, b.port) for b in brokers.values()] == [("127.0.0.1", proxy.port)]
    assert_exactly_once_in_order(broker.bootstrap_servers, topic, count, delivered)


def test_severed_connections_mid_stream(broker: EmbeddedBroker, proxy: FaultProxy) -> None:
    """Every connection is reset (as by a network failure) several times while producing."""
    topic = create_topic(broker.bootstrap_servers, unique_name("idem-sever"), len(PARTITIONS))
    count, severs = 6000, 4
    severed: list[int] = []

    def step(_sent: int, delivered: Delivered) -> None:
        if len(severed) < severs and len(delivered.acked) >= count * (len(severed) + 1) // 6:
            severed.append(proxy.sever())

    p = idempotent_producer(proxy.bootstrap_servers)
    delivered = produce_windowed(p, topic, count, step)
    assert len(severed) == severs and all(severed), severed
    assert_exactly_once_in_order(broker.bootstrap_servers, topic, count, delivered)


def test_without_idempotence_the_same_faults_duplicate(
        broker: EmbeddedBroker, proxy: FaultProxy) -> None:
    """The control: the same faults make a producer without idempotence append batches twice,
    so the test above would see it if the broker did not deduplicate the retries."""
    topic = create_topic(broker.bootstrap_servers, unique_name("plain-drop"), len(PARTITIONS))
    count, drops = 3000, 3
    p = producer(proxy.bootstrap_servers, enable_idempotence=False, acks="all", linger_ms=2,
                 batch_num_messages=100, message_timeout_ms=30000, reconnect_backoff_ms=50,
                 reconnect_backoff_max_ms=500)
    delivered = produce_windowed(p, topic, count, drop_produce_responses(proxy, count, drops))
    assert proxy.dropped_responses == drops
    assert not delivered.failed
    stored = consume_partitions(broker.bootstrap_servers, topic, PARTITIONS,
                                isolation_level="read_uncommitted")
    assert len(stored) > count, "no batch was appended twice"
    assert {m.value() for m in stored} == {value(n) for n in range(count)}


def test_lost_responses_on_open_connections_time_out_and_are_retried(
        broker: EmbeddedBroker, proxy: FaultProxy) -> None:
    """The response vanishes but the connection stays up: the client's request times out
    (socket.timeout.ms), the client reconnects and retries."""
    topic = create_topic(broker.bootstrap_servers, unique_name("idem-silent"), len(PARTITIONS))
    count, drops = 3000, 2
    p = idempotent_producer(proxy.bootstrap_servers, socket_timeout_ms=2000)
    delivered = produce_windowed(p, topic, count, drop_produce_responses(
        proxy, count, drops, close_connection=False))
    assert proxy.dropped_responses == drops and proxy.pending_drops == 0
    assert_exactly_once_in_order(broker.bootstrap_servers, topic, count, delivered)


class Restarter:
    """A step for produce_windowed: once a third of the messages are acknowledged, stops the
    broker with messages in flight; DOWN_S later starts it again on the same port."""

    def __init__(self, count: int, stop: Callable[[], None], start: Callable[[], None]) -> None:
        self.count, self._stop, self._start = count, stop, start
        self.stopped_at: float | None = None
        self.in_flight_at_stop = self.acked_at_restart = -1

    def __call__(self, sent: int, delivered: Delivered) -> None:
        if self.in_flight_at_stop < 0 and len(delivered.acked) >= self.count // 3:
            self.in_flight_at_stop = sent - len(delivered.acked) - len(delivered.failed)
            self._stop()
            self.stopped_at = time.monotonic()
        elif self.stopped_at is not None and time.monotonic() - self.stopped_at >= DOWN_S:
            self.acked_at_restart = len(delivered.acked)
            self._start()
            self.stopped_at = None


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL],
                         ids=["sigterm", "sigkill"])
def test_broker_restart_mid_stream(tmp_path: Path, stop_signal: signal.Signals,
                                  storage_engine: str, request: pytest.FixtureRequest) -> None:
    data_dir, log_path = tmp_path / "data", tmp_path / "broker.log"
    storage = storage_url(request, storage_engine) or None
    count = 9000
    with ExitStack() as running:
        procs: list[subprocess.Popen[bytes]] = []

        def start(listen: str) -> str:
            proc, bootstrap = running.enter_context(
                serve_process(data_dir, log_path, "flush.messages=1", listen=listen,
                              storage=storage))
            procs.append(proc)
            return bootstrap

        def stop() -> None:
            procs[-1].send_signal(stop_signal)
            procs[-1].wait(10)

        bootstrap = start("127.0.0.1:0")
        topic = create_topic(bootstrap, unique_name("idem-restart"), len(PARTITIONS))

        def restart() -> None:
            assert start(bootstrap) == bootstrap

        restarter = Restarter(count, stop, restart)
        delivered = produce_windowed(idempotent_producer(bootstrap), topic, count, restarter)

        assert len(procs) == 2, "the broker was not restarted while messages were sent"
        assert restarter.in_flight_at_stop > 0, "nothing was in flight when the broker stopped"
        assert restarter.acked_at_restart < count, "everything was acknowledged before restart"
        assert_exactly_once_in_order(bootstrap, topic, count, delivered)
