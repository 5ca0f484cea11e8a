"""Mutators of request frames (the bytes after the size prefix), stacked 1-5 at a time.

Byte level: bit flips, byte sets, insertions, deletions, truncation, splices with another seed,
interesting integers. Structure aware, from what a Kafka request looks like: plausible int16 and
int32 lengths/counts set huge or negative, compact (varint) lengths replaced by 5- or 10-byte
varints, tagged-field sections abused (repeated, out of order, count 2^32-1, size past the end,
1,025 tags), and the request header (api key, version, correlation id, client-id length).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from strom.protocol.messages import request_type

INT16_ABUSE: Final = (0x7FFF, -0x8000, -1, -2, 0x4000)
INT32_ABUSE: Final = (0x7FFFFFFF, -0x80000000, -1, -2, 0x10000000, 1 << 24)
INTERESTING: Final = {
    1: (0x00, 0x01, 0x7F, 0x80, 0xFF),
    2: (0x0000, 0x0001, 0x7FFF, 0x8000, 0xFFFF),
    4: (0x00000000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x00010000),
    8: (0, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 0xFFFFFFFFFFFFFFFF),
}
UNKNOWN_KEYS: Final = (-32768, -1, 4, 5, 6, 7, 17, 36, 93, 1000, 32767)


@dataclass(frozen=True, slots=True)
class Seed:
    """An unmutated request (without size prefix) and where its header ends."""

    body: bytes
    origin: str  # "schema", "recorded", "produce"
    api_key: int
    version: int
    flexible: bool
    client_end: int  # offset just after the client id (where a v2 header's tags start)

    @classmethod
    def of(cls, frame: bytes, origin: str) -> Seed | None:
        """From a frame with its size prefix; None if it has no readable header."""
        body = frame[4:]
        if len(body) < 10:
            return None
        key, version, _cid, client_len = struct.unpack_from(">hhih", body, 0)
        schema = request_type(key, version)
        flexible = bool(schema is not None and schema.__flexible__)
        return cls(body, origin, key, version, flexible, 10 + max(client_len, 0))


def uvarint(value: int, width: int | None = None) -> bytes:
    """Unsigned varint of `value`; with `width`, padded to exactly that many bytes (a valid but
    non-minimal encoding) when the value fits."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value or (width is not None and len(out) + 1 < width):
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_uvarint(data: bytes | bytearray, pos: int = 0) -> tuple[int, int]:
    """(value, bytes used) of the unsigned varint at `pos`."""
    value = shift = 0
    for i in range(pos, min(len(data), pos + 10)):
        value |= (data[i] & 0x7F) << shift
        shift += 7
        if not data[i] & 0x80:
            return value, i - pos + 1
    raise ValueError("varint runs past the end or beyond 10 bytes")


Mutator = Callable[[random.Random, bytearray, Seed, Sequence[Seed]], bytearray]


def bit_flip(rng: random.Random, data: bytearray, _s: Seed, _o: Sequence[Seed]) -> bytearray:
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return data


def byte_set(rng: random.Random, data: bytearray, _s: Seed, _o: Sequence[Seed]) -> bytearray:
    for _ in range(rng.randint(1, 4)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return data


def insert(rng: random.Random, data: bytearray, _s: Seed, _o: Sequence[Seed]) -> bytearray:
    pos = rng.randint(0, len(data))
    chunk = rng.randbytes(rng.randint(1, 64)) if rng.random() < 0.5 else (
        bytes([rng.randrange(256)]) * rng.randint(1, 300))
    return data[:pos] + chunk + data[pos:]


def delete(rng: random.Random, data: bytearray, _s: Seed, _o: Sequence[Seed]) -> bytearray:
    if len(data) < 2:
        return data
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.randint(1, 32))
    return data[:start] + data[end:]


def truncate(rng: random.Random, data: bytearray, _s: Seed, _o: Sequence[Seed]) -> bytearray:
    return data[:rng.randint(0, len(data))]


def splice(rng: random.Random, data: bytearray, _s: Seed, others: Sequence[Seed]) -> bytearray:
    if not others:
        return data
    other = rng.choice(others).body
    return data[:rng.randint(0, len(data))] + other[rng.randint(0, len(other)):]


def interesting_int(rng: random.Random, data: bytearray, _s: Seed,
                    _o: Sequence[Seed]) -> bytearray:
    width = rng.choice((1, 2, 4, 8))
    if len(data) < width:
        return data
    pos = rng.randint(0, len(data) - width)
    data[pos:pos + width] = rng.choice(INTERESTING[width]).to_bytes(width, "big")
    return data


def _length_positions(data: bytes | bytearray, width: int, start: int) -> list[int]:
    """Where an int of `width` bytes could be a length or count: small, non-negative and not
    larger than what follows."""
    fmt = ">h" if width == 2 else ">i"
    found = []
    for pos in range(start, len(data) - width + 1):
        (value,) = struct.unpack_from(fmt, data, pos)
        if 0 < value <= len(data) - pos - width:
            found.append(pos)
    return found


def int_length(rng: random.Random, data: bytearray, seed: Seed,
               _o: Sequence[Seed]) -> bytearray:
    """A plausible int16 or int32 length/count set huge or negative."""
    width = rng.choice((2, 4))
    positions = _length_positions(data, width, min(8, len(data)))
    if not positions:
        return data
    pos = rng.choice(positions)
    value = rng.choice(INT16_ABUSE if width == 2 else INT32_ABUSE)
    data[pos:pos + width] = value.to_bytes(width, "big", signed=True)
    return data


