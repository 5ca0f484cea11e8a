"""A decoder for kio's schema dataclasses that bounds every declared length by the bytes left.

kio's native ``entity_reader`` pre-sizes arrays from the declared count and aborts the whole
process (a Rust allocation abort, no exception) on a 5-byte malformed body. Untrusted bytes go
through this walker instead: it reads scalars with kio's bounds-checked primitive readers, and
checks every array count and tagged-field size against the bytes that remain before reading.
Any malformed input raises ``DecodeError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cache
from typing import Any, Final, TypeVar

from kio._kio_native import get_reader
from kio.serial._implicit_defaults import get_tagged_field_default
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
from kio.serial.errors import SerialError
from kio.serial.readers import (
    read_int8,
    read_int32,
    read_legacy_array_length,
    read_nullable_legacy_string,
    read_unsigned_varint,
)
from kio.static.protocol import Entity

E = TypeVar("E", bound=Entity)

MAX_TAGGED_FIELDS: Final = 1024

# kio's reader convention: (buffer, offset) -> (value, bytes consumed).
Read = Callable[[Any, int], tuple[Any, int]]


class DecodeError(ValueError):
    """The bytes do not form a valid message of the expected schema."""


def decode(entity_type: type[E], buf: bytes | memoryview, offset: int = 0) -> tuple[E, int]:
    """Decodes one `entity_type` at `offset`; returns it and the offset just after it."""
    try:
        value, size = _entity_reader(entity_type)(buf, offset)
    except DecodeError:
        raise
    except (SerialError, ValueError, TypeError, OverflowError, UnicodeDecodeError) as exc:
        raise DecodeError(f"malformed {entity_type.__name__}: {exc}") from None
    return value, offset + size


def decode_exact(entity_type: type[E], buf: bytes | memoryview, offset: int = 0) -> E:
    """Decodes `entity_type` and requires it to fill the buffer to its end."""
    value, end = decode(entity_type, buf, offset)
    if end != len(buf):
        raise DecodeError(f"{len(buf) - end} trailing bytes after {entity_type.__name__}")
    return value


def _array_count(flexible: bool) -> Read:
    def read_compact(buf: Any, offset: int) -> tuple[int, int]:
        raw, size = read_unsigned_varint(buf, offset)
        return raw - 1, size  # -1 means null

    return read_compact if flexible else read_legacy_array_length


def _array_reader(item: Read, flexible: bool, nullable: bool) -> Read:
    read_count = _array_count(flexible)

    def read_array(buf: Any, start: int) -> tuple[tuple[Any, ...] | None, int]:
        count, size = read_count(buf, start)
        offset = start + size
        if count < 0:
            if count == -1 and nullable:
                return None, size
            raise DecodeError(f"invalid array length {count}")
        # Every element takes at least one byte, so a count beyond what remains is a lie.
        if count > len(buf) - offset:
            raise DecodeError(f"array of {count} elements in {len(buf) - offset} bytes")
        items = []
        for _ in range(count):
            value, size = item(buf, offset)
            offset += size
            items.append(value)
        return tuple(items), offset - start

    return read_array


def _nullable_entity(read: Read) -> Read:
    def read_nullable(buf: Any, offset: int) -> tuple[Any, int]:
        marker, _ = read_int8(buf, offset)
        if marker < 0:
            return None, 1
        value, size = read(buf, offset + 1)
        return value, size + 1

    return read_nullable


def _field_reader(entity_type: type[Entity], field: dataclasses.Field[Any], is_tag: bool) -> Read:
    flexible = entity_type.__flexible__
    if entity_type.__name__ == "RequestHeader" and field.name == "client_id":
        # Kafka keeps the header's client_id a legacy nullable string even in flexible headers.
        return read_nullable_legacy_string
    optional = False if is_tag else is_optional(field)
    kind = classify_field(field)
    if isinstance(kind, PrimitiveField):
        return get_reader(get_schema_field_type(field), flexible, optional)
    if isinstance(kind, PrimitiveTupleField):
        item = get_reader(get_schema_field_type(field), flexible, False)
        return _array_reader(item, flexible, optional)
    if isinstance(kind, EntityField):
        read = _entity_reader(kind.type_)
        return _nullable_entity(read) if optional else read
    assert isinstance(kind, EntityTupleField)
    return _array_reader(_entity_reader(kind.type_), flexible, optional)


@dataclasses.dataclass(frozen=True, slots=True)
class _TaggedField:
    name: str
    read: Read
    default: Any


def _read_tagged_fields(
    buf: Any, offset: int, tagged: dict[int, _TaggedField], values: dict[str, Any]
) -> int:
    count, used = read_unsigned_varint(buf, offset)
    offset += used
    if count > MAX_TAGGED_FIELDS or count > len(buf) - offset:
        raise DecodeError(f"{count} tagged fields")
    last_tag = -1
    for _ in range(count):
        tag, used = read_unsigned_varint(buf, offset)
        offset += used
        size, used = read_unsigned_varint(buf, offset)
        offset += used
        if tag <= last_tag:
            raise DecodeError("tagged fields out of order")
        last_tag = tag
        end = offset + size
        if end > len(buf):
            raise DecodeError(f"tagged field of {size} bytes past the end")
        known = tagged.get(tag)
        if known is not None:
            value, used = known.read(memoryview(buf)[:end], offset)
            if offset + used != end:
                raise DecodeError(f"tagged field {tag} has {end - offset - used} trailing bytes")
            values[known.name] = value
        offset = end
    return offset


@cache
def _entity_reader(entity_type: type[Entity]) -> Read:
    plain: list[tuple[str, Read]] = []
    tagged: dict[int, _TaggedField] = {}
    for field in dataclasses.fields(entity_type):
        tag = get_field_tag(field)
        read = _field_reader(entity_type, field, tag is not None)
        if tag is None:
            plain.append((field.name, read))
        else:
            tagged[tag] = _TaggedField(field.name, read, get_tagged_field_default(field))
    flexible = entity_type.__flexible__

    def read_entity(buf: Any, start: int) -> tuple[Any, int]:
        values: dict[str, Any] = {}
        offset = start
        for name, read in plain:
            values[name], size = read(buf, offset)
            offset += size
        if flexible:
            for field_tagged in tagged.values():
                values[field_tagged.name] = field_tagged.default
            offset = _read_tagged_fields(buf, offset, tagged, values)
        return entity_type(**values), offset - start

    return read_entity


def read_frame_size(buf: bytes | memoryview) -> int:
    """The signed 32-bit size prefix of a frame."""
    size, _ = read_int32(buf, 0)
    return int(size)
