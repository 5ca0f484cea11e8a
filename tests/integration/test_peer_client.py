"""The inter-broker client against a real broker: it negotiates versions with ApiVersions
(falling back to the peer's ApiVersions version when ours is refused), reads Metadata,
creates a topic and produces a batch, keeps hundreds of requests in flight on one connection
and matches every answer to its request; WriteTxnMarkers sent through it commits an open
transaction for read_committed consumers, and AddPartitionsToTxn v5 verify_only gets the
coordinator's answers. Every failure is PeerUnavailable: a refused connection at once, a peer
that closes (or stops answering) fails every request in flight, and so does an answer that
does not decode. `Peers` finds brokers through a directory, asks it again for a node it does
not know or after a failure, shares one connection per node and reopens it after a failure."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from strom.broker.peers import Peers
from strom.protocol.client import KafkaConnection, PeerUnavailable, VersionRange
from strom.protocol.framing import peek_header
from strom.protocol.messages import RequestBuilder, ResponseBuilder, encode_response
from strom.protocol.record_builder import build_batch
from strom.storage.api import BrokerRegistration
from strom.testing import EmbeddedBroker
from strom.testing.fault_proxy import FaultProxy
from tests.integration.conftest import consume_partitions, unique_name

PRODUCE, METADATA, API_VERSIONS, CREATE_TOPICS = 0, 3, 18, 19
INIT_PRODUCER_ID, ADD_PARTITIONS_TO_TXN, END_TXN, WRITE_TXN_MARKERS = 22, 24, 26, 27
PEER_ID = "strom-broker-2"

Build = Callable[[RequestBuilder], Any]


async def connect(port: int, client_id: str = PEER_ID, request_timeout_s: float = 10.0,
                  ) -> KafkaConnection:
    return await KafkaConnection.open("127.0.0.1", port, client_id, connect_timeout_s=5,
                                      request_timeout_s=request_timeout_s)


async def send(connection: KafkaConnection, api_key: int, max_version: int, build: Build,
               min_version: int = 0) -> Any:
    version = connection.version_for(api_key, max_version, min_version)
    return await connection.request(build(RequestBuilder(api_key, version)))


def metadata(names: Sequence[str] | None) -> Build:
    return lambda b: b.make(
        "MetadataRequest", allow_auto_topic_creation=False,
        include_topic_authorized_operations=False, include_cluster_authorized_operations=False,
        topics=None if names is None else tuple(
            b.make("MetadataRequestTopic", name=n, topic_id=None) for n in names))


def produce(topic: str, partition: int, records: bytes,
            transactional_id: str | None = None) -> Build:
    return lambda b: b.make(
        "ProduceRequest", transactional_id=transactional_id, acks=-1,
        timeout=timedelta(seconds=10), topic_data=(b.make(
            "TopicProduceData", name=topic, partition_data=(b.make(
                "PartitionProduceData", index=partition, records=records),)),))


def batch(values: Sequence[bytes], **producer: Any) -> bytes:
    now = int(time.time() * 1000)
    return build_batch([(None, v, [], now) for v in values], **producer)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_api_versions_and_metadata(broker: EmbeddedBroker) -> None:
    async def main() -> None:
        connection = await connect(broker.port)
        try:
            assert connection.api_versions[WRITE_TXN_MARKERS] == VersionRange(1, 2)
            assert connection.api_versions[ADD_PARTITIONS_TO_TXN] == VersionRange(0, 5)
            assert connection.version_for(ADD_PARTITIONS_TO_TXN, 5, 4) == 5
            served = connection.api_versions[METADATA].max_version
            assert connection.version_for(METADATA, 99) == served
            assert connection.version_for(METADATA, 9) == 9
            answer = await send(connection, METADATA, 99, metadata(None))
            assert [(b.node_id, b.host, b.port) for b in answer.brokers] == [
                (1, "127.0.0.1", broker.port)]
            assert answer.cluster_id == broker.server.engine.cluster_id()
        finally:
            await connection.close()

    asyncio.run(main())


def test_create_a_topic_and_produce_a_batch(broker: EmbeddedBroker) -> None:
    topic = unique_name("peer-produce")

    async def main() -> None:
        connection = await connect(broker.port)
        try:
            created = await send(connection, CREATE_TOPICS, 7, lambda b: b.make(
                "CreateTopicsRequest", timeout=timedelta(seconds=10), validate_only=False,
                topics=(b.make("CreatableTopic", name=topic, num_partitions=2,
                               replication_factor=1, assignments=(), configs=()),)))
            assert [(t.name, t.error_code) for t in created.topics] == [(topic, ErrorCode.none)]
            for expected in (0, 3):
                answer = await send(connection, PRODUCE, 12, produce(
                    topic, 1, batch([b"a", b"b", b"c"])))
                (part,) = answer.responses[0].partition_responses
                assert (part.index, part.error_code, part.base_offset) == (
                    1, ErrorCode.none, expected)
        finally:
            await connection.close()

    asyncio.run(main())
    got = consume_partitions(broker.bootstrap_servers, topic, (1,))
    assert [m.value() for m in got] == [b"a", b"b", b"c"] * 2


def test_many_requests_in_flight_on_one_connection(broker: EmbeddedBroker) -> None:
    """More requests than IN_FLIGHT_MAX, of different APIs and versions, at once: each gets
    its own answer (a Metadata answer names the one topic its request asked about)."""

    async def main() -> None:
        connection = await connect(broker.port)
        try:
            names = [unique_name("absent") for _ in range(250)]

            async def one(i: int) -> None:
                if i % 5 == 4:
                    versions = await send(connection, API_VERSIONS, 3, lambda b: b.make(
                        "ApiVersionsRequest", client_software_name="strom",
                        client_software_version="1"))
                    assert versions.error_code == ErrorCode.none
                    return
                version = 4 + i % 9  # v4+: no auto-creation
                answer = await send(connection, METADATA, version, metadata([names[i]]))
                assert type(answer).__version__ == version
                assert [(t.name, t.error_code) for t in answer.topics] == [
                    (names[i], ErrorCode.unknown_topic_or_partition)]

            await asyncio.gather(*(one(i) for i in range(len(names))))
            assert not connection.closed
        finally:
            await connection.close()

    asyncio.run(main())


# -- transactions ------------------------------------------------------------------------------

async def begin(connection: KafkaConnection, transactional_id: str,
                partitions: dict[str, list[int]]) -> tuple[int, int]:
    init = await send(connection, INIT_PRODUCER_ID, 4, lambda b: b.make(
        "InitProducerIdRequest", transactional_id=transactional_id,
        transaction_timeout=timedelta(minutes=1), producer_id=-1, producer_epoch=-1))
    assert init.error_code == ErrorCode.none, init
    pid, epoch = int(init.producer_id), int(init.producer_epoch)
    added = await send(connection, ADD_PARTITIONS_TO_TXN, 3, lambda b: b.make(
        "AddPartitionsToTxnRequest", v3_and_below_transactional_id=transactional_id,
        v3_and_below_producer_id=pid, v3_and_below_producer_epoch=epoch,
        v3_and_below_topics=tuple(b.make("AddPartitionsToTxnTopic", name=t, partitions=tuple(ps))
                                  for t, ps in partitions.items())))
    errors = {p.partition_error_code for t in added.results_by_topic_v3_and_below
              for p in t.results_by_partition}
    assert errors == {ErrorCode.none}, added
    return pid, epoch


def markers(pid: int, epoch: int, commit: bool, topic: str, partition: int) -> Build:
    return lambda b: b.make("WriteTxnMarkersRequest", markers=(b.make(
        "WritableTxnMarker", producer_id=pid, producer_epoch=epoch, transaction_result=commit,
        coordinator_epoch=0, topics=(b.make("WritableTxnMarkerTopic", name=topic,
                                            partition_indexes=(partition,)),)),))


def verify(transactional_id: str, pid: int, epoch: int, topic: str,
           partitions: Sequence[int]) -> Build:
    return lambda b: b.make("AddPartitionsToTxnRequest", transactions=(b.make(
        "AddPartitionsToTxnTransaction", transactional_id=transactional_id, producer_id=pid,
        producer_epoch=epoch, verify_only=True,
        topics=(b.make("AddPartitionsToTxnTopic", name=topic, partitions=tuple(partitions)),)),))


def verified(answer: Any) -> dict[int, int]:
    assert answer.error_code == ErrorCode.none
    return {int(p.partition_index): int(p.partition_error_code)
            for r in answer.results_by_transaction for t in r.topic_results
            for p in t.results_by_partition}


def read_committed(broker: EmbeddedBroker, topic: str) -> list[bytes | None]:
    return [m.value() for m in consume_partitions(broker.bootstrap_servers, topic, (0,),
                                                  isolation_level="read_committed")]


def test_a_commit_marker_sent_through_the_client(broker: EmbeddedBroker,
                                                  topic: str) -> None:
    """An open transaction's records are invisible to read_committed consumers until the
    COMMIT marker a peer coordinator sends arrives."""
    transactional_id = unique_name("peer-txn")

    async def open_transaction(connection: KafkaConnection) -> tuple[int, int]:
        pid, epoch = await begin(connection, transactional_id, {topic: [0]})
        answer = await send(connection, PRODUCE, 12, produce(
            topic, 0, batch([b"x", b"y"], producer_id=pid, producer_epoch=epoch,
                            base_sequence=0, transactional=True), transactional_id))
        assert answer.responses[0].partition_responses[0].error_code == ErrorCode.none
        return pid, epoch

    async def commit(connection: KafkaConnection, pid: int, epoch: int) -> None:
        answer = await send(connection, WRITE_TXN_MARKERS, 2, markers(pid, epoch, True,
                                                                       topic, 0))
        errors = [p.error_code for m in answer.markers for t in m.topics for p in t.partitions]
        assert errors == [ErrorCode.none]

    async def end(connection: KafkaConnection, pid: int, epoch: int) -> None:
        ended = await send(connection, END_TXN, 4, lambda b: b.make(
            "EndTxnRequest", transactional_id=transactional_id, producer_id=pid,
            producer_epoch=epoch, committed=True))
        assert ended.error_code == ErrorCode.none

    async def main(step: Callable[[KafkaConnection], Any]) -> Any:
        connection = await connect(broker.port)
        try:
            return await step(connection)
        finally:
            await connection.close()

    pid, epoch = asyncio.run(main(open_transaction))
    assert read_committed(broker, topic) == []
    asyncio.run(main(lambda c: commit(c, pid, epoch)))
    assert read_committed(broker, topic) == [b"x", b"y"]
    asyncio.run(main(lambda c: end(c, pid, epoch)))  # the coordinator's own COMMIT: no change
    assert read_committed(broker, topic) == [b"x", b"y"]


def test_verify_only_against_the_broker(broker: EmbeddedBroker,
                                        new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=2)
    transactional_id = unique_name("peer-verify")

    async def main() -> None:
        connection = await connect(broker.port)
        try:
            pid, epoch = await begin(connection, transactional_id, {topic: [0]})

            async def check(tid: str, producer_epoch: int) -> dict[int, int]:
                answer = await send(connection, ADD_PARTITIONS_TO_TXN, 5, verify(
                    tid, pid, producer_epoch, topic, (0, 1)), min_version=4)
                return verified(answer)

            assert await check(transactional_id, epoch) == {
                0: ErrorCode.none, 1: ErrorCode.invalid_txn_state}
            assert await check(transactional_id, epoch) == {  # verifying added nothing
                0: ErrorCode.none, 1: ErrorCode.invalid_txn_state}
            assert await check(transactional_id, epoch + 1) == {
                0: ErrorCode.producer_fenced, 1: ErrorCode.producer_fenced}
            assert await check(unique_name("unknown"), epoch) == {
                0: ErrorCode.invalid_producer_id_mapping,
                1: ErrorCode.invalid_producer_id_mapping}
        finally:
            await connection.close()

    asyncio.run(main())


# -- failures ----------------------------------------------------------------------------------

def test_connection_refused_fails_fast() -> None:
    port = free_port()

    async def main() -> None:
        started = time.monotonic()
        with pytest.raises(PeerUnavailable, match=f"127.0.0.1:{port}: cannot connect"):
            await connect(port)
        assert time.monotonic() - started < 2

    asyncio.run(main())


def test_a_peer_closing_fails_every_request_in_flight(broker: EmbeddedBroker) -> None:
    with FaultProxy("127.0.0.1", broker.port) as proxy:
        async def main() -> None:
            connection = await connect(proxy.port)
            try:
                proxy.pause()
                requests = [asyncio.ensure_future(send(connection, METADATA, 12, metadata(None)))
                            for _ in range(5)]
                await asyncio.sleep(0.2)
                assert not any(r.done() for r in requests)
                assert proxy.sever() == 1
                results = await asyncio.gather(*requests, return_exceptions=True)
                assert all(isinstance(r, PeerUnavailable) for r in results), results
                assert "127.0.0.1" in str(results[0])
                assert connection.closed
                with pytest.raises(PeerUnavailable):
                    await send(connection, METADATA, 12, metadata(None))
            finally:
                await connection.close()
                proxy.resume()

        asyncio.run(main())


def test_a_request_not_answered_in_time_fails_the_connection(broker: EmbeddedBroker) -> None:
    with FaultProxy("127.0.0.1", broker.port) as proxy:
        async def main() -> None:
            connection = await connect(proxy.port, request_timeout_s=30)
            try:
                proxy.pause()
                waiting = asyncio.ensure_future(send(connection, METADATA, 12, metadata(None)))
                await asyncio.sleep(0.05)
                started = time.monotonic()
                with pytest.raises(PeerUnavailable, match="no answer to metadata v12 within"):
                    await connection.request(RequestBuilder(METADATA, 12).make(
                        "MetadataRequest", topics=None, allow_auto_topic_creation=False,
                        include_topic_authorized_operations=False), timeout_s=0.3)
                assert time.monotonic() - started < 2
                with pytest.raises(PeerUnavailable, match="no answer"):
                    await waiting  # failed with the connection, long before its own timeout
                assert connection.closed
            finally:
                await connection.close()
                proxy.resume()

        asyncio.run(main())


class FakePeer:
    """A server speaking just enough Kafka: `answer(api_key, version, correlation_id)` gives
    the bytes to send back (None: nothing)."""

    def __init__(self, answer: Callable[[int, int, int], bytes | None]) -> None:
        self.answer = answer
        self.requests: list[tuple[int, int]] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(4), "big")
                api_key, version, correlation_id = peek_header(await reader.readexactly(size))
                self.requests.append((api_key, version))
                response = self.answer(api_key, version, correlation_id)
                if response is not None:
                    writer.write(response)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def api_versions_answer(version: int, correlation_id: int, error: ErrorCode,
                        keys: dict[int, tuple[int, int]]) -> bytes:
    b = ResponseBuilder(API_VERSIONS, version)
    return encode_response(API_VERSIONS, version, correlation_id, b.make(
        "ApiVersionsResponse", error_code=error, throttle_time=timedelta(0), api_keys=tuple(
            b.make("ApiVersion", api_key=k, min_version=lo, max_version=hi)
            for k, (lo, hi) in keys.items())))


def test_api_versions_falls_back_to_the_version_the_peer_serves() -> None:
    def answer(api_key: int, version: int, correlation_id: int) -> bytes:
        if version > 2:  # KIP-511: refuse in v0, listing what is served
            return api_versions_answer(0, correlation_id, ErrorCode.unsupported_version,
                                       {API_VERSIONS: (0, 2)})
        return api_versions_answer(version, correlation_id, ErrorCode.none,
                                   {API_VERSIONS: (0, 2), WRITE_TXN_MARKERS: (1, 1)})

    async def main() -> None:
        peer = FakePeer(answer)
        async with peer as port:
            connection = await connect(port)
            try:
                assert peer.requests == [(API_VERSIONS, 4), (API_VERSIONS, 2)]
                assert connection.version_for(WRITE_TXN_MARKERS, 2) == 1
            finally:
                await connection.close()

    asyncio.run(main())


@pytest.mark.parametrize("bad,reason", [
    (lambda cid: encode_response(METADATA, 12, cid, ResponseBuilder(API_VERSIONS, 0).make(
        "ApiVersionsResponse", error_code=ErrorCode.none, api_keys=()))[:-1] + b"\xff",
     "unreadable answer"),
    (lambda cid: encode_response(API_VERSIONS, 0, cid + 1000, ResponseBuilder(
        API_VERSIONS, 0).make("ApiVersionsResponse", error_code=ErrorCode.none, api_keys=())),
     "not in flight"),
    (lambda cid: b"\x7f\xff\xff\xff", "unreadable answer: an answer of"),
])
def test_an_answer_that_does_not_decode_fails_every_request(bad: Callable[[int], bytes],
                                                            reason: str) -> None:
    answered: list[int] = []

    def answer(api_key: int, version: int, correlation_id: int) -> bytes | None:
        if api_key == API_VERSIONS:
            return api_versions_answer(version, correlation_id, ErrorCode.none,
                                       {API_VERSIONS: (0, 4), METADATA: (0, 12)})
        answered.append(correlation_id)
        return bad(correlation_id) if len(answered) == 3 else None

    async def main() -> None:
        async with FakePeer(answer) as port:
            connection = await connect(port, request_timeout_s=60)
            try:
                # All three fail at the bad answer, the one it answers too (until it was
                # decoded while still in flight, that one waited for its request timeout).
                async with asyncio.timeout(10):
                    results = await asyncio.gather(
                        *(send(connection, METADATA, 12, metadata(None)) for _ in range(3)),
                        return_exceptions=True)
                assert all(isinstance(r, PeerUnavailable) for r in results), results
                assert all(reason in str(r) for r in results), results
                assert connection.closed
            finally:
                await connection.close()

    asyncio.run(main())


# -- Peers -------------------------------------------------------------------------------------

class Directory:
    """A fake broker directory: node id -> (host, port); counts the lookups."""

    def __init__(self, table: dict[int, tuple[str, int]]) -> None:
        self.table = table
        self.lookups = 0

    async def brokers(self) -> Sequence[BrokerRegistration]:
        self.lookups += 1
        return [BrokerRegistration(n, h, p) for n, (h, p) in self.table.items()]


def peers_of(directory: Directory) -> Peers:
    return Peers(directory, 1, connect_timeout_s=5, request_timeout_s=10)


def test_peers_by_node_id(broker: EmbeddedBroker) -> None:
    directory = Directory({7: ("127.0.0.1", broker.port), 8: ("127.0.0.1", free_port())})

    async def main() -> None:
        peers = peers_of(directory)
        try:
            answer = await peers.send(7, METADATA, metadata(None), 12)
            assert type(answer).__version__ == 12 and answer.brokers[0].port == broker.port
            started = time.monotonic()
            with pytest.raises(PeerUnavailable, match=r"node 8 \(127.0.0.1:\d+\): cannot"):
                await peers.send(8, METADATA, metadata(None), 12)
            assert time.monotonic() - started < 2
            with pytest.raises(PeerUnavailable, match="node 9 is not a live broker"):
                await peers.send(9, METADATA, metadata(None), 12)
            with pytest.raises(PeerUnavailable, match="serves add_partitions_to_txn v0-5"):
                await peers.send(7, ADD_PARTITIONS_TO_TXN, verify("t", 1, 0, "t", (0,)),
                                 max_version=9, min_version=6)
        finally:
            await peers.close()
        with pytest.raises(PeerUnavailable, match="stopping"):
            await peers.send(7, METADATA, metadata(None), 12)

    asyncio.run(main())


def test_peers_ask_the_directory_again_for_an_unknown_node(broker: EmbeddedBroker) -> None:
    directory = Directory({})

    async def main() -> None:
        peers = peers_of(directory)
        try:
            with pytest.raises(PeerUnavailable, match="node 7 is not a live broker"):
                await peers.send(7, METADATA, metadata(None), 12)
            directory.table[7] = ("127.0.0.1", broker.port)  # node 7 joined
            await peers.send(7, METADATA, metadata(None), 12)
            await peers.send(7, METADATA, metadata(None), 12)
            assert directory.lookups == 2  # known now: not asked again
        finally:
            await peers.close()

    asyncio.run(main())


def test_peers_share_a_connection_and_reopen_it_after_a_failure(broker: EmbeddedBroker) -> None:
    with FaultProxy("127.0.0.1", broker.port) as proxy:
        directory = Directory({7: ("127.0.0.1", proxy.port)})

        async def main() -> None:
            peers = peers_of(directory)
            try:
                await asyncio.gather(*(peers.send(7, METADATA, metadata(None), 12)
                                       for _ in range(20)))
                assert (proxy.connections_accepted, directory.lookups) == (1, 1)
                first = await peers.connection(7)
                proxy.sever()
                while not first.closed:
                    await asyncio.sleep(0.01)
                await peers.send(7, METADATA, metadata(None), 12)  # reopened
                assert (proxy.connections_accepted, directory.lookups) == (2, 2)
                assert await peers.connection(7) is not first
            finally:
                await peers.close()

        asyncio.run(main())


def test_closing_peers_fails_a_send_still_connecting() -> None:
    async def main() -> None:
        async with FakePeer(lambda api_key, version, correlation_id: None) as port:
            peers = peers_of(Directory({7: ("127.0.0.1", port)}))
            sending = asyncio.ensure_future(peers.send(7, METADATA, metadata(None), 12))
            await asyncio.sleep(0.2)  # connected, waiting for the ApiVersions answer
            assert not sending.done()
            await peers.close()
            with pytest.raises(PeerUnavailable, match="node 7: this broker is stopping"):
                await sending

    asyncio.run(main())
