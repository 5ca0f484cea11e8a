"""The hosts of a multi-host URL tried one at a time, each with a time limit of its own.

asyncpg tries a URL's hosts in order within one timeout for them all, so a first host that
does not answer at all (its machine gone, the server frozen, a network partition: nothing
refuses the connection) uses up the whole timeout and the next hosts are never tried: a broker
whose primary's machine died would never reach the promoted standby. libpq gives each host
`connect_timeout` seconds; so does `connect_each`, the pool's way to connect when the URL
names several hosts (`connect_timeout` in the URL, else CONNECT_TIMEOUT_S). The URL's other
parameters (target_session_attrs among them) apply to each host as asyncpg reads them.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

CONNECT_TIMEOUT_S: Final = 10.0
# Failures of one host that send the connection to the next (libpq does the same): it is
# down, refuses or does not answer, is starting or stopping, or is not the one wanted
# (target_session_attrs).
NEXT_HOST: Final = (OSError, TimeoutError, asyncpg.PostgresConnectionError,
                    asyncpg.CannotConnectNowError, asyncpg.TargetServerAttributeNotMatched)


@dataclass(frozen=True)
class HostList:
    url: str  # without connect_timeout (asyncpg would send it to the server as a setting)
    hosts: tuple[tuple[str, int | None], ...]  # empty: asyncpg reads them (query, env)
    timeout_s: float  # per host


def parse_hosts(url: str) -> HostList:
    """The URL's hosts in order and its per-host connect timeout."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    timeout_s = CONNECT_TIMEOUT_S
    kept = []
    for key, val in query:
        if key == "connect_timeout":
            timeout_s = float(val) if float(val) > 0 else CONNECT_TIMEOUT_S
        else:
            kept.append((key, val))
    if len(kept) < len(query):
        url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(kept)))
    spec = parts.netloc.rpartition("@")[2]
    hosts = tuple(_host_port(entry) for entry in spec.split(",")) if spec else ()
    return HostList(url, hosts, timeout_s)


def _host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [IPv6]:port
        host, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = entry.partition(":")
    return urllib.parse.unquote(host), int(port) if port else None


def connect_each(hosts: HostList) -> Any:
    """A `connect` for asyncpg's pool that tries `hosts` one at a time."""

    async def connect(dsn: str, **kwargs: Any) -> Any:
        last: BaseException | None = None
        for host, port in hosts.hosts:
            try:
                return await asyncpg.connect(dsn, **{**kwargs, "host": host, "port": port,
                                                     "timeout": hosts.timeout_s})
            except NEXT_HOST as exc:
                last = exc
        assert last is not None, "connect_each needs at least one host"
        raise last

    return connect
