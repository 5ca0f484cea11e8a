"""Two schema registry instances in one group: one primary, writes sent to the follower are
forwarded, and when the primary dies (SIGKILL) the other takes over writes within the group's
session timeout; a deposed primary's writer is fenced."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from strom.registry.kafka_io import FencedError, SchemasWriter
from strom.registry.records import NoopKey, Record
from strom.registry.rest import RunningRegistry, start_in_thread
from strom.registry.server import RegistrySettings
from strom.security.certs import create_ca, create_certificate
from strom.testing import EmbeddedBroker
from tests.integration.conftest import unique_name
from tests.integration.registry_client import Http

SESSION_TIMEOUT_MS = 3000
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return {"group.min.session.timeout.ms": "1000",
            "group.initial.rebalance.delay.ms": "0"}


def settings(broker: EmbeddedBroker, topic: str, group: str) -> RegistrySettings:
    return RegistrySettings(broker.bootstrap_servers, topic=topic, group_id=group,
                            session_timeout_ms=SESSION_TIMEOUT_MS)


def wait_for(check: object, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def pair(broker: EmbeddedBroker) -> Iterator[tuple[RunningRegistry, RunningRegistry]]:
    topic, group = unique_name("_schemas"), unique_name("registry")
    first = start_in_thread(settings(broker, topic, group))
    wait_for(lambda: first.registry.primary_ready.is_set(), what="the first to be primary")
    second = start_in_thread(settings(broker, topic, group))
    yield first, second
    second.stop()
    first.stop()


def test_one_primary_and_writes_forwarded(pair: tuple[RunningRegistry, RunningRegistry]) -> None:
    first, second = pair
    wait_for(lambda: first.registry.elected != second.registry.elected, what="a settled group")
    primary, follower = (first, second) if first.registry.elected else (second, first)
    wait_for(lambda: primary.registry.primary_ready.is_set(), what="the primary's writer")
    subject = unique_name("fwd")
    reply = Http(follower.url).register(subject, '"string"')
    assert reply.status == 200, reply
    # the follower answers its own forwarded write: it has read it already
    assert Http(follower.url).get(f"/subjects/{subject}/versions").body == [1]
    assert Http(primary.url).get(f"/subjects/{subject}/versions").body == [1]
    # every write kind goes through the primary; errors come back as the primary answers them
    assert Http(follower.url).put(f"/config/{subject}", {"compatibility": "FORWARD"}).body == {
        "compatibility": "FORWARD"}
    refused = Http(follower.url).register(subject, '"int"')
    assert (refused.status, refused.code) == (409, 409)
    assert Http(follower.url).delete(f"/subjects/{subject}").body == [1]
    assert Http(primary.url).get(f"/subjects/{subject}/versions").code == 40401
    # new ids are unique whichever instance is asked
    a = Http(follower.url).register(unique_name("ids"), '"long"').body["id"]
    b = Http(primary.url).register(unique_name("ids"), '"double"').body["id"]
    assert a != b


def test_stopped_primary_hands_over(pair: tuple[RunningRegistry, RunningRegistry]) -> None:
    first, second = pair
    wait_for(lambda: first.registry.primary_ready.is_set(), what="the first as primary")
    assert Http(second.url).register(unique_name("s"), '"string"').status == 200
    first.stop()  # leaves the group: the second is primary at the next rebalance
    wait_for(lambda: second.registry.primary_ready.is_set(), timeout=15, what="a new primary")
    reply = Http(second.url).register(unique_name("after"), '"bytes"')
    assert reply.status == 200, reply


def test_forwarding_over_https_with_basic_auth(broker: EmbeddedBroker, tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    cert = create_certificate(tmp_path, ca, "registry", ["127.0.0.1"])
    secured = dataclasses.replace(
        settings(broker, unique_name("_schemas"), unique_name("registry")),
        users={"alice": "pw"}, tls_cert=cert.cert_path, tls_key=cert.key_path,
        tls_ca=ca.cert_path)
    first = start_in_thread(secured)
    second = None
    try:
        wait_for(lambda: first.registry.primary_ready.is_set(), what="the first as primary")
        second = start_in_thread(dataclasses.replace(secured, leader_eligibility=False))
        context = ssl.create_default_context(cafile=str(ca.cert_path))
        follower = Http(second.url, ("alice", "pw"), context)
        subject = unique_name("tls")
        reply = follower.register(subject, '"string"')
        assert reply.status == 200, reply
        assert Http(first.url, ("alice", "pw"), context).get(
            f"/subjects/{subject}/versions").body == [1]
        # wrong credentials are refused before anything is forwarded
        assert Http(second.url, ("alice", "no"), context).register(subject, '"int"'
                                                                    ).status == 401
    finally:
        if second is not None:
            second.stop()
        first.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_killed_primary_is_replaced_within_the_session_timeout(broker: EmbeddedBroker) -> None:
    topic, group = unique_name("_schemas"), unique_name("registry")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "strom", "registry", "--bootstrap-servers",
         broker.bootstrap_servers, "--listen", f"127.0.0.1:{port}", "--topic", topic,
         "--group-id", group, "--session-timeout-ms", str(SESSION_TIMEOUT_MS),
         "--log-level", "WARNING"],
        env={**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = Http(f"http://127.0.0.1:{port}")
    survivor = None
    try:
        def primary_serves() -> bool:
            try:
                return killed.register(unique_name("first"), '"string"').status == 200
            except OSError:
                return False

        wait_for(primary_serves, timeout=60, what="the subprocess registry to write")
        survivor = start_in_thread(settings(broker, topic, group))
        assert not survivor.registry.elected
        subject = unique_name("before")
        assert Http(survivor.url).register(subject, '"int"').status == 200  # forwarded
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        killed_at = time.monotonic()
        after = unique_name("after")
        while True:
            reply = Http(survivor.url).register(after, '"long"')
            if reply.status == 200:
                break
            # until the group notices: the forwarding fails (50003) or no primary (50004)
            assert reply.code in (50003, 50004), reply
            assert time.monotonic() - killed_at < 30, "no new primary"
        took = time.monotonic() - killed_at
        assert survivor.registry.elected
        # within the session timeout, plus a rebalance and the writer's start
        assert took < SESSION_TIMEOUT_MS / 1000 + 10, took
        http = Http(survivor.url)
        assert http.get(f"/subjects/{subject}/versions").body == [1]
        assert http.get(f"/subjects/{after}/versions").body == [1]
        ids = [http.get(f"/subjects/{s}/versions/1").body["id"] for s in (subject, after)]
        assert ids[1] > ids[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        assert process.stderr is not None
        process.stderr.close()
        if survivor is not None:
            survivor.stop()


def test_a_new_writer_fences_the_old_one(broker: EmbeddedBroker) -> None:
    topic = unique_name("_schemas")
    client = {"bootstrap.servers": broker.bootstrap_servers}
    from strom.registry.kafka_io import ensure_topic

    ensure_topic(client, topic)
    noop = [Record(NoopKey(), None).encode()]
    old = SchemasWriter(client, topic, f"{topic}-writer")
    assert old.write(noop) == 0
    new = SchemasWriter(client, topic, f"{topic}-writer")
    with pytest.raises(FencedError):
        old.write(noop)
    assert new.write(noop) > 0
    old.close()
    new.close()


def test_strom_serve_with_registry(tmp_path: Path) -> None:
    kafka_port, registry_port = free_port(), free_port()
    users = tmp_path / "users"
    users.write_text("# username: password[,roles]\nalice: s3cret,admin\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "strom", "serve", "--storage", "memory:", "--listen",
         f"127.0.0.1:{kafka_port}", "--registry", f"127.0.0.1:{registry_port}"],
        env={**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}",
             "STROM_REGISTRY_USERS": str(users)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    http = Http(f"http://127.0.0.1:{registry_port}", ("alice", "s3cret"))
    try:
        def registered() -> bool:
            try:
                return http.register("served", '"string"').status == 200
            except OSError:
                return False

        wait_for(registered, timeout=60, what="strom serve --registry")
        assert Http(http.url).get("/subjects").status == 401
        assert http.get("/subjects").body == ["served"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        assert process.stderr is not None
        process.stderr.close()
    assert process.returncode == 0
