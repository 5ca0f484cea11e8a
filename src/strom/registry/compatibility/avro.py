"""Avro schema resolution (the specification's rules, as Avro's Java
ReaderWriterCompatibilityChecker applies them and Confluent reports them).

Reader and writer match when: both are the same primitive; the writer's int, long or float is
promoted (int -> long, float, double; long -> float, double; float -> double); string and
bytes read each other; records, enums and fixed have the same unqualified name or a reader
alias naming the writer's full name; every reader field is in the writer (by name or alias) or
has a default; every writer enum symbol is in the reader or the reader has a default symbol;
fixed sizes are equal; every branch of a writer union is readable; a non-union writer matches
some branch of a reader union. Logical types are not compared (Avro does not either).
"""

from __future__ import annotations

from typing import Any

from strom.registry.compatibility.base import Incompatibility
from strom.registry.schemas.avro import PRIMITIVES, AvroSchema

_PROMOTIONS = {
    "long": {"int"},
    "float": {"int", "long"},
    "double": {"int", "long", "float"},
    "string": {"bytes"},
    "bytes": {"string"},
}


def _kind(node: Any) -> str:
    if isinstance(node, list):
        return "union"
    if isinstance(node, str):
        return node
    kind: str = node["type"]  # fastavro's form: always a name here
    return "record" if kind == "error" else kind


def _aliases(node: dict[str, Any]) -> set[str]:
    namespace = node["name"].rpartition(".")[0]
    return {a if "." in a or not namespace else f"{namespace}.{a}" for a in node.get("aliases", [])}


class _Checker:
    def __init__(self, reader: AvroSchema, writer: AvroSchema, new_is_reader: bool) -> None:
        self.reader = reader
        self.writer = writer
        self.names = ("new", "old") if new_is_reader else ("old", "new")
        self.in_progress: set[tuple[int, int]] = set()

    def fail(self, kind: str, path: list[str], info: str, field: str = "") -> Incompatibility:
        at = "/" + "/".join(path)
        reader, writer = self.names
        descriptions = {
            "NAME_MISMATCH": f"The name of the schema has changed (path '{at}')",
            "FIXED_SIZE_MISMATCH": f"The size of FIXED type field at path '{at}' in the {reader} "
                                   f"schema does not match with the {writer} schema",
            "MISSING_ENUM_SYMBOLS": f"The {reader} schema is missing enum symbols '{info}' at "
                                    f"path '{at}' in the {writer} schema",
            "READER_FIELD_MISSING_DEFAULT_VALUE": f"The field '{field}' at path '{at}' in the "
                                                  f"{reader} schema has no default value and is "
                                                  f"missing in the {writer} schema",
            "TYPE_MISMATCH": f"The type (path '{at}') of a field in the {reader} schema does not "
                             f"match with the {writer} schema",
            "MISSING_UNION_BRANCH": f"The {reader} schema is missing a type inside a union field "
                                    f"at path '{at}' in the {writer} schema",
        }
        return Incompatibility(kind, at, descriptions[kind], info)

    def check(self, r: Any, w: Any, path: list[str]) -> list[Incompatibility]:
        r, w = self.reader.resolve(r), self.writer.resolve(w)
        key = (id(r), id(w))
        if key in self.in_progress:
            return []  # a recursive type: compatible unless shown otherwise further up
        self.in_progress.add(key)
        try:
            return self.compare(r, w, path)
        finally:
            self.in_progress.discard(key)

    def compare(self, r: Any, w: Any, path: list[str]) -> list[Incompatibility]:
        rk, wk = _kind(r), _kind(w)
        if rk == wk:
            return self.same_kind(rk, r, w, path)
        if wk == "union":
            return [item for branch in w for item in self.check(r, branch, path)]
        if rk == "union":
            if any(not self.check(branch, w, path) for branch in r):
                return []
            return [self.fail("MISSING_UNION_BRANCH", path,
                              f"reader union lacking writer type: {wk.upper()}")]
        if wk in _PROMOTIONS.get(rk, ()):
            return []
        return [self.fail("TYPE_MISMATCH", path,
                          f"reader type: {rk.upper()} not compatible with writer type: "
                          f"{wk.upper()}")]

    def same_kind(self, kind: str, r: Any, w: Any, path: list[str]) -> list[Incompatibility]:
        if kind in PRIMITIVES:
            return []
        if kind == "array":
            return self.check(r["items"], w["items"], [*path, "items"])
        if kind == "map":
            return self.check(r["values"], w["values"], [*path, "values"])
        if kind == "union":
            out = []
            for index, branch in enumerate(w):
                if self.check(r, branch, [*path, str(index)]):
                    out.append(self.fail("MISSING_UNION_BRANCH", [*path, str(index)],
                                         f"reader union lacking writer type: "
                                         f"{_kind(self.writer.resolve(branch)).upper()}"))
            return out
        out = self.names_match(r, w, path)
        if kind == "record":
            out += self.fields(r, w, path)
        elif kind == "enum":
            out += self.symbols(r, w, path)
        elif r["size"] != w["size"]:
            out.append(self.fail("FIXED_SIZE_MISMATCH", [*path, "size"],
                                 f"expected: {w['size']}, found: {r['size']}"))
        return out

    def names_match(self, r: Any, w: Any, path: list[str]) -> list[Incompatibility]:
        if r["name"].rpartition(".")[2] == w["name"].rpartition(".")[2]:
            return []
        if w["name"] in _aliases(r):
            return []
        return [self.fail("NAME_MISMATCH", [*path, "name"], f"expected: {w['name']}")]

    def fields(self, r: Any, w: Any, path: list[str]) -> list[Incompatibility]:
        out = []
        writer_fields = {f["name"]: f for f in w["fields"]}
        for index, field in enumerate(r["fields"]):
            at = [*path, "fields", str(index)]
            match = writer_fields.get(field["name"])
            for alias in field.get("aliases", []):
                match = match or writer_fields.get(alias)
            if match is None:
                if "default" not in field:
                    out.append(self.fail("READER_FIELD_MISSING_DEFAULT_VALUE", at,
                                         field["name"], field=field["name"]))
            else:
                out += self.check(field["type"], match["type"], [*at, "type"])
        return out

    def symbols(self, r: Any, w: Any, path: list[str]) -> list[Incompatibility]:
        missing = sorted(set(w["symbols"]) - set(r["symbols"]))
        if not missing or r.get("default") in r["symbols"]:
            return []
        listed = "[" + ", ".join(missing) + "]"
        return [self.fail("MISSING_ENUM_SYMBOLS", [*path, "symbols"], listed)]


def avro_incompatibilities(reader: AvroSchema, writer: AvroSchema,
                           new_is_reader: bool) -> list[Incompatibility]:
    """Why `reader` cannot read what `writer` wrote ([] when it can)."""
    return _Checker(reader, writer, new_is_reader).check(reader.parsed, writer.parsed, [])
