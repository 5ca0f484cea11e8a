"""`strom produce TOPIC`: send records from --value options or stdin lines."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

import click
from confluent_kafka import KafkaError, Message, Producer

from strom.cli.common import (
    ClientOptions,
    CliError,
    Progress,
    admin_client,
    check_partitions,
    client_options,
    cluster_metadata,
    describe_error,
    json_to_bytes,
    make_client,
    parse_pairs,
    topic_partitions,
)

JSON_FIELDS: Final = frozenset({"key", "value", "headers", "partition", "timestamp"})
# Fields of `strom consume --format json` output, accepted and ignored so its output replays.
IGNORED_FIELDS: Final = frozenset({"topic", "offset", "timestamp_type"})

Headers = list[tuple[str, bytes | None]]


class InputError(ValueError):
    """A line of input that is not a record."""


@dataclass(slots=True)
class Record:
    value: bytes | None
    key: bytes | None = None
    headers: Headers = field(default_factory=list)
    partition: int | None = None
    timestamp: int | None = None


# --- parsing ------------------------------------------------------------------------------

def parse_text(line: str, key_separator: str | None) -> Record:
    if key_separator is None:
        return Record(line.encode("utf-8"))
    key, sep, value = line.partition(key_separator)
    if not sep:
        raise InputError(f"no key separator {key_separator!r} in {shorten(line)!r}")
    return Record(value.encode("utf-8"), key.encode("utf-8"))


def parse_json(line: str) -> Record:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise InputError('expected a JSON object like {"key": "k", "value": "v"}')
    unknown = set(obj) - JSON_FIELDS - IGNORED_FIELDS
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(sorted(unknown))}; expected "
                         f"{', '.join(sorted(JSON_FIELDS))}")
    try:
        return Record(value=json_to_bytes(obj.get("value"), "value"),
                      key=json_to_bytes(obj.get("key"), "key"),
                      headers=parse_json_headers(obj.get("headers")),
                      partition=optional_int(obj, "partition"),
                      timestamp=optional_int(obj, "timestamp"))
    except ValueError as exc:
        raise InputError(str(exc)) from None


def parse_json_headers(headers: Any) -> Headers:
    """{"k": v} where v may be a list of values (a repeated header), or [["k", v], ...]."""
    if headers is None:
        return []
    if isinstance(headers, dict):
        pairs = [(k, item) for k, v in headers.items()
                 for item in (v if isinstance(v, list) else [v])]
    elif isinstance(headers, list) and all(isinstance(p, list) and len(p) == 2
                                           for p in headers):
        pairs = [(p[0], p[1]) for p in headers]
    else:
        raise ValueError("headers: expected an object or a list of [key, value] pairs")
    if not all(isinstance(k, str) for k, _ in pairs):
        raise ValueError("headers: keys must be strings")
    return [(k, json_to_bytes(v, f"header {k}")) for k, v in pairs]


def optional_int(obj: Mapping[str, Any], name: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return value


def shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True, slots=True)
class Parser:
    fmt: str
    key_separator: str | None
    headers: Headers
    partition: int | None

    def __call__(self, line: str) -> Record:
        json_line = self.fmt == "json"
        record = parse_json(line) if json_line else parse_text(line, self.key_separator)
        record.headers = self.headers + record.headers
        if record.partition is None:
            record.partition = self.partition
        return record


def read_records(lines: Iterable[str], parse: Parser) -> Iterator[tuple[int, Record]]:
    for number, line in enumerate(lines, 1):
        line = line.removesuffix("\n").removesuffix("\r")
        if parse.fmt == "json" and not line.strip():
            continue
        try:
            yield number, parse(line)
        except InputError as exc:
            raise InputError(f"record {number}: {exc}") from None


# --- delivery -----------------------------------------------------------------------------

@dataclass(slots=True)
class Span:
    """The records delivered to one partition."""

    count: int = 0
    first: int | None = None
    last: int | None = None

    def add(self, offset: int | None) -> None:
        self.count += 1
        if offset is None or offset < 0:  # acks=0: the broker reports no offset
            return
        self.first = offset if self.first is None else min(self.first, offset)
        self.last = offset if self.last is None else max(self.last, offset)

    def describe(self, partition: int) -> str:
        if self.first is None:
            return f"partition {partition}: {self.count} (offsets not reported)"
        if self.first == self.last:
            return f"partition {partition}: offset {self.first}"
        return f"partition {partition}: offsets {self.first}-{self.last}"


@dataclass(slots=True)
class Deliveries:
    """What the producer reported: offsets per partition and errors."""

    sent: int = 0
    delivered: int = 0
    partitions: dict[int, Span] = field(default_factory=dict)
    errors: list[KafkaError] = field(default_factory=list)

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.errors.append(error)
            return
        self.delivered += 1
        partition = message.partition()
        self.partitions.setdefault(-1 if partition is None else partition,
                                   Span()).add(message.offset())

    def summary(self, topic: str) -> str:
        parts = [span.describe(p) for p, span in sorted(self.partitions.items())]
        plural = "" if self.delivered == 1 else "s"
        where = f" ({'; '.join(parts)})" if parts else ""
        return f"produced {self.delivered} record{plural} to {topic}{where}"


def send(producer: Producer, topic: str, record: Record, deliveries: Deliveries) -> None:
    kwargs: dict[str, Any] = {"value": record.value, "key": record.key,
                              "on_delivery": deliveries}
    if record.headers:
        kwargs["headers"] = record.headers
    if record.partition is not None:
        kwargs["partition"] = record.partition
    if record.timestamp is not None:
        kwargs["timestamp"] = record.timestamp
    while True:
        try:
            producer.produce(topic, **kwargs)
            break
        except BufferError:  # the local queue is full: let deliveries drain it
            producer.poll(0.1)
    deliveries.sent += 1
    producer.poll(0)


def produce_all(producer: Producer, topic: str, records: Iterable[tuple[int, Record]],
                partitions: list[int], deliveries: Deliveries) -> None:
    for number, record in records:
        if record.partition is not None and record.partition not in partitions:
            raise InputError(f"record {number}: topic {topic} has no partition "
                             f"{record.partition}")
        send(producer, topic, record, deliveries)


# --- command ------------------------------------------------------------------------------

@click.command()
@click.argument("topic")
@click.option("-p", "--partition", type=click.IntRange(min=0),
              help="Send to this partition [default: by key hash, or spread when keyless].")
@click.option("-K", "--key-separator", metavar="SEP",
              help="Text input lines are KEY<SEP>VALUE.")
@click.option("-H", "--header", "headers", multiple=True, metavar="KEY=VALUE",
              help="A header for every record (repeatable).")
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True,
              help='json: each line is {"key", "value", "headers", "partition", "timestamp"}; '
                   'bytes as {"base64": "..."}.')
@click.option("--acks", type=click.Choice(["0", "1", "all"]), default="all", show_default=True)
@click.option("-z", "--compression", type=click.Choice(["none", "gzip", "snappy", "lz4", "zstd"]),
              default="none", show_default=True)
@click.option("--value", "values", multiple=True, metavar="VALUE",
              help="A record, parsed like a line of input (repeatable); stdin is not read.")
@click.option("-F", "--file", "path", type=click.Path(exists=True, dir_okay=False),
              help="Read the records from this file, one per line, instead of stdin "
                   "(a progress bar on a terminal).")
@client_options
def produce(topic: str, partition: int | None, key_separator: str | None,
            headers: tuple[str, ...], fmt: str, acks: str, compression: str,
            values: tuple[str, ...], path: str | None, client: ClientOptions) -> None:
    """Send records to TOPIC, one per --value or per line of --file or stdin.

    Reading a file (--file, or stdin redirected from one) shows a progress bar on stderr
    when stderr is a terminal."""
    if key_separator == "":
        raise click.BadParameter("must not be empty", param_hint="--key-separator")
    header_pairs: Headers = [(k, v.encode("utf-8"))
                             for k, v in parse_pairs(headers, "--header").items()]
    partitions = topic_partitions(cluster_metadata(admin_client(client), client), topic)
    check_partitions(topic, partitions, [] if partition is None else [partition])
    if values and path is not None:
        raise click.UsageError("pass --value or --file, not both")
    parse = Parser(fmt, key_separator, header_pairs, partition)
    stream = None if values else (
        open(path, encoding="utf-8") if path is not None else stdin_lines())  # noqa: SIM115
    producer = make_client(Producer, client.config(**{
        "acks": acks, "compression.type": compression, "message.timeout.ms": 30_000}))
    deliveries = Deliveries()
    stopped: str | None = None
    try:
        with Progress(f"producing to {topic}", file_size(stream),
                      enabled=shows_progress(stream)) as progress:
            lines: Iterable[str] = values if stream is None else counted(stream, progress)
            produce_all(producer, topic, read_records(lines, parse), partitions, deliveries)
    except InputError as exc:
        stopped = f"{exc} (stopped there)"
    except KeyboardInterrupt:
        stopped = "interrupted"
    finally:
        producer.flush()
        if stream is not None and path is not None:
            stream.close()
    report(topic, deliveries, stopped, client)


def file_size(stream: TextIO | None) -> int | None:
    """The size in bytes of a regular file being read (the progress bar's total); None for
    --value records, a pipe or a terminal."""
    if stream is None:
        return None
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # e.g. a test runner's in-memory stdin
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def shows_progress(stream: TextIO | None) -> bool:
    """A bar only for input that is not typed (a file or a pipe) and on a terminal's stderr."""
    return stream is not None and not stream.isatty() and sys.stderr.isatty()


def counted(lines: Iterable[str], progress: Progress) -> Iterator[str]:
    """The lines, advancing the progress bar by each line's size in bytes."""
    for line in lines:
        yield line
        progress.advance(len(line.encode("utf-8", errors="replace")))


def stdin_lines() -> TextIO:
    stream = sys.stdin
    if stream.isatty():
        click.echo("reading records from stdin, one per line (Ctrl-D to finish)", err=True)
    return stream


def report(topic: str, deliveries: Deliveries, stopped: str | None,
           client: ClientOptions) -> None:
    click.echo(deliveries.summary(topic), err=True)
    problems = []
    if deliveries.errors:
        first = describe_error(deliveries.errors[0], client, topic, "delivery")
        problems.append(f"{len(deliveries.errors)} of {deliveries.sent} records were not "
                        f"delivered: {first}")
    undelivered = deliveries.sent - deliveries.delivered - len(deliveries.errors)
    if undelivered > 0:
        problems.append(f"{undelivered} records were not confirmed before exit")
    if stopped is not None:
        problems.append(stopped)
    if problems:
        raise CliError("; ".join(problems))
