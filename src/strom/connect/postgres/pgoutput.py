"""A decoder of PostgreSQL's `pgoutput` logical replication messages (protocol version 1),
as documented in "Logical Replication Message Formats": Begin, Commit, Origin, Relation, Type,
Insert, Update, Delete, Truncate and Message. Each `decode(payload)` returns one dataclass.

Tuple values are kept as the server sent them: `TEXT` (the type's text output, as bytes),
`NULL`, `UNCHANGED` (an unchanged TOASTed value the server did not send) or `BINARY`.
"""

from __future__ import annotations

import datetime as _dt
import struct
from dataclasses import dataclass, field
from typing import Final

PG_EPOCH: Final = _dt.datetime(2000, 1, 1, tzinfo=_dt.UTC)


class PgOutputError(ValueError):
    """A malformed or unknown pgoutput message."""


def pg_timestamp(micros: int) -> _dt.datetime:
    """A replication timestamp (µs since 2000-01-01 UTC) as an aware datetime."""
    return PG_EPOCH + _dt.timedelta(microseconds=micros)


def pg_timestamp_ms(micros: int) -> int:
    """A replication timestamp as ms since the Unix epoch."""
    return (micros + 946_684_800_000_000) // 1000


def format_lsn(lsn: int) -> str:
    """`0/16B3748`, PostgreSQL's text form of an LSN."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


# Kinds of tuple column values.
NULL: Final = "n"
UNCHANGED: Final = "u"
TEXT: Final = "t"
BINARY: Final = "b"


@dataclass(frozen=True)
class ColumnValue:
    kind: str  # NULL, UNCHANGED, TEXT or BINARY
    data: bytes | None = None

    def text(self) -> str | None:
        return None if self.data is None else self.data.decode("utf-8")


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    commit_ts: int  # µs since 2000-01-01
    xid: int


@dataclass(frozen=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts: int


@dataclass(frozen=True)
class Origin:
    commit_lsn: int
    name: str


@dataclass(frozen=True)
class RelationColumn:
    flags: int  # 1: part of the replica identity
    name: str
    type_oid: int
    type_modifier: int

    @property
    def is_key(self) -> bool:
        return bool(self.flags & 1)


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    replica_identity: str  # d default, n nothing, f full, i index
    columns: tuple[RelationColumn, ...]


@dataclass(frozen=True)
class TypeMessage:
    oid: int
    namespace: str
    name: str


@dataclass(frozen=True)
class Insert:
    relation_oid: int
    new: tuple[ColumnValue, ...]


@dataclass(frozen=True)
class Update:
    relation_oid: int
    new: tuple[ColumnValue, ...]
    old: tuple[ColumnValue, ...] | None = None  # with REPLICA IDENTITY FULL ('O')
    key: tuple[ColumnValue, ...] | None = None  # the old key when it changed ('K')


@dataclass(frozen=True)
class Delete:
    relation_oid: int
    old: tuple[ColumnValue, ...] | None = None
    key: tuple[ColumnValue, ...] | None = None


@dataclass(frozen=True)
class Truncate:
    options: int  # 1 CASCADE, 2 RESTART IDENTITY
    relation_oids: tuple[int, ...] = field(default=())


@dataclass(frozen=True)
class LogicalMessage:
    flags: int
    lsn: int
    prefix: str
    content: bytes


Message = (Begin | Commit | Origin | Relation | TypeMessage | Insert | Update | Delete
           | Truncate | LogicalMessage)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise PgOutputError(f"truncated pgoutput message ({len(self.data)} bytes)")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int8(self) -> int:
        value: int = self.take(1)[0]
        return value

    def int16(self) -> int:
        value: int = struct.unpack(">h", self.take(2))[0]
        return value

    def int32(self) -> int:
        value: int = struct.unpack(">i", self.take(4))[0]
        return value

    def uint32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def int64(self) -> int:
        value: int = struct.unpack(">q", self.take(8))[0]
        return value

    def uint64(self) -> int:
        value: int = struct.unpack(">Q", self.take(8))[0]
        return value

    def string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise PgOutputError("unterminated string in a pgoutput message")
        text = self.data[self.pos:end].decode("utf-8")
        self.pos = end + 1
        return text

    def tuple_data(self) -> tuple[ColumnValue, ...]:
        values = []
        for _ in range(self.int16()):
            kind = chr(self.int8())
            if kind in (NULL, UNCHANGED):
                values.append(ColumnValue(kind))
            elif kind in (TEXT, BINARY):
                values.append(ColumnValue(kind, self.take(self.int32())))
            else:
                raise PgOutputError(f"unknown tuple column kind {kind!r}")
        return tuple(values)


def _begin(r: _Reader) -> Message:
    return Begin(r.uint64(), r.int64(), r.uint32())


def _commit(r: _Reader) -> Message:
    return Commit(r.int8(), r.uint64(), r.uint64(), r.int64())


def _origin(r: _Reader) -> Message:
    return Origin(r.uint64(), r.string())


def _relation(r: _Reader) -> Message:
    oid, namespace, name = r.uint32(), r.string(), r.string()
    identity = chr(r.int8())
    columns = tuple(RelationColumn(r.int8(), r.string(), r.uint32(), r.int32())
                    for _ in range(r.int16()))
    return Relation(oid, namespace, name, identity, columns)


def _type(r: _Reader) -> Message:
    return TypeMessage(r.uint32(), r.string(), r.string())


def _insert(r: _Reader) -> Message:
    oid = r.uint32()
    if chr(r.int8()) != "N":
        raise PgOutputError("Insert without a new tuple")
    return Insert(oid, r.tuple_data())


def _update(r: _Reader) -> Message:
    oid = r.uint32()
    old = key = None
    kind = chr(r.int8())
    if kind == "K":
        key = r.tuple_data()
        kind = chr(r.int8())
    elif kind == "O":
        old = r.tuple_data()
        kind = chr(r.int8())
    if kind != "N":
        raise PgOutputError(f"Update without a new tuple ({kind!r})")
    return Update(oid, r.tuple_data(), old, key)


def _delete(r: _Reader) -> Message:
    oid = r.uint32()
    kind = chr(r.int8())
    if kind == "K":
        return Delete(oid, key=r.tuple_data())
    if kind == "O":
        return Delete(oid, old=r.tuple_data())
    raise PgOutputError(f"Delete without an old tuple ({kind!r})")


def _truncate(r: _Reader) -> Message:
    count = r.int32()
    options = r.int8()
    return Truncate(options, tuple(r.uint32() for _ in range(count)))


def _logical_message(r: _Reader) -> Message:
    flags, lsn, prefix = r.int8(), r.uint64(), r.string()
    return LogicalMessage(flags, lsn, prefix, r.take(r.int32()))


_DECODERS: Final = {"B": _begin, "C": _commit, "O": _origin, "R": _relation, "Y": _type,
                    "I": _insert, "U": _update, "D": _delete, "T": _truncate,
                    "M": _logical_message}


def decode(payload: bytes) -> Message:
    """One pgoutput message."""
    if not payload:
        raise PgOutputError("empty pgoutput message")
    r = _Reader(bytes(payload))
    tag = chr(r.int8())
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise PgOutputError(f"unknown pgoutput message type {tag!r}")
    return decoder(r)


# -- encoding, for tests and tools ----------------------------------------------------------

def _string(text: str) -> bytes:
    return text.encode("utf-8") + b"\0"


def encode_tuple(values: tuple[ColumnValue, ...] | list[ColumnValue]) -> bytes:
    out = struct.pack(">h", len(values))
    for v in values:
        out += v.kind.encode()
        if v.kind in (TEXT, BINARY):
            data = v.data or b""
            out += struct.pack(">i", len(data)) + data
    return out


def _encode_relation(m: Relation) -> bytes:
    out = (b"R" + struct.pack(">I", m.oid) + _string(m.namespace) + _string(m.name)
           + m.replica_identity.encode() + struct.pack(">h", len(m.columns)))
    for c in m.columns:
        out += (struct.pack(">B", c.flags) + _string(c.name)
                + struct.pack(">Ii", c.type_oid, c.type_modifier))
    return out


def _encode_update(m: Update) -> bytes:
    out = b"U" + struct.pack(">I", m.relation_oid)
    if m.key is not None:
        out += b"K" + encode_tuple(m.key)
    elif m.old is not None:
        out += b"O" + encode_tuple(m.old)
    return out + b"N" + encode_tuple(m.new)


def _encode_delete(m: Delete) -> bytes:
    out = b"D" + struct.pack(">I", m.relation_oid)
    if m.key is not None:
        return out + b"K" + encode_tuple(m.key)
    return out + b"O" + encode_tuple(m.old or ())


def encode(message: Message) -> bytes:
    """The pgoutput bytes of `message` (the inverse of `decode`)."""
    m = message
    if isinstance(m, Relation):
        return _encode_relation(m)
    if isinstance(m, Update):
        return _encode_update(m)
    if isinstance(m, Delete):
        return _encode_delete(m)
    if isinstance(m, Begin):
        return b"B" + struct.pack(">QqI", m.final_lsn, m.commit_ts, m.xid)
    if isinstance(m, Commit):
        return b"C" + struct.pack(">BQQq", m.flags, m.commit_lsn, m.end_lsn, m.commit_ts)
    if isinstance(m, Origin):
        return b"O" + struct.pack(">Q", m.commit_lsn) + _string(m.name)
    if isinstance(m, TypeMessage):
        return b"Y" + struct.pack(">I", m.oid) + _string(m.namespace) + _string(m.name)
    if isinstance(m, Insert):
        return b"I" + struct.pack(">I", m.relation_oid) + b"N" + encode_tuple(m.new)
    if isinstance(m, Truncate):
        return (b"T" + struct.pack(">iB", len(m.relation_oids), m.options)
                + b"".join(struct.pack(">I", oid) for oid in m.relation_oids))
    return (b"M" + struct.pack(">BQ", m.flags, m.lsn) + _string(m.prefix)
            + struct.pack(">i", len(m.content)) + m.content)
