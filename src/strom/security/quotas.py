"""Client quotas, Kafka's model: quota values set on entities (a user, a client id, both, their
defaults; an IP address or the default IP), the precedence that picks the one applying to a
request, and the windowed rate that decides how long a client over its quota is throttled
(KIP-13, KIP-124, KIP-219, KIP-599, KIP-612).

Precedence for a (user, client-id) pair, most specific first (Kafka's order):
user+client-id, user+default client-id, user, default user+client-id, default user+default
client-id, default user, client-id, default client-id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

USER: Final = "user"
CLIENT_ID: Final = "client-id"
IP: Final = "ip"
ENTITY_TYPES: Final = (USER, CLIENT_ID, IP)
PRODUCER_BYTE_RATE: Final = "producer_byte_rate"
CONSUMER_BYTE_RATE: Final = "consumer_byte_rate"
REQUEST_PERCENTAGE: Final = "request_percentage"
CONTROLLER_MUTATION_RATE: Final = "controller_mutation_rate"
CONNECTION_CREATION_RATE: Final = "connection_creation_rate"
CLIENT_KEYS: Final = (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE,
                      CONTROLLER_MUTATION_RATE)
IP_KEYS: Final = (CONNECTION_CREATION_RATE,)
WHOLE_NUMBERS: Final = frozenset({PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE,
                                  CONNECTION_CREATION_RATE})

# An entity: (entity type, name) pairs, a None name meaning the type's default.
Entity = tuple[tuple[str, str | None], ...]


class QuotaError(ValueError):
    """An entity or a value Kafka refuses (INVALID_REQUEST); the message says why."""


def entity_of(pairs: Iterable[tuple[str, str | None]]) -> Entity:
    """The canonical (sorted) entity; QuotaError for what Kafka refuses."""
    entity = tuple(sorted(pairs, key=lambda p: p[0]))
    types = [t for t, _ in entity]
    if not entity:
        raise QuotaError("an entity needs at least one of user, client-id, ip")
    if len(set(types)) != len(types):
        raise QuotaError("an entity names each entity type once")
    for kind, name in entity:
        if kind not in ENTITY_TYPES:
            raise QuotaError(f"unknown entity type {kind!r}: use user, client-id or ip")
        if name == "":
            raise QuotaError(f"the {kind} name must not be empty (null means the default)")
    if IP in types and len(types) > 1:
        raise QuotaError("an ip entity cannot be combined with user or client-id")
    return entity


def check_value(entity: Entity, key: str, value: float) -> None:
    allowed = IP_KEYS if entity[0][0] == IP else CLIENT_KEYS
    if key not in allowed:
        raise QuotaError(f"{key!r} is not a quota of {'/'.join(t for t, _ in entity)} "
                         f"entities (use {', '.join(allowed)})")
    if not value > 0:
        raise QuotaError(f"{key} must be positive, not {value}")
    if key in WHOLE_NUMBERS and value != int(value):
        raise QuotaError(f"{key} must be a whole number, not {value}")


def record_key(entity: Entity) -> str:
    return json.dumps([[t, n] for t, n in entity], separators=(",", ":"))


def entity_from_record(key: str) -> Entity:
    try:
        return entity_of((str(t), None if n is None else str(n)) for t, n in json.loads(key))
    except (ValueError, TypeError) as exc:
        raise QuotaError(f"not a quota record: {key!r}") from exc


class QuotaConfig:
    """The quota values in force, by entity."""

    def __init__(self, values: Mapping[Entity, Mapping[str, float]] | None = None) -> None:
        self.values: dict[Entity, dict[str, float]] = {
            e: dict(v) for e, v in (values or {}).items() if v}

    def client_quota(self, user: str | None, client_id: str, key: str
                     ) -> tuple[Entity, float] | None:
        """The entity whose `key` quota applies to a (user, client id), and its value.
        `user` None: an unauthenticated client (Kafka's ANONYMOUS user is still a user)."""
        candidates: list[Entity] = []
        if user is not None:
            candidates += [((CLIENT_ID, client_id), (USER, user)),
                           ((CLIENT_ID, None), (USER, user)),
                           ((USER, user),)]
        candidates += [((CLIENT_ID, client_id), (USER, None)),
                       ((CLIENT_ID, None), (USER, None)),
                       ((USER, None),),
                       ((CLIENT_ID, client_id),),
                       ((CLIENT_ID, None),)]
        for entity in candidates:
            value = self.values.get(entity, {}).get(key)
            if value is not None:
                return entity, value
        return None

    def ip_quota(self, ip: str) -> float | None:
        for entity in (((IP, ip),), ((IP, None),)):
            value = self.values.get(entity, {}).get(CONNECTION_CREATION_RATE)
            if value is not None:
                return value
        return None


@dataclass
class Rate:
    """Kafka's windowed rate: `samples` windows of `window_s`; the rate is what was recorded
    over the live windows divided by their span, which counts as at least samples - 1 full
    windows (so a new client's first burst is measured against ~10 s, not a few ms)."""

    samples: int = 11
    window_s: float = 1.0
    _windows: list[tuple[float, float]] = field(default_factory=list)  # (start, total)

    def record(self, value: float, now: float) -> None:
        if self._windows and now - self._windows[-1][0] < self.window_s:
            start, total = self._windows[-1]
            self._windows[-1] = (start, total + value)
        else:
            self._windows.append((now, value))
        self._purge(now)

    def _purge(self, now: float) -> None:
        horizon = now - self.samples * self.window_s
        while self._windows and self._windows[0][0] + self.window_s <= horizon:
            self._windows.pop(0)

    def span(self, now: float) -> float:
        self._purge(now)
        if not self._windows:
            return (self.samples - 1) * self.window_s
        elapsed = now - self._windows[0][0]
        full = int(elapsed / self.window_s)
        if full < self.samples - 1:
            elapsed += (self.samples - 1 - full) * self.window_s
        return elapsed

    def rate(self, now: float) -> float:
        self._purge(now)
        return sum(total for _, total in self._windows) / self.span(now)

    def throttle_s(self, quota: float, now: float) -> float:
        """How long to hold a client back so its rate comes down to `quota` (Kafka's
        (observed - quota) / quota * window), at most the whole sampled span."""
        observed = self.rate(now)
        if observed <= quota:
            return 0.0
        span = self.span(now)
        return min((observed - quota) / quota * span, self.samples * self.window_s)
