"""Plugins by name: converters, header converters, transformations and predicates, found by
Kafka's fully qualified class names (`org.apache.kafka.connect.transforms.InsertField$Value`),
their short aliases (`InsertField$Value`, `JsonConverter`, `Json`), registered extra classes
(`register_*`), entry points (groups `strom.connect.converters`, `strom.connect.header_converters`,
`strom.connect.transforms`, `strom.connect.predicates`; the entry point's name is the alias),
and last a Python path (`package.module.Class` or `package.module:Class`).

Connectors are engineer B's runtime's business; this module only resolves the pure plugins.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from strom.connect.errors import ConfigException

_STORAGE = "org.apache.kafka.connect.storage."
_CONVERTERS_PKG = "org.apache.kafka.connect.converters."
_TRANSFORMS = "org.apache.kafka.connect.transforms."
_PREDICATES = "org.apache.kafka.connect.transforms.predicates."

_C = "strom.connect.converters"
_T = "strom.connect.transforms"

# kind -> {name: class or "module:attr"}
_REGISTRY: dict[str, dict[str, Any]] = {
    "converter": {}, "header_converter": {}, "transformation": {}, "predicate": {},
}
_ENTRY_POINT_GROUPS = {
    "converter": "strom.connect.converters",
    "header_converter": "strom.connect.header_converters",
    "transformation": "strom.connect.transforms",
    "predicate": "strom.connect.predicates",
}


def _register(kind: str, target: Any, names: Iterable[str]) -> None:
    for name in names:
        _REGISTRY[kind][name] = target


def _builtin_converters() -> None:
    simple = [
        (_STORAGE + "StringConverter", f"{_C}.simple:StringConverter", "String"),
        (_CONVERTERS_PKG + "ByteArrayConverter", f"{_C}.simple:ByteArrayConverter",
         "ByteArray"),
        (_CONVERTERS_PKG + "IntegerConverter", f"{_C}.simple:IntegerConverter", "Integer"),
        (_CONVERTERS_PKG + "LongConverter", f"{_C}.simple:LongConverter", "Long"),
        (_CONVERTERS_PKG + "ShortConverter", f"{_C}.simple:ShortConverter", "Short"),
        (_CONVERTERS_PKG + "FloatConverter", f"{_C}.simple:FloatConverter", "Float"),
        (_CONVERTERS_PKG + "DoubleConverter", f"{_C}.simple:DoubleConverter", "Double"),
        ("org.apache.kafka.connect.json.JsonConverter", f"{_C}.json_converter:JsonConverter",
         "Json"),
        ("io.confluent.connect.avro.AvroConverter", f"{_C}.registry:AvroConverter", "Avro"),
        ("io.confluent.connect.json.JsonSchemaConverter", f"{_C}.registry:JsonSchemaConverter",
         "JsonSchema"),
        ("io.confluent.connect.protobuf.ProtobufConverter", f"{_C}.registry:ProtobufConverter",
         "Protobuf"),
    ]
    for full, target, pruned in simple:
        short = full.rsplit(".", 1)[1]
        _register("converter", target, (full, short, pruned))
        # Kafka's converters that are also HeaderConverters
        if "registry" not in target:
            _register("header_converter", target, (full, short, pruned))
    _register("header_converter", f"{_C}.header:SimpleHeaderConverter",
              (_STORAGE + "SimpleHeaderConverter", "SimpleHeaderConverter", "Simple"))


_KEY_VALUE_TRANSFORMS = {
    "InsertField": "fields", "ReplaceField": "fields", "MaskField": "fields",
    "HoistField": "fields", "ExtractField": "fields", "Flatten": "fields", "Cast": "cast",
    "TimestampConverter": "timestamps", "HeaderFrom": "headers", "SetSchemaMetadata": "fields",
}
_SINGLE_TRANSFORMS = {
    "ValueToKey": "fields", "RegexRouter": "routing", "Filter": "routing",
    "TimestampRouter": "timestamps", "InsertHeader": "headers", "DropHeaders": "headers",
}


def _builtin_transforms() -> None:
    for name, module in _KEY_VALUE_TRANSFORMS.items():
        for part in ("Key", "Value"):
            target = f"{_T}.{module}:{name}{part}"
            _register("transformation", target, (f"{_TRANSFORMS}{name}${part}",
                                                  f"{name}${part}", f"{name}.{part}"))
    for name, module in _SINGLE_TRANSFORMS.items():
        _register("transformation", f"{_T}.{module}:{name}", (_TRANSFORMS + name, name))
    for name in ("TopicNameMatches", "HasHeaderKey", "RecordIsTombstone"):
        _register("predicate", f"{_T}.predicates:{name}", (_PREDICATES + name, name))
    # Debezium's SMT for change event envelopes (the CDC source's, Debezium's own).
    _register("transformation", f"{_T}.debezium:ExtractNewRecordState",
              ("io.debezium.transforms.ExtractNewRecordState", "ExtractNewRecordState"))


_builtin_converters()
_builtin_transforms()


def _load(target: Any) -> type:
    if isinstance(target, type):
        return target
    module, _, attr = str(target).partition(":")
    loaded = getattr(importlib.import_module(module), attr)
    if not isinstance(loaded, type):
        raise TypeError(f"{target} is not a class")
    return loaded


def _from_entry_points(kind: str, name: str) -> type | None:
    for entry in metadata.entry_points(group=_ENTRY_POINT_GROUPS[kind]):
        if entry.name == name or entry.value.replace(":", ".") == name:
            loaded = entry.load()
            return loaded if isinstance(loaded, type) else None
    return None


def _from_python_path(name: str) -> type | None:
    if ":" in name:
        module, _, attr = name.partition(":")
    elif "." in name:
        module, _, attr = name.rpartition(".")
    else:
        return None
    if module.startswith(("org.apache.kafka.", "io.confluent.")):
        return None
    try:
        loaded = getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return None
    return loaded if isinstance(loaded, type) else None


def lookup(kind: str, name: str | type) -> type:
    """The class of plugin `name` of `kind` (converter, header_converter, transformation,
    predicate); ConfigException when there is none."""
    if not isinstance(name, str):
        if isinstance(name, type):
            return name
        raise ConfigException(f"Not a class name: {name!r}")
    name = name.strip()
    target = _REGISTRY[kind].get(name)
    found = _load(target) if target is not None else None
    if found is None:
        found = _from_entry_points(kind, name) or _from_python_path(name)
    if found is None:
        raise ConfigException(f"Class {name} could not be found.")
    return found


def converter(name: str) -> type:
    return lookup("converter", name)


def header_converter(name: str) -> type:
    return lookup("header_converter", name)


def transformation(name: str) -> type:
    return lookup("transformation", name)


def predicate(name: str) -> type:
    return lookup("predicate", name)


def register_converter(cls: type, *names: str) -> None:
    _register("converter", cls, names or (cls.__module__ + "." + cls.__qualname__,))


def register_header_converter(cls: type, *names: str) -> None:
    _register("header_converter", cls, names or (cls.__module__ + "." + cls.__qualname__,))


def register_transformation(cls: type, *names: str) -> None:
    _register("transformation", cls, names or (cls.__module__ + "." + cls.__qualname__,))


def register_predicate(cls: type, *names: str) -> None:
    _register("predicate", cls, names or (cls.__module__ + "." + cls.__qualname__,))


def names(kind: str) -> list[str]:
    """The registered names of a kind (Kafka's full names first), for connector-plugins."""
    return sorted(_REGISTRY[kind], key=lambda n: (not n.startswith(("org.", "io.")), n))


def full_names(kind: str) -> list[str]:
    """Only the fully qualified (Kafka) class names of a kind."""
    return sorted(n for n in _REGISTRY[kind] if n.startswith(("org.", "io.")))
