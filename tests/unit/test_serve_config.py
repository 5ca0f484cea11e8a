"""`strom serve` turns --listen, --config files and --set into broker settings, refusing unknown
names and bad values with a message that says what is wrong."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from strom.cli.serve import build_config, parse_listen
from strom.config.broker import BrokerConfig
from strom.config.topic import ConfigError


def test_listen_forms() -> None:
    assert parse_listen("localhost:9092") == ("localhost", 9092)
    assert parse_listen("[::1]:19092") == ("::1", 19092)
    assert parse_listen(":9092") == ("0.0.0.0", 9092)
    with pytest.raises(click.BadParameter, match="HOST:PORT"):
        parse_listen("localhost")


def test_config_file_then_set_overrides(tmp_path: Path) -> None:
    props = tmp_path / "server.properties"
    props.write_text("# comment\nnum.partitions=3\nlog.retention.ms = 1000\n\n")
    config = build_config(tmp_path, "127.0.0.1:0", props, ("num.partitions=5", "flush.messages=1"))
    assert config.get_int("num.partitions") == 5
    assert config.get_int("log.retention.ms") == 1000
    # A topic-level name sets the broker default of every topic.
    assert config.log_config({}).flush_messages == 1
    assert config.topic_default("flush.messages") == ("1", True)


def test_topic_override_beats_broker_default(tmp_path: Path) -> None:
    config = BrokerConfig.build(tmp_path, "h", 1, {"log.retention.ms": "5000"})
    assert config.log_config({}).retention_ms == 5000
    assert config.log_config({"retention.ms": "7"}).retention_ms == 7
    assert config.topic_default("segment.bytes")[1] is False


@pytest.mark.parametrize("item, message", [
    ("no.such.setting=1", "unknown setting"),
    ("num.partitions=many", "not an integer"),
    ("auto.create.topics.enable=yes", "true or false"),
    ("message.timestamp.type=Sometimes", "not one of"),
    ("novalue", "expected name=value"),
])
def test_bad_settings_are_refused(tmp_path: Path, item: str, message: str) -> None:
    with pytest.raises(click.BadParameter, match=message):
        build_config(tmp_path, "127.0.0.1:0", None, (item,))


def test_bad_config_file_line(tmp_path: Path) -> None:
    props = tmp_path / "bad.properties"
    props.write_text("num.partitions\n")
    with pytest.raises(click.BadParameter, match=r"bad\.properties:1"):
        build_config(tmp_path, "127.0.0.1:0", props, ())


def test_kafkas_listener_and_node_id_names(tmp_path: Path) -> None:
    config = BrokerConfig.build(tmp_path, "localhost", 9092, {
        "listeners": "PLAINTEXT://127.0.0.1:19092",
        "advertised.listeners": "PLAINTEXT://broker.example:29092", "broker.id": "4"})
    assert (config.host, config.port, config.node_id) == ("127.0.0.1", 19092, 4)
    assert (config.advertised, config.advertised_port) == ("broker.example", 29092)
    everywhere = BrokerConfig.build(tmp_path, "h", 1, {"listeners": "PLAINTEXT://:9093"})
    assert (everywhere.host, everywhere.port) == ("0.0.0.0", 9093)
    for settings, problem in [
            ({"listeners": "PLAINTEXT://a:1,PLAINTEXT://b:2"}, "PLAINTEXT appears twice"),
            ({"listeners": "PLAINTEXT://a:1,SSL://b:1"}, "both use port 1"),
            ({"listeners": "PLAINTEXT://nowhere"}, "HOST:PORT"),
            ({"listeners": "CLIENT://h:1"}, "add CLIENT:PROTOCOL"),
            ({"listener.security.protocol.map": "CLIENT:KERBEROS"}, "not one of"),
            ({"advertised.listeners": "PLAINTEXT://:9092"}, "a host clients can reach"),
            ({"advertised.listeners": "SSL://x:9093"}, "SSL, which is not in listeners"),
            ({"inter.broker.listener.name": "BROKER"}, "BROKER is not in listeners"),
            ({"listener.name.ssl.num.partitions": "3"}, "prefixes a TLS or SASL setting"),
            ({"listener.name.ssl.connections.max.reauth.ms": "x"}, "not an integer"),
            ({"max.connections.per.ip.overrides": "10.0.0.1"}, "HOST:N"),
            ({"authorizer.class.name": "com.example.Mine"}, "answers to")]:
        with pytest.raises(ConfigError, match=problem):
            BrokerConfig.build(tmp_path, "h", 1, settings)


def test_several_listeners_with_their_protocols_and_settings(tmp_path: Path) -> None:
    config = BrokerConfig.build(tmp_path, "localhost", 9092, {
        "listeners": "CLIENT://:9093,BROKER://127.0.0.1:9094,PLAINTEXT://localhost:0",
        "listener.security.protocol.map": "CLIENT:SASL_SSL,BROKER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "advertised.listeners": "CLIENT://kafka.example:443",
        "inter.broker.listener.name": "broker",
        "ssl.client.auth": "required",
        "listener.name.client.ssl.client.auth": "none"})
    assert [str(a) for a in config.listeners()] == [
        "CLIENT://0.0.0.0:9093", "BROKER://127.0.0.1:9094", "PLAINTEXT://localhost:0"]
    assert [config.protocol_of(a.name) for a in config.listeners()] == [
        "SASL_SSL", "PLAINTEXT", "PLAINTEXT"]
    assert config.inter_broker_listener() == "BROKER"
    assert config.advertised_address("CLIENT", 9093) == ("kafka.example", 443)
    assert config.advertised_address("PLAINTEXT", 41234)[1] == 41234
    assert config.for_listener("CLIENT", "ssl.client.auth") == "none"
    assert config.for_listener("BROKER", "ssl.client.auth") == "required"


def test_broker_rack_is_free_text_and_registered(tmp_path: Path) -> None:
    from strom.broker.state import Broker
    from strom.storage.memory import MemoryEngine

    config = BrokerConfig.build(tmp_path, "127.0.0.1", 9092, {"broker.rack": "eu-1a"})
    assert config.rack == "eu-1a"
    assert BrokerConfig.build(tmp_path, "127.0.0.1", 9092).rack is None
    assert Broker(config, MemoryEngine(config)).registration().rack == "eu-1a"


def test_the_session_must_outlast_the_heartbeat(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"must be longer than broker\.heartbeat"):
        BrokerConfig.build(tmp_path, "127.0.0.1", 9092, {
            "broker.heartbeat.interval.ms": "3000", "broker.session.timeout.ms": "3000"})


def test_http_listeners_setting() -> None:
    config = build_config(Path("."), "127.0.0.1:0", None, ("http.listeners=127.0.0.1:9644,:0",))
    assert config.http_listeners() == [("127.0.0.1", 9644), ("", 0)]
    assert build_config(Path("."), "127.0.0.1:0", None, ()).http_listeners() == []
    with pytest.raises(click.BadParameter, match=r"http\.listeners.*HOST:PORT"):
        build_config(Path("."), "127.0.0.1:0", None, ("http.listeners=localhost",))
