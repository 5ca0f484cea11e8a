"""What the client commands share: connection options, client construction, error messages.

The client commands are ordinary Kafka clients (confluent-kafka) and work against any cluster;
they never import the broker's internals.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import click
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata
from rich.console import Console
from rich.table import Table
from rich.text import Text

DEFAULT_BOOTSTRAP: Final = "localhost:9092"
BOOTSTRAP_ENV: Final = "STROM_BOOTSTRAP"
BASE64_MARKER: Final = "base64"

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A failure explained to the user (exit status 1)."""


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Where the cluster is and how to talk to it."""

    bootstrap: str = DEFAULT_BOOTSTRAP
    settings: Mapping[str, str] = field(default_factory=dict)
    request_timeout: float = 5.0
    verbose: bool = False

    @property
    def timeout_ms(self) -> int:
        return max(1, int(self.request_timeout * 1000))

    def config(self, **defaults: Any) -> dict[str, Any]:
        """A librdkafka configuration: ours, then the caller's defaults, then --command-config."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "socket.connection.setup.timeout.ms": max(1000, self.timeout_ms),
            "logger": client_logger(self.verbose),
        }
        conf.update(defaults)
        conf.update(self.settings)
        return conf


def client_logger(verbose: bool) -> logging.Logger:
    """librdkafka's log lines go here: to stderr with --verbose, nowhere otherwise."""
    logger = logging.getLogger("strom.cli.client")
    logger.propagate = False
    logger.handlers.clear()
    if verbose:
        handler: logging.Handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.setLevel(logging.DEBUG)
    else:
        handler = logging.NullHandler()
    logger.addHandler(handler)
    return logger


def parse_pairs(items: Iterable[str], option: str) -> dict[str, str]:
    """`k=v` items (e.g. of --config) into a dict; the value may contain `=`."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        pairs[key.strip()] = value
    return pairs


def client_options(func: F) -> F:
    """Adds -b/--bootstrap-server, -X/--command-config, --request-timeout and --verbose;
    the command receives them as one `client: ClientOptions` argument."""

    @functools.wraps(func)
    def wrapper(*args: Any, bootstrap_server: str, command_config: tuple[str, ...],
                request_timeout: float, verbose: bool, **kwargs: Any) -> Any:
        settings = parse_pairs(command_config, "--command-config")
        kwargs["client"] = ClientOptions(bootstrap_server, settings, request_timeout, verbose)
        return func(*args, **kwargs)

    options = (
        click.option("-b", "--bootstrap-server", default=DEFAULT_BOOTSTRAP, show_default=True,
                     envvar=BOOTSTRAP_ENV, show_envvar=True, metavar="HOST:PORT[,...]",
                     help="Brokers to bootstrap from."),
        click.option("-X", "--command-config", multiple=True, metavar="KEY=VALUE",
                     help="A librdkafka client setting, e.g. -X security.protocol=SSL "
                          "(repeatable)."),
        click.option("--request-timeout", type=click.FloatRange(min=0.1), default=5.0,
                     show_default=True, metavar="SECONDS",
                     help="How long to wait for the cluster to answer a request."),
        click.option("-v", "--verbose", is_flag=True, help="Show the client library's log."),
    )
    decorated: Any = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


# --- errors -------------------------------------------------------------------------------

UNREACHABLE: Final = frozenset({
    KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT,
    KafkaError._RESOLVE, KafkaError._TIMED_OUT_QUEUE, KafkaError._MSG_TIMED_OUT,
})
UNKNOWN_TOPIC: Final = frozenset({
    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_ID,
})


def unreachable_message(client: ClientOptions) -> str:
    return (f"cannot reach a broker at {client.bootstrap} within {client.request_timeout:g}s "
            "(is `strom serve` running? pass its address with -b HOST:PORT)")


def unknown_topic_message(topic: str) -> str:
    return f"topic {topic} does not exist (create it with `strom topic create {topic}`)"


def kafka_error(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def describe_error(error: KafkaError | None, client: ClientOptions, topic: str | None = None,
                   action: str = "the request") -> str:
    """A message that says what went wrong and, where we can tell, what to do about it."""
    if error is None:
        return f"{action} failed"
    code = error.code()
    if code in UNREACHABLE:
        return unreachable_message(client)
    if code in UNKNOWN_TOPIC and topic is not None:
        return unknown_topic_message(topic)
    if code in (KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION):
        return f"{action} failed: the broker does not support it ({error.str()})"
    return f"{action} failed: {error.str()} ({error.name()})"


def fail(exc: BaseException, client: ClientOptions, topic: str | None = None,
         action: str = "the request") -> CliError:
    """The CliError to raise for a client exception."""
    error = kafka_error(exc)
    if error is None:
        return CliError(f"{action} failed: {exc}")
    return CliError(describe_error(error, client, topic, action))


# --- metadata -----------------------------------------------------------------------------

C = TypeVar("C")


def make_client(factory: Callable[[dict[str, Any]], C], conf: dict[str, Any]) -> C:
    """A Producer, Consumer or AdminClient; a CliError when a setting is refused."""
    try:
        return factory(conf)
    except (KafkaException, ValueError, TypeError) as exc:
        error = kafka_error(exc)
        reason = error.str() if error is not None else str(exc)
        raise CliError(f"invalid client configuration: {reason} (check --command-config)"
                       ) from None


R = TypeVar("R")


def outcome(future: Future[R], client: ClientOptions) -> R:
    """An admin future's result; bounded even if the client never completes it."""
    try:
        return future.result(timeout=client.request_timeout * 3 + 1)
    except FutureTimeout:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT)) from None


