"""Client quota entities, Kafka's precedence, and the windowed rate behind throttling."""

from __future__ import annotations

import pytest

from strom.security.quotas import (
    PRODUCER_BYTE_RATE,
    QuotaConfig,
    QuotaError,
    Rate,
    check_value,
    entity_from_record,
    entity_of,
    record_key,
)


def test_precedence_most_specific_first() -> None:
    levels = [
        ((("client-id", "c"), ("user", "u"))),
        ((("client-id", None), ("user", "u"))),
        ((("user", "u"),)),
        ((("client-id", "c"), ("user", None))),
        ((("client-id", None), ("user", None))),
        ((("user", None),)),
        ((("client-id", "c"),)),
        ((("client-id", None),)),
    ]
    values = {entity: {PRODUCER_BYTE_RATE: float(i + 1)} for i, entity in enumerate(levels)}
    for i, entity in enumerate(levels):
        config = QuotaConfig({e: v for e, v in values.items() if levels.index(e) >= i})
        assert config.client_quota("u", "c", PRODUCER_BYTE_RATE) == (entity, float(i + 1))
    # Another user and client id fall through to the defaults.
    config = QuotaConfig(values)
    assert config.client_quota("v", "d", PRODUCER_BYTE_RATE) == (
        (("client-id", None), ("user", None)), 5.0)
    assert QuotaConfig().client_quota("u", "c", PRODUCER_BYTE_RATE) is None


def test_entities_and_values_kafka_refuses() -> None:
    with pytest.raises(QuotaError, match="combined"):
        entity_of([("ip", "1.2.3.4"), ("user", "u")])
    with pytest.raises(QuotaError, match="unknown entity type"):
        entity_of([("group", "g")])
    with pytest.raises(QuotaError, match="must not be empty"):
        entity_of([("user", "")])
    user = entity_of([("user", "u")])
    with pytest.raises(QuotaError, match="not a quota of user"):
        check_value(user, "connection_creation_rate", 5)
    with pytest.raises(QuotaError, match="whole number"):
        check_value(user, PRODUCER_BYTE_RATE, 1.5)
    with pytest.raises(QuotaError, match="positive"):
        check_value(user, "request_percentage", 0)
    check_value(user, "request_percentage", 12.5)
    assert entity_from_record(record_key(user)) == user


def test_rate_counts_at_least_the_full_span_and_throttles_the_excess() -> None:
    rate = Rate(samples=11, window_s=1.0)
    rate.record(10_000, now=100.0)
    # A new sensor: 10,000 over the 0.5 s elapsed plus the 10 full windows it lacks.
    assert rate.rate(100.5) == pytest.approx(10_000 / 10.5)
    assert rate.throttle_s(2000, 100.5) == 0.0
    for i in range(1, 11):
        rate.record(10_000, now=100.0 + i)
    # 110,000 in 11 windows over 10.5 s: ~10,476/s against 6,000/s.
    observed = rate.rate(110.5)
    assert observed == pytest.approx(110_000 / 10.5)
    assert rate.throttle_s(6000, 110.5) == pytest.approx((observed - 6000) / 6000 * 10.5)
    # Old windows fall out.
    assert rate.rate(200.0) == 0.0


def test_throttle_is_capped_at_the_sampled_span() -> None:
    rate = Rate(samples=3, window_s=1.0)
    rate.record(1_000_000, now=0.0)
    assert rate.throttle_s(1, 0.1) == 3.0
