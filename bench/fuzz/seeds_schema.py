"""Seed frames generated from kio's request schemas, with random field values.

Like tests/schema_strategies.py this walks kio's dataclass fields, but with a seeded
`random.Random` (hypothesis is for tests, not for generating a million inputs) and a dictionary:
strings are often names that matter to a broker (its internal topics, names at the filesystem's
length limits, the fuzzer's own topics, group and transactional ids seen in recorded traffic),
and integers are mostly small or boundary values, so requests reach handlers rather than being
rejected at the first field.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
import typing
import uuid
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, Final

from kio.schema.errors import ErrorCode
from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    PrimitiveField,
    PrimitiveTupleField,
    classify_field,
    get_field_tag,
    get_schema_field_type,
    is_optional,
)

from bench.fuzz import wire
from strom.protocol.record_builder import build_batch

INTERNAL_NAMES: Final = ("__consumer_offsets", "__transaction_state", "__cluster_metadata",
                         "__share_group_state")
# Topic-name lengths around the limits of a 255-byte file name: Kafka allows 249 characters;
# a partition directory adds "-<p>", a deleted one ".<32 hex>-delete", metadata ".json.tmp".
EDGE_LENGTHS: Final = (1, 200, 209, 213, 214, 220, 240, 246, 247, 248, 249, 250, 255, 300)
ODD_NAMES: Final = ("", ".", "..", "a/b", "a b", "ä☃", "\x00", "topic.with_dot", "topic_with.dot",
                    "-", "x" * 10_000)
INTERESTING_INTS: Final = {
    8: (-128, -1, 0, 1, 127),
    16: (-(2**15), -2, -1, 0, 1, 2**15 - 1, 255, 256),
    32: (-(2**31), -2, -1, 0, 1, 2**31 - 1, 2**16, 65_535, 1_000_000),
    64: (-(2**63), -1, 0, 1, 2**63 - 1, 2**31, 2**32, 2**53),
}
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class Dictionary:
    """Names the generator prefers: fixed edge cases plus what the run learned (topics, ids)."""

    def __init__(self, rng: random.Random, topics: Sequence[str] = (),
                 prefix: str = "") -> None:
        """`prefix` starts every name but the internal topics' (the edge cases keep their
        length: the prefix replaces their first characters)."""
        self.topics = list(topics)
        self.ids: list[str] = []
        self.random_prefix = prefix or "fz-"
        edge = list(ODD_NAMES)
        for n in EDGE_LENGTHS:
            edge.append(rng.choice("aetx") * n)
        if prefix:
            edge = [prefix + name[len(prefix):] for name in edge]
        self.edge = [*INTERNAL_NAMES, *edge]

    def learn(self, topics: Sequence[str], ids: Sequence[str]) -> None:
        self.topics += [t for t in topics if t not in self.topics]
        self.ids += [i for i in ids if i not in self.ids]

    def name(self, rng: random.Random) -> str:
        roll = rng.random()
        if roll < 0.35 and self.topics:
            return rng.choice(self.topics)
        if roll < 0.5 and self.ids:
            return rng.choice(self.ids)
        if roll < 0.75:
            return rng.choice(self.edge)
        return self.random_prefix + "".join(rng.choices("abcdefghij0123456789._-",
                                                         k=rng.randint(1, 12)))


class Generator:
    """Random instances of kio request entities."""

    def __init__(self, rng: random.Random, dictionary: Dictionary) -> None:
        self.rng = rng
        self.dictionary = dictionary

    def int_value(self, bits: int, signed: bool = True) -> int:
        roll = self.rng.random()
        if roll < 0.6:
            value = self.rng.randint(-1 if signed else 0, 8)
        elif roll < 0.85:
            value = self.rng.choice(INTERESTING_INTS[bits])
        else:
            value = self.rng.randint(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if not signed:
            value %= 2**bits
        return value

    def scalar(self, kafka_type: str) -> Any:
        if kafka_type.startswith(("int", "uint")):
            bits = int(kafka_type.removeprefix("u").removeprefix("int"))
            return self.int_value(bits, signed=not kafka_type.startswith("u"))
        maker = self._makers().get(kafka_type)
        if maker is None:
            raise NotImplementedError(kafka_type)
        return maker()

    def _makers(self) -> dict[str, Callable[[], Any]]:
        rng = self.rng
        return {
            "bool": lambda: rng.random() < 0.5,
            "float64": lambda: rng.choice((0.0, 1.0, -1.0, 1e308, rng.random())),
            "string": lambda: self.dictionary.name(rng),
            "bytes": lambda: rng.randbytes(rng.choice((0, 1, 8, 40))),
            "records": self.records,
            "uuid": lambda: uuid.UUID(int=rng.getrandbits(128) or 1),
            "error_code": lambda: rng.choice(list(ErrorCode)),
            "timedelta_i32": lambda: datetime.timedelta(milliseconds=rng.choice(
                (0, 1, 100, 1000, 30_000, 2**31 - 1))),
            "timedelta_i64": lambda: datetime.timedelta(milliseconds=rng.choice(
                (0, 1, 1000, 60_000, 2**40))),
            "datetime_i64": lambda: _EPOCH + datetime.timedelta(milliseconds=rng.choice(
                (0, 1, 2**41))),
        }

    def records(self) -> bytes | None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.1:
            return None
        if roll < 0.2:
            return rng.randbytes(rng.randint(0, 80))
        count = rng.randint(1, 4)
        now = 1_700_000_000_000
        return build_batch([(b"k", rng.randbytes(rng.randint(0, 30)), (), now)
                            for _ in range(count)], compression=rng.choice((0, 0, 1, 2, 3, 4)))

    def field_value(self, field: dataclasses.Field[Any]) -> Any:
        kind = classify_field(field)
        optional = is_optional(field) and get_field_tag(field) is None
        kafka_type = field.metadata.get("kafka_type")
        if optional and kafka_type != "uuid" and self.rng.random() < 0.15:
            return None
        if isinstance(kind, PrimitiveField):
            return self.scalar(get_schema_field_type(field))
        if isinstance(kind, PrimitiveTupleField):
            return tuple(self.scalar(get_schema_field_type(field))
                         for _ in range(self.rng.choice((0, 1, 1, 2, 3))))
        if isinstance(kind, EntityField):
            return self.entity(kind.type_)
        assert isinstance(kind, EntityTupleField)
        return tuple(self.entity(kind.type_) for _ in range(self.rng.choice((0, 1, 1, 2))))

    def entity(self, entity_type: type[Any]) -> Any:
        return entity_type(**{f.name: self.field_value(f) for f in _fields(entity_type)})


@cache
def _fields(entity_type: type[Any]) -> tuple[dataclasses.Field[Any], ...]:
    typing.get_type_hints(entity_type)  # resolves forward references once
    return dataclasses.fields(entity_type)


def schema_frames(versions: dict[int, tuple[int, int]], rng: random.Random,
                  dictionary: Dictionary, per_version: int) -> list[bytes]:
    """`per_version` random requests for every advertised (api key, version) kio knows."""
    generator = Generator(rng, dictionary)
    frames: list[bytes] = []
    for key, (low, high) in sorted(versions.items()):
        for version in range(low, high + 1):
            try:
                cls = wire.schema(key, version)
            except KeyError:
                continue
            for _ in range(per_version):
                frame = _one(generator, cls, rng)
                if frame is not None:
                    frames.append(frame)
    return frames


def _one(generator: Generator, cls: type[Any], rng: random.Random) -> bytes | None:
    for _attempt in range(5):
        try:
            request = generator.entity(cls)
            return wire.encode_frame(request, rng.randint(0, 2**31 - 1))
        except (ValueError, TypeError, OverflowError, NotImplementedError):
            continue  # a value kio cannot encode (e.g. a string too long for its length)
    return None
