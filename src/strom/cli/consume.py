"""`strom consume TOPIC`: read records from chosen partitions and offsets, without a group.

The consumer only assign()s partitions: it never subscribes, joins a group or commits, so it
needs no group coordinator and leaves no trace on the cluster.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import click
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from strom.cli.common import (
    UNKNOWN_TOPIC,
    UNREACHABLE,
    ClientOptions,
    CliError,
    admin_client,
    bytes_to_json,
    bytes_to_text,
    check_partitions,
    client_options,
    cluster_metadata,
    describe_error,
    fail,
    make_client,
    topic_partitions,
    warn,
)

GROUP_ID: Final = "strom-cli"
POLL_INTERVAL: Final = 0.5  # seconds; short so that Ctrl-C and --timeout are noticed


# --- where to start -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StartAt:
    """An --offset: beginning, end, an absolute offset, N from the end, or a timestamp."""

    kind: str  # "beginning" | "end" | "absolute" | "tail" | "timestamp"
    value: int = 0

    def within(self, low: int, high: int) -> int:
        """The absolute or tail offset inside a partition's [low, high] watermarks."""
        wanted = high - self.value if self.kind == "tail" else self.value
        return min(max(wanted, low), high)


OFFSET_PATTERN: Final = re.compile(r"(?P<at>@)?(?P<minus>-)?(?P<digits>\d+)")


def parse_offset(ctx: click.Context | None, param: click.Parameter | None,
                 value: str) -> StartAt:
    """The --offset callback: beginning, end, N, -N or @TIMESTAMP_MS."""
    text = value.strip().lower()
    if text in ("beginning", "earliest", "start"):
        return StartAt("beginning")
    if text in ("end", "latest"):
        return StartAt("end")
    match = OFFSET_PATTERN.fullmatch(text)
    if match is None or (match["at"] and match["minus"]):
        raise click.BadParameter(f"{value!r} is not beginning, end, N, -N or @TIMESTAMP_MS",
                                 ctx, param)
    number = int(match["digits"])
    if match["at"]:
        return StartAt("timestamp", number)
    return StartAt("tail" if match["minus"] else "absolute", number)


def start_positions(consumer: Consumer, topic: str, partitions: list[int], start: StartAt,
                    client: ClientOptions) -> list[TopicPartition]:
    if start.kind in ("beginning", "end"):
        offset = OFFSET_BEGINNING if start.kind == "beginning" else OFFSET_END
        return [TopicPartition(topic, p, offset) for p in partitions]
    try:
        if start.kind == "timestamp":
            return by_timestamp(consumer, topic, partitions, start.value, client)
        return [TopicPartition(topic, p, start.within(*consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=client.request_timeout)))
                for p in partitions]
    except KafkaException as exc:
        raise fail(exc, client, topic, "looking up offsets") from None


def by_timestamp(consumer: Consumer, topic: str, partitions: list[int], timestamp: int,
                 client: ClientOptions) -> list[TopicPartition]:
    """The first offset at or after `timestamp` in each partition (its end when none is)."""
    wanted = [TopicPartition(topic, p, timestamp) for p in partitions]
    found = consumer.offsets_for_times(wanted, timeout=client.request_timeout)
    positions = []
    for tp in found:
        if tp.error is not None:
            raise CliError(describe_error(tp.error, client, topic, "looking up offsets"))
        positions.append(TopicPartition(topic, tp.partition,
                                        tp.offset if tp.offset >= 0 else OFFSET_END))
    return positions


# --- output -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Output:
    fmt: str
    print_key: bool
    print_headers: bool
    print_offset: bool
    separator: str

    def render(self, message: Message) -> str:
        if self.fmt == "json":
            return json.dumps(as_json(message), ensure_ascii=False)
        fields = []
        if self.print_offset:
            fields.append(f"{partition_of(message)}:{message.offset()}")
        if self.print_headers:
            fields.append(",".join(f"{k}={bytes_to_text(v)}" for k, v in header_items(message)))
        if self.print_key:
            fields.append(bytes_to_text(message.key()))
        fields.append(bytes_to_text(message.value()))
        return self.separator.join(fields)


def as_json(message: Message) -> dict[str, Any]:
    _, timestamp = message.timestamp()
    return {"topic": message.topic(), "partition": message.partition(),
            "offset": message.offset(), "timestamp": timestamp if timestamp >= 0 else None,
            "key": bytes_to_json(message.key()), "value": bytes_to_json(message.value()),
            "headers": headers_json(header_items(message))}


def partition_of(message: Message) -> int:
    partition = message.partition()
    return -1 if partition is None else partition


def header_items(message: Message) -> list[tuple[str, str | bytes | None]]:
    headers = message.headers()
    if headers is None:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    return list(headers)