def wait(future: Future[Any], client: ClientOptions, topic: str | None, action: str) -> Any:
    try:
        return outcome(future, client)
    except KafkaException as exc:
        raise fail(exc, client, topic, action) from None


def timeouts(client: ClientOptions) -> dict[str, float]:
    return {"request_timeout": client.request_timeout}


def admin_client(client: ClientOptions) -> AdminClient:
    conf = client.config(**{"socket.timeout.ms": max(client.timeout_ms, 10)})
    return make_client(AdminClient, conf)


def cluster_metadata(admin: AdminClient, client: ClientOptions) -> ClusterMetadata:
    """All topics' metadata (listing all topics never auto-creates one)."""
    try:
        return admin.list_topics(timeout=client.request_timeout)
    except KafkaException as exc:
        raise fail(exc, client, action="fetching metadata") from None


def topic_partitions(metadata: ClusterMetadata, topic: str) -> list[int]:
    """The topic's partition ids, or a CliError saying how to create the topic."""
    info = metadata.topics.get(topic)
    if info is None or (info.error is not None and info.error.code() in UNKNOWN_TOPIC):
        raise CliError(unknown_topic_message(topic))
    if info.error is not None:
        raise CliError(f"topic {topic} is not available: {info.error.str()}")
    return sorted(info.partitions)


def check_partitions(topic: str, available: list[int], wanted: Iterable[int]) -> None:
    for partition in wanted:
        if partition not in available:
            raise CliError(f"topic {topic} has no partition {partition} (it has "
                           f"{len(available)}: {format_ids(available)}; add some with "
                           f"`strom topic alter {topic} --partitions N`)")


def format_ids(ids: Iterable[int]) -> str:
    return ",".join(str(i) for i in ids) or "none"


# --- output -------------------------------------------------------------------------------

def console() -> Console:
    """Rich output on the current stdout; wide when not a terminal, so nothing is cut."""
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 200,
                   highlight=False)


def row(*values: object) -> list[Text]:
    """Table cells as plain text (names may contain `[`, which rich would read as markup)."""
    return [Text("" if v is None else str(v)) for v in values]


def dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


# --- bytes in text and JSON ---------------------------------------------------------------

def bytes_to_json(data: str | bytes | None) -> str | dict[str, str] | None:
    """UTF-8 text as a string; anything else as {"base64": "..."}."""
    if data is None or isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {BASE64_MARKER: base64.b64encode(data).decode("ascii")}


