"""A storage URL's hosts are read in order (IPv6 in brackets, ports optional) with libpq's
per-host `connect_timeout`, which is taken out of the URL (asyncpg would send it to the server
as a setting, which PostgreSQL refuses)."""

from __future__ import annotations

import pytest

from strom.storage.postgres.host_list import CONNECT_TIMEOUT_S, parse_hosts


def test_hosts_in_order_with_their_ports() -> None:
    url = ("postgresql://strom:p%40ss@db1.example:5433,[::1]:6432,db3/strom"
           "?target_session_attrs=read-write")
    found = parse_hosts(url)
    assert found.hosts == (("db1.example", 5433), ("::1", 6432), ("db3", None))
    assert found.url == url
    assert found.timeout_s == CONNECT_TIMEOUT_S


def test_connect_timeout_is_per_host_and_leaves_the_url() -> None:
    found = parse_hosts("postgresql://u@a:1,b:2/db?connect_timeout=2&target_session_attrs="
                        "read-write&sslmode=disable")
    assert found.timeout_s == 2.0
    assert found.url == "postgresql://u@a:1,b:2/db?target_session_attrs=read-write&sslmode=disable"
    assert parse_hosts("postgresql://u@a/db?connect_timeout=0").timeout_s == CONNECT_TIMEOUT_S


def test_hosts_given_elsewhere_are_left_to_asyncpg() -> None:
    assert parse_hosts("postgresql:///strom?host=/run/postgresql").hosts == ()
    with pytest.raises(ValueError):
        parse_hosts("postgresql://u@a:1/db?connect_timeout=soon")
