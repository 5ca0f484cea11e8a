"""HttpSink: record values POSTed (PUT, PATCH) to an HTTP endpoint in batches, answering to
Confluent's class name `io.confluent.connect.http.HttpSinkConnector` and its main configs.

A batch is up to `batch.max.size` records of one `put` and one URL (`http.api.url` may name
`${topic}` and `${key}`), rendered as `batch.prefix` + values joined by `batch.separator` +
`batch.suffix` (a JSON array by default); `put` returns once all were sent. A request that
fails with a connection error, a timeout or a status of `retry.on.status.codes` is retried
`max.retries` times with backoff; then, and at once for other statuses >= 300, the batch's
records go to the errant record reporter (dead letter queue) when `errors.tolerance=all`, else
the task fails (`put` raises), so the offsets the worker commits are only ever those of records
delivered or reported.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strom import __version__
from strom.connect.api import SinkConnector, SinkTask, Task
from strom.connect.errors import ConfigException, ConnectException

if TYPE_CHECKING:
    import aiohttp

    from strom.connect.config import ConfigDef
    from strom.connect.records import SinkRecord

log = logging.getLogger(__name__)

URL = "http.api.url"
METHOD = "request.method"
HEADERS = "headers"
HEADER_SEPARATOR = "header.separator"
AUTH_TYPE = "auth.type"
USER = "connection.user"
PASSWORD = "connection.password"
BEARER_TOKEN = "bearer.token"
BATCH_MAX_SIZE = "batch.max.size"
BATCH_PREFIX = "batch.prefix"
BATCH_SUFFIX = "batch.suffix"
BATCH_SEPARATOR = "batch.separator"
BODY_FORMAT = "request.body.format"
MAX_RETRIES = "max.retries"
RETRY_BACKOFF_MS = "retry.backoff.ms"
RETRY_BACKOFF_POLICY = "retry.backoff.policy"
RETRY_ON_STATUS = "retry.on.status.codes"
CONNECT_TIMEOUT_MS = "http.connect.timeout.ms"
REQUEST_TIMEOUT_MS = "http.request.timeout.ms"
NULL_VALUES = "behavior.on.null.values"

DEFAULT_RETRY_ON = "408,429,500-"
MAX_BACKOFF_S = 60.0


def config_def() -> ConfigDef:
    from strom.connect.config import (
        NO_DEFAULT,
        CaseInsensitiveValidString,
        ConfigDef,
        ConfigType,
        Importance,
        NonEmptyString,
        Range,
    )
    d = ConfigDef()
    d.define(URL, ConfigType.STRING, NO_DEFAULT, Importance.HIGH,
             "HTTP API URL; ${topic} and ${key} are replaced by the record's topic and key",
             validator=NonEmptyString())
    d.define(METHOD, ConfigType.STRING, "POST", Importance.HIGH, "HTTP request method",
             validator=CaseInsensitiveValidString.in_("POST", "PUT", "PATCH"))
    d.define(HEADERS, ConfigType.STRING, "", Importance.MEDIUM,
             "HTTP headers, Name:Value separated by header.separator")
    d.define(HEADER_SEPARATOR, ConfigType.STRING, "|", Importance.LOW,
             "Separator of the headers")
    d.define(AUTH_TYPE, ConfigType.STRING, "NONE", Importance.HIGH,
             "Authentication type: NONE, BASIC or BEARER",
             validator=CaseInsensitiveValidString.in_("NONE", "BASIC", "BEARER"))
    d.define(USER, ConfigType.STRING, "", Importance.HIGH, "Username for BASIC auth")
    d.define(PASSWORD, ConfigType.PASSWORD, "", Importance.HIGH, "Password for BASIC auth")
    d.define(BEARER_TOKEN, ConfigType.PASSWORD, "", Importance.HIGH, "Token for BEARER auth")
    d.define(BATCH_MAX_SIZE, ConfigType.INT, 1, Importance.HIGH,
             "The number of records in one request at most",
             validator=Range.at_least(1))
    d.define(BATCH_PREFIX, ConfigType.STRING, None, Importance.MEDIUM,
             "Before a batch's records ('[' for the json body format, '' for string)")
    d.define(BATCH_SUFFIX, ConfigType.STRING, None, Importance.MEDIUM,
             "After a batch's records (']' for the json body format, '' for string)")
    d.define(BATCH_SEPARATOR, ConfigType.STRING, ",", Importance.MEDIUM,
             "Between a batch's records")
    d.define(BODY_FORMAT, ConfigType.STRING, "json", Importance.MEDIUM,
             "json: values as JSON (JsonConverter without schemas); string: as text",
             validator=CaseInsensitiveValidString.in_("json", "string"))
    d.define(MAX_RETRIES, ConfigType.INT, 10, Importance.MEDIUM,
             "Retries of a failed request before giving up", validator=Range.at_least(0))
    d.define(RETRY_BACKOFF_MS, ConfigType.INT, 3000, Importance.MEDIUM,
             "The first wait before a retry (ms)", validator=Range.at_least(0))
    d.define(RETRY_BACKOFF_POLICY, ConfigType.STRING, "EXPONENTIAL_WITH_JITTER", Importance.LOW,
             "CONSTANT_VALUE or EXPONENTIAL_WITH_JITTER",
             validator=CaseInsensitiveValidString.in_("CONSTANT_VALUE",
                                                      "EXPONENTIAL_WITH_JITTER"))
    d.define(RETRY_ON_STATUS, ConfigType.STRING, DEFAULT_RETRY_ON, Importance.MEDIUM,
             "Statuses to retry: codes and ranges, e.g. 408,429,500- or 400-499")
    d.define(CONNECT_TIMEOUT_MS, ConfigType.INT, 30000, Importance.LOW,
             "Connection timeout (ms)", validator=Range.at_least(1))
    d.define(REQUEST_TIMEOUT_MS, ConfigType.INT, 30000, Importance.LOW,
             "Request timeout (ms)", validator=Range.at_least(1))
    d.define(NULL_VALUES, ConfigType.STRING, "ignore", Importance.LOW,
             "Null values (tombstones): ignore or fail",
             validator=CaseInsensitiveValidString.in_("ignore", "fail"))
    return d


def parse_status_codes(spec: str) -> list[tuple[int, int]]:
    """Confluent's retry.on.status.codes: `404`, `400-` (400 and above), `400-499`."""
    ranges = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        match = re.fullmatch(r"(\d{3})(-(\d{3})?)?", part)
        if match is None:
            raise ConfigException(RETRY_ON_STATUS, spec, f"Invalid status code range {part}")
        low = int(match.group(1))
        high = low if match.group(2) is None else int(match.group(3) or 999)
        ranges.append((low, high))
    return ranges


