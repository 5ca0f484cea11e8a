"""The broker's client quotas: the values (stored by the engine as `quota` metadata records,
so every broker of a cluster enforces the same; reloaded when another broker changes them),
the rates measured per client, and the throttle a request earns (KIP-219: the answer goes out
at once with throttle_time_ms, then the connection is muted that long).

Byte rates count a Produce request's size and a Fetch answer's size against the client's
producer_byte_rate / consumer_byte_rate (a Fetch asks for at most what the quota allows over
its window; a throttled Fetch is answered empty and its bytes are taken back, as in Kafka);
request_percentage counts the time its requests' handlers run on the event loop, not the time
they wait (a Fetch's long poll, a Produce waiting for its write: Kafka's purgatory), 100 being
one thread's whole time; connection_creation_rate counts an IP's new
connections (over it, the connection is closed at once). A sensor is shared by the clients the
quota's entity groups: a user's quota is shared by all the user's client ids, a default one
applies to each user (or client id) separately, as in Kafka.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Final

from strom.broker.versioned_records import VersionedRecords
from strom.config.broker import BrokerConfig
from strom.security.quotas import (
    CLIENT_ID,
    CONNECTION_CREATION_RATE,
    CONSUMER_BYTE_RATE,
    CONTROLLER_MUTATION_RATE,
    PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
    USER,
    Entity,
    QuotaConfig,
    QuotaError,
    Rate,
    entity_from_record,
    record_key,
)
from strom.security.session import Session
from strom.storage.api import StorageEngine

log = logging.getLogger(__name__)

QUOTA_KIND: Final = "quota"
MAX_SENSORS: Final = 100_000


class QuotaRuntime:
    def __init__(self, config: BrokerConfig, engine: StorageEngine) -> None:
        self.engine = engine
        self.quotas = QuotaConfig()
        self.samples = config.get_int("quota.window.num")
        self.window_s = config.get_int("quota.window.size.seconds")
        self._sensors: dict[tuple[str, str | None, str | None], Rate] = {}
        self._ip_sensors: dict[str, Rate] = {}
        self.records = VersionedRecords(engine, QUOTA_KIND,
                                        config.get_int("quota.refresh.interval.ms") / 1000,
                                        self._load)
        self.throttled = 0  # answers that carried a throttle, since start

    @property
    def active(self) -> bool:
        return bool(self.quotas.values)

    async def start(self) -> None:
        await self.records.start()

    async def stop(self) -> None:
        await self.records.stop()

    def _load(self, records: dict[str, str]) -> None:
        values: dict[Entity, dict[str, float]] = {}
        for key, value in records.items():
            try:
                values[entity_from_record(key)] = {k: float(v)
                                                   for k, v in json.loads(value).items()}
            except (QuotaError, ValueError, TypeError, AttributeError) as exc:
                log.warning("ignoring a stored quota: %s", exc)
        self.quotas = QuotaConfig(values)

    async def alter(self, changes: Mapping[Entity, Mapping[str, float | None]]) -> None:
        """Sets (a value) or removes (None) quota values of entities, durably."""
        async with self.records.lock:
            values = {e: dict(v) for e, v in self.quotas.values.items()}
            puts: dict[str, str] = {}
            deletes: list[str] = []
            for entity, ops in changes.items():
                current = values.setdefault(entity, {})
                for key, value in ops.items():
                    if value is None:
                        current.pop(key, None)
                    else:
                        current[key] = value
                if current:
                    puts[record_key(entity)] = json.dumps(current, sort_keys=True)
                else:
                    deletes.append(record_key(entity))
                    del values[entity]
            await self.records.write(puts, deletes)
            self.quotas = QuotaConfig(values)

    # -- measuring -----------------------------------------------------------------------

    def _sensor(self, session: Session, client_id: str, key: str) -> tuple[Rate, float] | None:
        user = session.principal.name if session.principal.type == "User" else None
        found = self.quotas.client_quota(user, client_id, key)
        if found is None:
            return None
        entity, quota = found
        types = {t for t, _ in entity}
        tags = (key, user if USER in types else None,
                client_id if CLIENT_ID in types else None)
        rate = self._sensors.get(tags)
        if rate is None:
            if len(self._sensors) >= MAX_SENSORS:
                self._sensors.clear()
            rate = self._sensors[tags] = Rate(self.samples, self.window_s)
        return rate, quota

    def record(self, session: Session, client_id: str, key: str, amount: float) -> float:
        """Records `amount` (bytes, or handler seconds for request_percentage) for the
        client; returns how long (s) it is to be throttled."""
        found = self._sensor(session, client_id, key)
        if found is None:
            return 0.0
        rate, quota = found
        if key == REQUEST_PERCENTAGE:
            quota = quota / 100.0  # seconds of handler time per second
        now = time.monotonic()
        rate.record(amount, now)
        return rate.throttle_s(quota, now)

    def produce_bytes(self, session: Session, client_id: str, size: int) -> float:
        return self.record(session, client_id, PRODUCER_BYTE_RATE, size)

    def fetch_bytes(self, session: Session, client_id: str, size: int) -> float:
        return self.record(session, client_id, CONSUMER_BYTE_RATE, size)

    def unrecord_fetch_bytes(self, session: Session, client_id: str, size: int) -> None:
        """Takes back a Fetch answer's bytes that were not sent (a throttled Fetch is answered
        empty, as Kafka does)."""
        found = self._sensor(session, client_id, CONSUMER_BYTE_RATE)
        if found is not None:
            found[0].record(-size, time.monotonic())

    def fetch_window_bytes(self, session: Session, client_id: str) -> int | None:
        """The most a client's Fetch may return (None: no consumer_byte_rate applies): what
        its quota allows over the sampled span, so that one answer never earns a throttle
        longer than the quota window (Kafka's getMaxValueInQuotaWindow)."""
        found = self._sensor(session, client_id, CONSUMER_BYTE_RATE)
        if found is None:
            return None
        return max(int(found[1] * (self.samples - 1) * self.window_s), 1)

    def mutations(self, session: Session, client_id: str, strict: bool) -> MutationBudget:
        """The client's controller_mutation_rate for one CreateTopics, CreatePartitions or
        DeleteTopics request (KIP-599): `strict` (the versions that know the error) refuses a
        topic once the rate is over the quota; older versions are only throttled."""
        found = self._sensor(session, client_id, CONTROLLER_MUTATION_RATE)
        return MutationBudget(found, strict)

    def connection_allowed(self, ip: str) -> bool:
        """Records a new connection from `ip`; False when it exceeds the IP's
        connection_creation_rate (the caller closes it)."""
        quota = self.quotas.ip_quota(ip)
        if quota is None:
            return True
        rate = self._ip_sensors.get(ip)
        if rate is None:
            if len(self._ip_sensors) >= MAX_SENSORS:
                self._ip_sensors.clear()
            rate = self._ip_sensors[ip] = Rate(self.samples, self.window_s)
        now = time.monotonic()
        if rate.rate(now) + 1 / rate.span(now) > quota:
            return False
        rate.record(1, now)
        return True


class MutationBudget:
    def __init__(self, sensor: tuple[Rate, float] | None, strict: bool) -> None:
        self.sensor = sensor
        self.strict = strict

    def exceeded(self) -> bool:
        """Whether the next topic is to be refused with THROTTLING_QUOTA_EXCEEDED."""
        if self.sensor is None or not self.strict:
            return False
        rate, quota = self.sensor
        return rate.rate(time.monotonic()) > quota

    def record(self, partitions: int) -> None:
        if self.sensor is not None and partitions > 0:
            self.sensor[0].record(partitions, time.monotonic())


def described(quotas: QuotaConfig, keys: Sequence[str] | None = None
              ) -> dict[Entity, dict[str, float]]:
    return {e: {k: v for k, v in values.items() if keys is None or k in keys}
            for e, values in quotas.values.items()}


__all__ = ("CONNECTION_CREATION_RATE", "QuotaRuntime", "described")
