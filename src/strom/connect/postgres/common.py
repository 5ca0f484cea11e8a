"""What both PostgreSQL source connectors share: connecting with psycopg2 (every value read as
its text output, so one conversion path serves pgoutput, snapshots and queries) and table
name matching."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg2
import psycopg2.extensions

# Server settings for every connection: ISO dates, UTC timestamps, exact floats.
SESSION_OPTIONS = "-c DateStyle=ISO,MDY -c TimeZone=UTC -c extra_float_digits=3 " \
                  "-c bytea_output=hex -c IntervalStyle=iso_8601"


def connect(params: Mapping[str, Any], **extra: Any) -> Any:
    """A psycopg2 connection returning every value as the server's text output."""
    conn = psycopg2.connect(options=SESSION_OPTIONS, **{**params, **extra})
    if extra.get("connection_factory") is None:
        text_everything(conn)
    return conn


def text_everything(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT oid FROM pg_type")
        oids = tuple(row[0] for row in cur.fetchall())
    if not conn.autocommit:
        conn.rollback()
    caster = psycopg2.extensions.new_type(oids, "STROM_TEXT", lambda value, cur: value)
    psycopg2.extensions.register_type(caster, conn)


def jdbc_url_params(url: str) -> dict[str, Any]:
    """psycopg2's connection keywords from `jdbc:postgresql://host:port/db?user=..&password=..`
    (or a `postgresql://` URL)."""
    if url.startswith("jdbc:"):
        url = url[len("jdbc:"):]
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url}")
    params: dict[str, Any] = {"host": parts.hostname or "localhost",
                              "port": parts.port or 5432,
                              "dbname": unquote(parts.path.lstrip("/")) or "postgres"}
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.password:
        params["password"] = unquote(parts.password)
    for key, values in parse_qs(parts.query).items():
        if key in ("user", "password", "sslmode", "connect_timeout", "application_name"):
            params[key] = values[-1]
        elif key == "ssl" and values[-1] == "true":
            params.setdefault("sslmode", "require")
    return params


def split_list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


class TableFilter:
    """Debezium's table.include.list / table.exclude.list: regular expressions matching the
    whole `schema.table`."""

    SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")

    def __init__(self, include: Iterable[str], exclude: Iterable[str] = ()) -> None:
        self.include = [re.compile(p) for p in include]
        self.exclude = [re.compile(p) for p in exclude]

    def __call__(self, schema: str, table: str) -> bool:
        if schema in self.SYSTEM_SCHEMAS or schema.startswith("pg_"):
            return False
        name = f"{schema}.{table}"
        if self.include and not any(p.fullmatch(name) for p in self.include):
            return False
        return not any(p.fullmatch(name) for p in self.exclude)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"