def parse_headers(spec: str, separator: str) -> dict[str, str]:
    headers = {}
    for part in spec.split(separator) if spec else []:
        if not part.strip():
            continue
        name, colon, value = part.partition(":")
        if not colon or not name.strip():
            raise ConfigException(HEADERS, spec, f"Invalid header {part!r}, expected Name:Value")
        headers[name.strip()] = value.strip()
    return headers


class HttpError(ConnectException):
    def __init__(self, status: int, body: str, url: str) -> None:
        super().__init__(f"HTTP {status} from {url}: {body[:500]}")
        self.status = status
        self.body = body


@dataclass
class _Batch:
    url: str
    records: list[SinkRecord] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)


class HttpSinkConnector(SinkConnector):
    def __init__(self) -> None:
        self._props: dict[str, str] = {}

    def version(self) -> str:
        return __version__

    def config(self) -> ConfigDef:
        return config_def()

    def start(self, props: Mapping[str, str]) -> None:
        config_def().parse(props)
        parse_status_codes(props.get(RETRY_ON_STATUS, DEFAULT_RETRY_ON))
        parse_headers(props.get(HEADERS, ""), props.get(HEADER_SEPARATOR, "|"))
        self._props = dict(props)

    def task_class(self) -> type[Task]:
        return HttpSinkTask

    def task_configs(self, max_tasks: int) -> list[dict[str, str]]:
        return [dict(self._props) for _ in range(max_tasks)]

    def stop(self) -> None:
        pass


