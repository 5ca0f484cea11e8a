"""SASL/OAUTHBEARER with confluent-kafka's token callback against a broker checking JWTs with a
JWKS file (KIP-768): a signed token works and names the principal; an expired token, a token
signed by another key and one for another audience fail with SASL_AUTHENTICATION_FAILED."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient

from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, create_topic, unique_name
from tests.oauth_keys import generate_key, make_keypair_and_jwks, sign_token

AUDIENCE = "strom-test"


@pytest.fixture(scope="module")
def oauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedBroker, Any]]:
    key, jwks = make_keypair_and_jwks(tmp_path_factory.mktemp("jwks"), "k1")
    settings = {"listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
                "sasl.enabled.mechanisms": "OAUTHBEARER,SCRAM-SHA-256",
                "sasl.oauthbearer.jwks.endpoint.url": jwks.as_uri(),
                "sasl.oauthbearer.expected.audience": AUDIENCE}
    with EmbeddedBroker(settings=settings) as broker:
        yield broker, key


def conf(broker: EmbeddedBroker, token: Callable[[], str], **extra: Any) -> dict[str, Any]:
    def oauth_cb(_: str) -> tuple[str, float]:
        return token(), time.time() + 300

    return {"bootstrap.servers": broker.address("SASL_PLAINTEXT"),
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "OAUTHBEARER",
            "oauth_cb": oauth_cb, **extra}


def test_a_signed_token_works(oauth: tuple[EmbeddedBroker, Any]) -> None:
    broker, key = oauth
    topic = create_topic(broker.bootstrap_servers, unique_name("oauth"))
    p = Producer(conf(broker, lambda: sign_token(key, "k1", "svc-orders", aud=AUDIENCE),
                      **{"message.timeout.ms": 15000}))
    failed: list[Any] = []
    p.produce(topic, b"with-token", on_delivery=lambda e, m: failed.append(e) if e else None)
    assert p.flush(DEADLINE_S) == 0 and not failed, failed
    assert broker.server.broker is not None
    assert broker.server.broker.sasl.successes >= 1


@pytest.mark.parametrize("case", ["expired", "other-key", "other-audience"])
def test_a_bad_token_fails(oauth: tuple[EmbeddedBroker, Any], case: str) -> None:
    broker, key = oauth
    tokens = {
        "expired": lambda: sign_token(key, "k1", "svc", lifetime_s=-120, aud=AUDIENCE),
        "other-key": lambda: sign_token(generate_key(), "k1", "svc", aud=AUDIENCE),
        "other-audience": lambda: sign_token(key, "k1", "svc", aud="someone-else"),
    }
    errors: list[KafkaError] = []
    admin = AdminClient({**conf(broker, tokens[case]), "error_cb": errors.append})
    admin.describe_cluster(request_timeout=DEADLINE_S)  # makes it connect
    deadline = time.monotonic() + DEADLINE_S
    while not any(e.code() == KafkaError._AUTHENTICATION for e in errors):
        assert time.monotonic() < deadline, errors
        admin.poll(0.2)  # serves error_cb


def test_a_missing_jwks_stops_the_start(tmp_path: Path) -> None:
    settings = {"listeners": "SASL_PLAINTEXT://127.0.0.1:0",
                "sasl.enabled.mechanisms": "OAUTHBEARER",
                "sasl.oauthbearer.jwks.endpoint.url": (tmp_path / "none.json").as_uri()}
    with pytest.raises(Exception, match=r"none\.json"):
        EmbeddedBroker(settings=settings).start()