def varint_length(rng: random.Random, data: bytearray, seed: Seed,
                  _o: Sequence[Seed]) -> bytearray:
    """A byte that could be a compact length (N+1, not past the end) becomes a 5- or 10-byte
    varint: the same value padded, or 2^32-1 / 2^64-1."""
    start = min(seed.client_end, len(data))
    positions = [p for p in range(start, len(data)) if 0 < data[p] < 0x80
                 and data[p] - 1 <= len(data) - p - 1]
    if not positions:
        return data
    pos = rng.choice(positions)
    return data[:pos] + varint_replacement(rng, data[pos]) + data[pos + 1:]


def varint_replacement(rng: random.Random, value: int) -> bytes:
    return rng.choice((uvarint(value, 5), uvarint(value, 10), uvarint(2**32 - 1),
                       uvarint(2**64 - 1), uvarint(2**35 - 1), uvarint(0, 10)))


def tag_sections(rng: random.Random) -> bytes:
    """One abusive tagged-field section (count, then tag/size/data triples)."""
    one = b"\x00\x01A"
    choices = (
        b"\x02" + one + one,  # the same tag twice
        b"\x02\x05\x01A\x01\x01A",  # out of order
        uvarint(2**32 - 1),  # count 2^32-1
        b"\x01\x00" + uvarint(1000) + b"AA",  # size past the end
        uvarint(1025) + b"".join(uvarint(i) + b"\x00" for i in range(1025)),  # many tags
        b"\x01" + uvarint(2**32 - 1) + b"\x00",  # huge tag number
        b"\x01\x00" + uvarint(2**64 - 1),  # 10-byte size
        b"\x01" + bytes([rng.randrange(4)]) + b"\x04" + rng.randbytes(4),  # a real tag, junk
        uvarint(0, 5),  # zero tags, non-minimal count
    )
    return rng.choice(choices)


def tagged_fields(rng: random.Random, data: bytearray, seed: Seed,
                  _o: Sequence[Seed]) -> bytearray:
    """For flexible requests: the header's tag section, the body's last one, or any 0x00 byte
    (a likely empty tag section) replaced by an abusive section."""
    if not seed.flexible or len(data) <= seed.client_end:
        return data
    roll = rng.random()
    if roll < 0.4 and data[seed.client_end] == 0:
        pos = seed.client_end
    elif roll < 0.7 and data[-1] == 0:
        pos = len(data) - 1
    else:
        zeros = [p for p in range(seed.client_end, len(data)) if data[p] == 0]
        if not zeros:
            return data
        pos = rng.choice(zeros)
    return data[:pos] + tag_sections(rng) + data[pos + 1:]


def header(rng: random.Random, data: bytearray, seed: Seed, _o: Sequence[Seed]) -> bytearray:
    """Api key, version, correlation id or client-id length changed; the body is kept."""
    if len(data) < 10:
        return data
    what = rng.randrange(5)
    if what == 0:
        struct.pack_into(">h", data, 0, rng.choice((*UNKNOWN_KEYS, seed.api_key ^ 1, 0, 3)))
    elif what == 1:
        struct.pack_into(">h", data, 2, rng.choice((-1, -32768, 32767, seed.version + 1,
                                                    seed.version - 1, rng.randrange(20))))
    elif what == 2:
        struct.pack_into(">i", data, 4, rng.choice((-1, -(2**31), 0, 2**31 - 1)))
    elif what == 3:
        length = seed.client_end - 10
        struct.pack_into(">h", data, 8, rng.choice((-2, -1, 0x7FFF, -0x8000, length + 1,
                                                    length - 1, 0, len(data))))
    else:
        bad = rng.choice((b"\xff\xfe", b"\xc3", b"\x00" * 3, b"\xed\xa0\x80"))
        data = data[:8] + struct.pack(">h", len(bad)) + bad + data[seed.client_end:]
    return data


GENERIC: Final[dict[str, Mutator]] = {
    "bit_flip": bit_flip, "byte_set": byte_set, "insert": insert, "delete": delete,
    "truncate": truncate, "splice": splice, "interesting_int": interesting_int,
    "int_length": int_length, "varint_length": varint_length, "tagged_fields": tagged_fields,
}
WEIGHTS: Final = {"bit_flip": 3, "byte_set": 2, "insert": 1, "delete": 1, "truncate": 1,
                  "splice": 1, "interesting_int": 2, "int_length": 3, "varint_length": 2,
                  "tagged_fields": 2}


def mutate(rng: random.Random, seed: Seed, others: Sequence[Seed], stack: int,
           first: str | None = None) -> tuple[bytes, list[str]]:
    """`stack` mutators applied in turn (the first one given, if any); the result and names."""
    names = list(GENERIC)
    weights = [WEIGHTS[n] for n in names]
    chosen = ([first] if first else []) + rng.choices(names, weights, k=stack - bool(first))
    data = bytearray(seed.body)
    for name in chosen:
        mutator = header if name == "header" else GENERIC[name]
        data = mutator(rng, data, seed, others)
    return bytes(data), chosen
