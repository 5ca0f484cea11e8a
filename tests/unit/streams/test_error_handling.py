"""Error handling on the test driver: the production exception handler (a sink record that
cannot be serialized), the processing exception handler (a function that raises), their
settings by Kafka's names, the dead-letter queue (KIP-1034: the source record as read, with
headers naming the error and where it was read), and the producer's delivery errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from strom.streams import (
    Consumed,
    Produced,
    Serdes,
    StreamsBuilder,
    StreamsConfig,
    StreamsConfigError,
    StreamsError,
    TopologyTestDriver,
)
from strom.streams.collector import ProducerCollector, ProductionError
from strom.streams.errors import (
    HEADER_EXCEPTION,
    HEADER_MESSAGE,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_STACKTRACE,
    HEADER_TOPIC,
    ErrorHandling,
    continue_production,
    fail_production,
)
from strom.streams.serdes import SerializationError

S, L, B = Serdes.String(), Serdes.Long(), Serdes.Bytes()
DLQ = "dead-letters"


def parse(value: str) -> int:
    return 100 // int(value)  # "0": ZeroDivisionError; "x": ValueError


def topology() -> Any:
    """`in` (strings) -> 100 // int(value) -> `out` as a long; "0" and "x" fail processing,
    and an odd result is passed on as a string, which the long serde cannot write."""
    b = StreamsBuilder()
    (b.stream("in", consumed=Consumed(S, S))
     .map_values(parse)
     .map_values(lambda n: n if n % 2 == 0 else str(n))
     .to("out", Produced(S, L)))
    return b.build()


@contextmanager
def driver(**config: Any) -> Iterator[TopologyTestDriver]:
    with TopologyTestDriver(topology(), {"application.id": "app", **config}) as running:
        yield running


def pipe(d: TopologyTestDriver, *values: str) -> None:
    source = d.create_input_topic("in", S, S)
    for offset, value in enumerate(values):
        source.pipe_input(f"k{offset}", value, 10 + offset)


def out(d: TopologyTestDriver) -> list[Any]:
    return d.create_output_topic("out", S, L).read_values_to_list()


# -- production -------------------------------------------------------------------------------

def test_a_record_that_cannot_be_serialized_fails_by_default() -> None:
    with driver() as d:
        pipe(d, "50")  # 2: written
        with pytest.raises(StreamsError, match=r"cannot write a record to out \(from in-0@2\)"
                           r".*default.production.exception.handler=LogAndContinue") as info:
            pipe(d, "50", "20")  # 5 is odd: written as a string, which the long serde refuses
        assert isinstance(info.value.__cause__, SerializationError)
        assert out(d) == [2, 2]


@pytest.mark.parametrize("setting", [
    {"default.production.exception.handler": "LogAndContinue"},
    {"production.exception.handler": "LogAndContinueProductionExceptionHandler"},
    {"default.production.exception.handler":
     "org.apache.kafka.streams.errors.LogAndContinueProductionExceptionHandler"}])
def test_log_and_continue_skips_records_that_cannot_be_serialized(
        setting: dict[str, str]) -> None:
    with driver(**setting) as d:
        pipe(d, "50", "20", "25")
        assert out(d) == [2, 4]
        assert d.tasks[0].dropped == 1


def test_a_production_handler_function_decides_per_record() -> None:
    calls: list[tuple[str, str, Any, Any]] = []

    def handler(error: Exception, topic: str, key: Any, value: Any) -> bool:
        calls.append((type(error).__name__, topic, key, value))
        return value != "1"

    with driver(**{"default.production.exception.handler": handler}) as d:
        pipe(d, "20", "50")
        assert out(d) == [2]
        with pytest.raises(StreamsError, match="cannot write a record to out"):
            pipe(d, "100")
    assert calls == [("SerializationError", "out", "k0", "5"),
                     ("SerializationError", "out", "k0", "1")]


# -- processing -------------------------------------------------------------------------------

def test_an_exception_in_processing_fails_by_default_naming_the_record() -> None:
    with driver() as d:
        with pytest.raises(StreamsError, match=r"processing the record at in-0@1 failed: "
                           r"ZeroDivisionError.*processing.exception.handler=LogAndContinue"
                           ) as info:
            pipe(d, "50", "0")
        assert isinstance(info.value.__cause__, ZeroDivisionError)
        assert out(d) == [2]


def test_log_and_continue_skips_records_whose_processing_fails() -> None:
    setting = {"processing.exception.handler": "LogAndContinueProcessingExceptionHandler"}
    with driver(**setting) as d:
        pipe(d, "0", "50", "x", "10")
        assert out(d) == [2, 10]
        assert d.tasks[0].dropped == 2


def test_what_a_record_did_before_its_processing_failed_stays_done() -> None:
    b = StreamsBuilder()
    stream = b.stream("in", consumed=Consumed(S, S))
    stream.to("copy", Produced(S, S))  # the first child: gets the record first
    stream.map_values(parse).to("out", Produced(S, L))
    seen: list[tuple[str, int]] = []

    def handler(error: Exception, topic: str, partition: int, offset: int) -> bool:
        seen.append((topic, offset))
        return isinstance(error, ZeroDivisionError)

    with TopologyTestDriver(b.build(), {"application.id": "app",
                                        "processing.exception.handler": handler}) as d:
        pipe(d, "0", "50")
        assert d.create_output_topic("copy", S, S).read_values_to_list() == ["0", "50"]
        assert out(d) == [2]
        with pytest.raises(StreamsError, match="ValueError"):
            pipe(d, "x")
    assert seen == [("in", 0), ("in", 2)]


def test_framework_errors_are_not_processing_errors() -> None:
    # A record that cannot be read is the deserialization handler's, whatever the processing
    # handler says.
    b = StreamsBuilder()
    b.stream("in", consumed=Consumed(S, L)).to("out", Produced(S, L))
    with TopologyTestDriver(b.build(), {"application.id": "app",
                                        "processing.exception.handler": "LogAndContinue"}
                            ) as d, pytest.raises(StreamsError, match="cannot read the record"):
        d.create_input_topic("in", S, S).pipe_input("k", "not a long", 1)


# -- the dead-letter queue --------------------------------------------------------------------

def dead_letters(d: TopologyTestDriver) -> list[tuple[Any, Any, int, dict[str, str]]]:
    return [(r.key, r.value, r.timestamp,
             {k: (v or b"").decode() for k, v in r.headers})
            for r in d.create_output_topic(DLQ, B, B).read_records_to_list()]


def test_failed_records_go_to_the_dead_letter_queue_with_kafkas_headers() -> None:
    config = {"errors.dead.letter.queue.topic.name": DLQ,
              "default.deserialization.exception.handler": "LogAndContinue",
              "processing.exception.handler": "LogAndContinue",
              "default.production.exception.handler": "LogAndContinue"}
    b = StreamsBuilder()
    (b.stream("in", consumed=Consumed(S, L))
     .map_values(lambda n: 100 // n)
     .map_values(lambda n: n if n % 2 == 0 else str(n))
     .to("out", Produced(S, L)))
    with TopologyTestDriver(b.build(), {"application.id": "app", **config}) as d:
        source = d.create_input_topic("in", S, L)
        source.pipe_input("a", 50, 10)
        source.pipe_input("b", 0, 11, headers=[("trace", b"t-1")])  # processing fails
        d.create_input_topic("in", S, S).pipe_input("c", "nope", 12)  # cannot be read
        source.pipe_input("d", 20, 13)  # 5: cannot be written as a long
        source.pipe_input("e", 10, 14)
        assert out(d) == [2, 10]
        rows = dead_letters(d)
    assert [(key, value, timestamp) for key, value, timestamp, _ in rows] == [
        (b"b", (0).to_bytes(8, "big"), 11), (b"c", b"nope", 12),
        (b"d", (20).to_bytes(8, "big"), 13)]
    processing, reading, writing = (headers for *_, headers in rows)
    assert processing["trace"] == "t-1"  # the record's own headers come first, then Kafka's
    assert list(processing) == ["trace", HEADER_EXCEPTION, HEADER_MESSAGE, HEADER_STACKTRACE,
                                HEADER_TOPIC, HEADER_PARTITION, HEADER_OFFSET]
    assert {k: processing[k] for k in (HEADER_EXCEPTION, HEADER_MESSAGE, HEADER_TOPIC,
                                       HEADER_PARTITION, HEADER_OFFSET)} == {
        HEADER_EXCEPTION: "ZeroDivisionError", HEADER_MESSAGE: "integer division or modulo by zero",
        HEADER_TOPIC: "in", HEADER_PARTITION: "0", HEADER_OFFSET: "1"}
    assert processing[HEADER_STACKTRACE].startswith("Traceback (most recent call last):")
    assert processing[HEADER_STACKTRACE].rstrip().endswith(
        "ZeroDivisionError: integer division or modulo by zero")
    assert reading[HEADER_EXCEPTION] == "strom.streams.serdes.SerializationError"
    assert reading[HEADER_MESSAGE] == "in: a long is 8 bytes, not 4"
    assert (reading[HEADER_TOPIC], reading[HEADER_OFFSET]) == ("in", "2")
    assert writing[HEADER_EXCEPTION] == "strom.streams.serdes.SerializationError"
    assert writing[HEADER_MESSAGE] == "out: the long serde got str"
    assert writing[HEADER_OFFSET] == "3"


def test_with_log_and_fail_the_record_goes_to_the_dead_letter_queue_and_processing_stops(
        ) -> None:
    with driver(**{"errors.dead.letter.queue.topic.name": DLQ}) as d:
        with pytest.raises(StreamsError, match="ZeroDivisionError"):
            pipe(d, "0")
        assert [(key, value) for key, value, *_ in dead_letters(d)] == [(b"k0", b"0")]


def test_a_repartitioned_record_goes_to_the_queue_as_read_from_the_repartition_topic() -> None:
    b = StreamsBuilder()
    (b.stream("in", consumed=Consumed(S, S))
     .select_key(lambda k, v: v)
     .group_by_key()
     .reduce(lambda a, v: str(int(a) + int(v)))  # "x" cannot be added
     .to_stream().to("out", Produced(S, S)))
    config = {"application.id": "app", "errors.dead.letter.queue.topic.name": DLQ,
              "processing.exception.handler": "LogAndContinue",
              "default.key.serde": "string", "default.value.serde": "string"}
    with TopologyTestDriver(b.build(), config) as d:
        source = d.create_input_topic("in", S, S)
        source.pipe_input("a", "x", 1)
        source.pipe_input("b", "x", 2)
        assert d.create_output_topic("out", S, S).read_key_values_to_list() == [("x", "x")]
        [(key, value, timestamp, headers)] = dead_letters(d)
    assert (key, value, timestamp) == (b"x", b"x", 2)
    assert headers[HEADER_TOPIC] == "app-KSTREAM-REDUCE-STATE-STORE-0000000002-repartition"
    assert headers[HEADER_EXCEPTION] == "ValueError"


# -- settings ---------------------------------------------------------------------------------

def test_handler_settings_by_kafkas_names() -> None:
    config = StreamsConfig({"production.exception.handler":
                            "org.apache.kafka.streams.errors.DefaultProductionExceptionHandler",
                            "deserialization.exception.handler": "LogAndContinue",
                            "errors.dead.letter.queue.topic.name": DLQ},
                           require_bootstrap=False)
    assert config.error_handling.production is fail_production
    assert config.error_handling.dead_letter_queue == DLQ
    assert config.deserialization_handler(ValueError(), "t", 0, 0) is True
    assert config.client_settings("producer") == {"bootstrap.servers": ""}
    assert StreamsConfig({}, require_bootstrap=False).error_handling == ErrorHandling()
    for name in ("processing.exception.handler", "default.production.exception.handler",
                 "deserialization.exception.handler"):
        with pytest.raises(StreamsConfigError, match=f"{name}=Retry: use LogAndFail"):
            StreamsConfig({name: "Retry"}, require_bootstrap=False)
        with pytest.raises(StreamsConfigError, match=f"{name}: give a function"):
            StreamsConfig({name: 3}, require_bootstrap=False)


# -- delivery errors --------------------------------------------------------------------------

class Message:
    def __init__(self, topic: str) -> None:
        self._topic = topic

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"v"


def collector(transactional: bool = False) -> ProducerCollector:
    errors = ErrorHandling(production=continue_production, dead_letter_queue=DLQ)
    return ProducerCollector({"bootstrap.servers": "127.0.0.1:1"}, errors=errors,
                             transactional_id="t" if transactional else None)


def test_a_record_the_producer_could_not_write_is_skipped_if_the_handler_says_so() -> None:
    calls: list[tuple[Any, ...]] = []

    def handler(error: Exception, topic: str, key: Any, value: Any) -> bool:
        calls.append((type(error), error.args[0].code(), topic, key, value))
        return True

    c = ProducerCollector({"bootstrap.servers": "127.0.0.1:1"},
                          errors=ErrorHandling(production=handler))
    c._delivered(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), Message("out"))
    c.flush(1)  # nothing to raise
    assert calls == [(KafkaException, KafkaError.MSG_SIZE_TOO_LARGE, "out", b"k", b"v")]
    assert c.skipped == 1
    c.close(1)


@pytest.mark.parametrize(("topic", "transactional"), [
    ("app-store-changelog", False), (DLQ, False), ("out", True)])
def test_changelog_and_dead_letter_writes_and_transactions_always_fail(
        topic: str, transactional: bool) -> None:
    c = collector(transactional)
    c._delivered(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), Message(topic))
    with pytest.raises(ProductionError, match="could not be written"):
        c.flush(1)
    assert c.skipped == 0
    c.close(1)
