"""What the fuzzer learns about the broker before it starts: advertised API versions, the
settings its checks depend on, the topics that already exist, and the topics it fuzzes."""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Final

from kio.schema.errors import ErrorCode

from bench.fuzz import calls, seeds_schema, wire
from bench.fuzz.abuse import API_VERSIONS_V3
from bench.fuzz.bomber import BOMB_TOPIC, BOMB_TOPIC_CONFIG
from bench.fuzz.clients import CheckFailed
from bench.fuzz.mutators import Seed
from bench.fuzz.state_checks import PARTITION_KEYS
from bench.fuzz.wire import Client

# Produce frames go to topics no other frame names (so no fuzzed DeleteTopics removes them);
# the dictionary's topics exist at the start too, for other APIs to find.
PRODUCE_TOPICS: Final = [("fuzz-batch-1", 1), ("fuzz-batch-3", 3)]
DICTIONARY_TOPICS: Final = [("fuzz-p1", 1), ("fuzz-p3", 3)]
SETTING_KEYS: Final = [*PARTITION_KEYS.values(), "message.max.decompressed.bytes",
                       "fetch.max.wait.ms.cap", "connections.max.idle.ms"]
DEFAULTS: Final = {"offsets.topic.num.partitions": "50",
                   "transaction.state.log.num.partitions": "50",
                   "message.max.decompressed.bytes": str(256 * 2**20),
                   "fetch.max.wait.ms.cap": "30000",
                   "connections.max.idle.ms": "600000"}


@dataclass
class Target:
    versions: dict[int, tuple[int, int]]
    settings: dict[str, str]
    existing: set[str]

    @property
    def expected_internal(self) -> dict[str, int]:
        return {name: int(self.settings[key]) for name, key in PARTITION_KEYS.items()}

    @property
    def decompressed_max(self) -> int:
        return int(self.settings["message.max.decompressed.bytes"])

    @property
    def idle_timeout_s(self) -> float:
        return int(self.settings["connections.max.idle.ms"]) / 1000

    @property
    def advertised_pairs(self) -> set[tuple[int, int]]:
        return {(k, v) for k, (low, high) in self.versions.items() for v in range(low, high + 1)}

    @property
    def fetch_cap_s(self) -> float:
        return int(self.settings["fetch.max.wait.ms.cap"]) / 1000


def discover(address: tuple[str, int]) -> Target:
    with Client(address) as client:
        answer = client.call(API_VERSIONS_V3)
        versions = {int(k.api_key): (int(k.min_version), int(k.max_version))
                    for k in answer.api_keys}
        settings = dict(DEFAULTS)
        # A broker that does not describe its configs: Kafka's defaults.
        with contextlib.suppress(OSError, CheckFailed, wire.Closed, IndexError):
            settings.update(calls.broker_configs(client, SETTING_KEYS))
        existing = set(calls.metadata(client, None))
    return Target(versions, settings, existing)


def create_fuzz_topics(address: tuple[str, int]) -> None:
    """The topics Produce frames and bombs go to (created, never auto-created)."""
    with Client(address) as client:
        for name, partitions in PRODUCE_TOPICS + DICTIONARY_TOPICS:
            _created(calls.create_topics(client, [name], partitions), name)
        _created(calls.create_topics(client, [BOMB_TOPIC], 1, BOMB_TOPIC_CONFIG), BOMB_TOPIC)


def _created(errors: dict[str, int], name: str) -> None:
    if errors.get(name) not in (ErrorCode.none, ErrorCode.topic_already_exists):
        raise CheckFailed(f"cannot create {name}: {errors}")


def build_seeds(rng: random.Random, target: Target, recorded: list[bytes],
                names: list[str], per_version: int) -> tuple[list[Seed], int]:
    """Schema seeds for every advertised version plus the recorded frames; and how many
    schema seeds there are."""
    dictionary = seeds_schema.Dictionary(rng, [n for n, _ in DICTIONARY_TOPICS])
    dictionary.learn([n for n in names if n.startswith("rec-")], names)
    generated = seeds_schema.schema_frames(target.versions, rng, dictionary, per_version)
    seeds = [s for s in (Seed.of(f, "schema") for f in generated) if s is not None]
    schema_count = len(seeds)
    seeds += [s for s in (Seed.of(f, "recorded") for f in recorded) if s is not None]
    return seeds, schema_count