def json_to_bytes(value: Any, what: str) -> bytes | None:
    """The inverse of bytes_to_json; other JSON values are encoded as compact JSON text."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {BASE64_MARKER}:
        try:
            return base64.b64decode(str(value[BASE64_MARKER]), validate=True)
        except binascii.Error:
            raise ValueError(f"{what}: invalid base64") from None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def bytes_to_text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="backslashreplace")


# --- --output table|json ------------------------------------------------------------------

OUTPUT_FORMATS: Final = ("table", "json")


def output_option(func: F) -> F:
    """Adds `--output table|json` (table by default); the command receives `output: str`."""
    option = click.option("--output", type=click.Choice(OUTPUT_FORMATS), default="table",
                          show_default=True,
                          help="A table, or one JSON document on stdout (messages stay on "
                               "stderr).")
    return option(func)


@dataclass(frozen=True, slots=True)
class Column:
    """A column: its heading in a table and its key in JSON (the heading in snake_case)."""

    heading: str
    key: str = ""

    @property
    def json_key(self) -> str:
        return self.key or self.heading.strip().lower().replace(" ", "_").replace("-", "_")


def columns_of(columns: Iterable[str | Column]) -> list[Column]:
    return [c if isinstance(c, Column) else Column(c) for c in columns]


def records(columns: Iterable[str | Column], rows: Iterable[Iterable[object]]
            ) -> list[dict[str, object]]:
    """Rows as JSON objects keyed by the columns' JSON keys; values kept as they are (numbers
    stay numbers, None is null)."""
    keys = [c.json_key for c in columns_of(columns)]
    result = []
    for values in rows:
        cells = list(values)
        if len(cells) != len(keys):
            raise ValueError(f"a row has {len(cells)} values for {len(keys)} columns")
        result.append(dict(zip(keys, cells, strict=True)))
    return result


def table_of(columns: Iterable[str | Column], rows: Iterable[Iterable[object]],
             title: str | None = None) -> Table:
    """A rich table of plain-text cells; None shows as `-`, booleans as yes/no."""
    table = Table(*(c.heading for c in columns_of(columns)), title=title)
    for values in rows:
        table.add_row(*row(*(table_cell(v) for v in values)))
    return table


def table_cell(value: object) -> object:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return format_ids(value) if all(isinstance(v, int) for v in value) else ",".join(
            str(v) for v in value) or "-"
    return value


def print_json(document: object) -> None:
    """One JSON document on stdout, keys in the order given (stable), numbers as numbers."""
    click.echo(json.dumps(document, indent=2, ensure_ascii=False, default=str))


def render(output: str, columns: Iterable[str | Column], rows: Iterable[Iterable[object]],
           *, title: str | None = None, key: str | None = None) -> None:
    """Print rows as a table, or as a JSON array of objects (an object {key: [...]} when `key`
    is given)."""
    columns = columns_of(columns)
    rows = [list(r) for r in rows]
    if output == "json":
        items = records(columns, rows)
        print_json(items if key is None else {key: items})
        return
    console().print(table_of(columns, rows, title))


# --- progress on stderr -------------------------------------------------------------------

class Progress:
    """A rich progress bar on stderr when stderr is a terminal; does nothing otherwise (no
    progress noise in pipes, files or CI logs)."""

    def __init__(self, description: str, total: float | None, *,
                 enabled: bool | None = None) -> None:
        self._bar: Any = None
        self._task: Any = None
        if enabled is None:
            enabled = sys.stderr.isatty()
        if enabled:
            from rich import progress as rich_progress

            self._bar = rich_progress.Progress(
                rich_progress.TextColumn("{task.description}"), rich_progress.BarColumn(),
                rich_progress.TaskProgressColumn(), rich_progress.MofNCompleteColumn(),
                rich_progress.TimeElapsedColumn(),
                console=Console(file=sys.stderr), transient=True)
            self._task = self._bar.add_task(description, total=total)

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, amount: float = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)