def headers_json(headers: list[tuple[str, str | bytes | None]]) -> dict[str, Any]:
    """Headers as an object; a header that repeats has a list of its values."""
    result: dict[str, Any] = {}
    for key, raw in headers:
        value = bytes_to_json(raw)
        if key not in result:
            result[key] = value
        elif isinstance(result[key], list):
            result[key].append(value)
        else:
            result[key] = [result[key], value]
    return result


# --- the loop -----------------------------------------------------------------------------

@dataclass(slots=True)
class Reader:
    """Polls until --count records, --timeout idle seconds, or (--exit-at-end) the end."""

    consumer: Consumer
    topic: str
    partitions: frozenset[int]
    emit: Callable[[Message], None]
    count: int | None
    idle: float | None
    exit_at_end: bool
    client: ClientOptions
    received: int = 0
    at_end: set[int] = field(default_factory=set)
    last_activity: float = field(default_factory=time.monotonic)

    def run(self) -> None:
        while not self.done():
            message = self.consumer.poll(self.poll_timeout())
            if message is None:
                continue
            error = message.error()
            if error is None:
                self.at_end.discard(partition_of(message))
                self.last_activity = time.monotonic()
                self.received += 1
                self.emit(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                self.at_end.add(partition_of(message))
            else:
                self.on_error(error)

    def done(self) -> bool:
        if self.count is not None and self.received >= self.count:
            return True
        if self.exit_at_end and self.at_end >= self.partitions:
            return True
        return self.idle is not None and time.monotonic() - self.last_activity >= self.idle

    def poll_timeout(self) -> float:
        if self.idle is None:
            return POLL_INTERVAL
        left = self.idle - (time.monotonic() - self.last_activity)
        return max(0.0, min(POLL_INTERVAL, left))

    def on_error(self, error: KafkaError) -> None:
        if error.fatal() or error.code() in UNKNOWN_TOPIC:
            raise CliError(describe_error(error, self.client, self.topic, "consuming"))
        if error.code() not in UNREACHABLE:  # the client reconnects by itself
            warn(error.str())


# --- command ------------------------------------------------------------------------------

@click.command()
@click.argument("topic")
@click.option("-p", "--partition", "partitions", multiple=True, type=click.IntRange(min=0),
              help="Read this partition (repeatable) [default: all].")
@click.option("-o", "--offset", "start", callback=parse_offset, default="beginning",
              show_default=True, metavar="OFFSET",
              help="Where to start: beginning, end, N (an offset), -N (N records before the "
                   "end) or @MS (the first record at or after a timestamp in ms).")
@click.option("-c", "--count", type=click.IntRange(min=1), help="Stop after this many records.")
@click.option("-t", "--timeout", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Stop after this long without a record [default: wait forever].")
@click.option("-e", "--exit-at-end", is_flag=True,
              help="Stop when every partition has been read to its end.")
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True,
              help="text: the value per line; json: one object per record, "
                   'bytes that are not UTF-8 as {"base64": "..."}.')
@click.option("--print-key", is_flag=True, help="text: print the key before the value.")
@click.option("--print-headers", is_flag=True, help="text: print headers as k=v,k=v.")
@click.option("--print-offset", is_flag=True, help="text: print PARTITION:OFFSET first.")
@click.option("-K", "--key-separator", "--separator", "separator", default="\t", show_default="tab",
              metavar="SEP",
              help="text: what goes between the printed fields.")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
@client_options
def consume(topic: str, partitions: tuple[int, ...], start: StartAt, count: int | None,
            timeout: float | None, exit_at_end: bool, fmt: str, print_key: bool,
            print_headers: bool, print_offset: bool, separator: str, quiet: bool,
            client: ClientOptions) -> None:
    """Print records of TOPIC (all partitions from the beginning by default)."""
    available = topic_partitions(cluster_metadata(admin_client(client), client), topic)
    check_partitions(topic, available, partitions)
    chosen = sorted(set(partitions)) or available
    output = Output(fmt, print_key, print_headers, print_offset, separator)
    consumer = make_client(Consumer, client.config(**{
        "group.id": GROUP_ID, "enable.auto.commit": False, "enable.auto.offset.store": False,
        "enable.partition.eof": True, "auto.offset.reset": "earliest"}))
    reader = Reader(consumer, topic, frozenset(chosen), lambda m: click.echo(output.render(m)),
                    count, timeout, exit_at_end, client)
    try:
        consumer.assign(start_positions(consumer, topic, chosen, start, client))
        reader.run()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    if not quiet:
        plural = "" if reader.received == 1 else "s"
        click.echo(f"consumed {reader.received} record{plural} from {topic}", err=True)