class HttpSinkTask(SinkTask):
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.requests_sent = 0

    def version(self) -> str:
        return __version__

    async def start(self, props: Mapping[str, str]) -> None:
        from strom.connect.config import Password
        from strom.connect.converters.json_converter import JsonConverter
        c = config_def().parse(props)
        self.url: str = c[URL]
        self.method: str = str(c[METHOD]).upper()
        self.headers = parse_headers(c[HEADERS], c[HEADER_SEPARATOR])
        self.json_body = str(c[BODY_FORMAT]).lower() == "json"
        self.headers_lower = {k.lower() for k in self.headers}
        if "content-type" not in self.headers_lower:
            self.headers["Content-Type"] = ("application/json" if self.json_body
                                            else "text/plain; charset=utf-8")
        auth = str(c[AUTH_TYPE]).upper()
        if auth == "BASIC":
            import base64
            password = c[PASSWORD].value if isinstance(c[PASSWORD], Password) else ""
            token = base64.b64encode(f"{c[USER]}:{password}".encode()).decode("ascii")
            self.headers["Authorization"] = f"Basic {token}"
        elif auth == "BEARER":
            token = c[BEARER_TOKEN].value if isinstance(c[BEARER_TOKEN], Password) else ""
            self.headers["Authorization"] = f"Bearer {token}"
        self.batch_max = int(c[BATCH_MAX_SIZE])
        self.prefix = _raw(props, BATCH_PREFIX, "[" if self.json_body else "")
        self.suffix = _raw(props, BATCH_SUFFIX, "]" if self.json_body else "")
        self.separator = _raw(props, BATCH_SEPARATOR, ",")
        self.max_retries = int(c[MAX_RETRIES])
        self.backoff_s = int(c[RETRY_BACKOFF_MS]) / 1000
        self.jitter = str(c[RETRY_BACKOFF_POLICY]).upper() == "EXPONENTIAL_WITH_JITTER"
        self.retry_on = parse_status_codes(c[RETRY_ON_STATUS])
        self.connect_timeout_s = int(c[CONNECT_TIMEOUT_MS]) / 1000
        self.request_timeout_s = int(c[REQUEST_TIMEOUT_MS]) / 1000
        self.fail_on_null = str(c[NULL_VALUES]).lower() == "fail"
        self.tolerate = props.get("errors.tolerance", "none").strip().lower() == "all"
        self.converter = JsonConverter()
        self.converter.configure({"schemas.enable": "false", "decimal.format": "NUMERIC"},
                                 False)

    async def _client(self) -> aiohttp.ClientSession:
        import aiohttp
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
                total=self.request_timeout_s, sock_connect=self.connect_timeout_s))
        return self._session

    # -- rendering

    def _url(self, record: SinkRecord) -> str:
        url = self.url
        if "${topic}" in url:
            url = url.replace("${topic}", record.topic)
        if "${key}" in url:
            url = url.replace("${key}", "" if record.key is None else _text(record.key))
        return url

    def _body(self, record: SinkRecord) -> str:
        value = record.value
        if not self.json_body:
            if isinstance(value, str):
                return value
            if isinstance(value, bytes | bytearray):
                return bytes(value).decode("utf-8", "replace")
        data = self.converter.from_connect_data(record.topic, record.value_schema, value)
        return (data or b"null").decode("utf-8")

    # -- SinkTask

    async def put(self, records: Sequence[SinkRecord]) -> None:
        """Send the records in batches of `batch.max.size` per URL (the last ones of each URL
        in a smaller batch): when `put` returns, every record was delivered or reported, so the
        offsets the worker commits are those of delivered records only."""
        batches: dict[str, _Batch] = {}
        for record in records:
            if record.value is None:
                if self.fail_on_null:
                    raise ConnectException(
                        f"Null valued record from topic {record.topic}, partition "
                        f"{record.kafka_partition} and offset {record.kafka_offset} was not "
                        f"sent ({NULL_VALUES}=fail)")
                continue
            url = self._url(record)
            batch = batches.setdefault(url, _Batch(url))
            batch.records.append(record)
            batch.bodies.append(self._body(record))
            if len(batch.records) >= self.batch_max:
                del batches[url]
                await self._send(batch)
        for batch in batches.values():
            await self._send(batch)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- sending

    def _retriable(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.retry_on)

    def _delay(self, attempt: int) -> float:
        if not self.jitter:
            return self.backoff_s
        ceiling = min(self.backoff_s * float(2 ** (attempt - 1)), MAX_BACKOFF_S)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _send(self, batch: _Batch) -> None:
        import aiohttp
        body = (self.prefix + self.separator.join(batch.bodies) + self.suffix).encode("utf-8")
        session = await self._client()
        attempt = 0
        while True:
            error: Exception
            retriable = True
            try:
                async with session.request(self.method, batch.url, data=body,
                                           headers=self.headers) as response:
                    text = await response.text(errors="replace")
                    self.requests_sent += 1
                    if response.status < 300:
                        return
                    error = HttpError(response.status, text, batch.url)
                    retriable = self._retriable(response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = exc
            if not retriable or attempt >= self.max_retries:
                await self._failed(batch, error, attempt)
                return
            attempt += 1
            delay = self._delay(attempt)
            log.warning("HTTP sink: %s %s failed (%s), retry %d/%d in %.2f s", self.method,
                        batch.url, error, attempt, self.max_retries, delay)
            await asyncio.sleep(delay)

    async def _failed(self, batch: _Batch, error: Exception, retries: int) -> None:
        reporter = self.context.errant_record_reporter() if self.context is not None else None
        message = f"{self.method} {batch.url} failed after {retries} retries: {error}"
        if not self.tolerate or reporter is None:
            raise ConnectException(message) from error
        log.warning("HTTP sink: %s; reporting its %d records", message, len(batch.records))
        for record in batch.records:
            await await_report(reporter.report(record, error))


async def await_report(result: Any) -> None:
    """Wait for what an errant record reporter returned (a future, an awaitable or None)."""
    import concurrent.futures
    if isinstance(result, concurrent.futures.Future):
        await asyncio.wrap_future(result)
    elif result is not None and hasattr(result, "__await__"):
        await result


def _raw(props: Mapping[str, str], name: str, default: str) -> str:
    """A batch delimiter as written (ConfigDef trims strings; a newline is a fine separator),
    with the escapes \\n, \\r and \\t of a single-line config read as those characters."""
    value = props.get(name)
    if value is None:
        return default
    return value.replace("\\n", "\n").replace("\\r", "\r").replace("\\t", "\t")


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)
