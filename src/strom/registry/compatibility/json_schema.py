"""JSON Schema compatibility as Confluent's SchemaDiff (io.confluent.kafka.schemaregistry.json.diff)
computes it: the differences between an original and an updated schema, each of a
Difference.Type that is either a compatible change or not.

BACKWARD compares original = the old schema, update = the new one (the new schema must accept
whatever the old one did); FORWARD the other way round. In both the writer's schema is the
original and the reader's the update.

Content models, as Confluent: an object is *open* when it allows any additional property
(no "additionalProperties" or true, no "patternProperties"), *partially open* when additional
properties must match a schema (or patterns), *closed* when "additionalProperties" is false.
Adding a property to an open model is incompatible (old data may hold it with any type);
removing one from a closed model is too.
"""

from __future__ import annotations

from typing import Any

from strom.registry.compatibility.base import Incompatibility
from strom.registry.schemas.json_schema import JsonSchema

COMPATIBLE_CHANGES = frozenset([
    "ID_CHANGED", "DESCRIPTION_CHANGED", "TITLE_CHANGED", "DEFAULT_CHANGED", "SCHEMA_ADDED",
    "SCHEMA_REMOVED", "TYPE_EXTENDED", "MAX_LENGTH_INCREASED", "MAX_LENGTH_REMOVED",
    "MIN_LENGTH_DECREASED", "MIN_LENGTH_REMOVED", "PATTERN_REMOVED", "MAXIMUM_INCREASED",
    "MAXIMUM_REMOVED", "MINIMUM_DECREASED", "MINIMUM_REMOVED", "EXCLUSIVE_MAXIMUM_INCREASED",
    "EXCLUSIVE_MAXIMUM_REMOVED", "EXCLUSIVE_MINIMUM_DECREASED", "EXCLUSIVE_MINIMUM_REMOVED",
    "MULTIPLE_OF_REDUCED", "MULTIPLE_OF_REMOVED", "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED",
    "REQUIRED_ATTRIBUTE_REMOVED", "DEPENDENCY_ARRAY_NARROWED", "DEPENDENCY_ARRAY_REMOVED",
    "DEPENDENCY_SCHEMA_REMOVED", "MAX_PROPERTIES_INCREASED", "MAX_PROPERTIES_REMOVED",
    "MIN_PROPERTIES_DECREASED", "MIN_PROPERTIES_REMOVED", "ADDITIONAL_PROPERTIES_ADDED",
    "ADDITIONAL_PROPERTIES_EXTENDED", "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL",
    "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL",
    "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
    "PROPERTY_WITH_FALSE_ADDED_TO_CLOSED_CONTENT_MODEL",
    "PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL",
    "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "MAX_ITEMS_INCREASED",
    "MAX_ITEMS_REMOVED", "MIN_ITEMS_DECREASED", "MIN_ITEMS_REMOVED", "UNIQUE_ITEMS_REMOVED",
    "ADDITIONAL_ITEMS_ADDED", "ADDITIONAL_ITEMS_EXTENDED",
    "ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL", "ITEM_ADDED_TO_CLOSED_CONTENT_MODEL",
    "ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL", "ENUM_ARRAY_EXTENDED", "COMBINED_TYPE_EXTENDED",
    "PRODUCT_TYPE_NARROWED", "SUM_TYPE_EXTENDED", "NOT_TYPE_NARROWED",
])

_COMBINERS = ("oneOf", "anyOf", "allOf")
# keyword, Difference.Type prefix, whether a larger value accepts more
_LIMITS = [
    ("maxLength", "MAX_LENGTH", True), ("minLength", "MIN_LENGTH", False),
    ("maximum", "MAXIMUM", True), ("minimum", "MINIMUM", False),
    ("exclusiveMaximum", "EXCLUSIVE_MAXIMUM", True),
    ("exclusiveMinimum", "EXCLUSIVE_MINIMUM", False),
    ("maxProperties", "MAX_PROPERTIES", True), ("minProperties", "MIN_PROPERTIES", False),
    ("maxItems", "MAX_ITEMS", True), ("minItems", "MIN_ITEMS", False),
]
_ALL_TYPES = frozenset(["null", "boolean", "object", "array", "number", "string", "integer"])


def _is_empty(schema: Any) -> bool:
    return schema is True or schema == {}


def _types(schema: dict[str, Any]) -> frozenset[str]:
    kind = schema.get("type")
    if kind is None:
        return _ALL_TYPES
    return frozenset([kind] if isinstance(kind, str) else kind)


def _covers(wide: frozenset[str], narrow: frozenset[str]) -> bool:
    return all(t in wide or (t == "integer" and "number" in wide) for t in narrow)


class _Diff:
    def __init__(self, original: JsonSchema, update: JsonSchema) -> None:
        self.original = original
        self.update = update
        self.found: list[tuple[str, str]] = []
        self.in_progress: set[tuple[int, int]] = set()

    def add(self, kind: str, path: str) -> None:
        self.found.append((kind, path))

    def deref(self, node: Any, side: JsonSchema) -> Any:
        seen = 0
        while isinstance(node, dict) and isinstance(node.get("$ref"), str) and seen < 32:
            node = side.resolve_ref(node["$ref"], side.value)
            seen += 1
        return node

    def compatible(self, o: Any, u: Any, path: str) -> bool:
        """Whether comparing o and u finds only compatible changes (nothing recorded)."""
        probe = _Diff(self.original, self.update)
        probe.in_progress = set(self.in_progress)
        probe.compare(o, u, path)
        return all(kind in COMPATIBLE_CHANGES for kind, _ in probe.found)

    def compare(self, o: Any, u: Any, path: str) -> None:
        o, u = self.deref(o, self.original), self.deref(u, self.update)
        key = (id(o), id(u))
        if key in self.in_progress:
            return
        self.in_progress.add(key)
        try:
            self.compare_resolved(o, u, path)
        finally:
            self.in_progress.discard(key)

    def compare_resolved(self, o: Any, u: Any, path: str) -> None:
        if o is False or u is False:
            if o is not u:  # false accepts nothing: to it everything is wider
                self.add("TYPE_EXTENDED" if o is False else "TYPE_NARROWED", path)
            return
        o, u = ({} if o is True else o), ({} if u is True else u)
        combined = any(k in o for k in _COMBINERS) or any(k in u for k in _COMBINERS)
        if combined and self.combined(o, u, path):
            return
        o_types, u_types = _types(o), _types(u)
        if not self.types(o_types, u_types, path):
            return
        self.annotations(o, u, path)
        self.limits(o, u, path)
        self.enum(o, u, path)
        if "not" in o or "not" in u:
            self.negation(o, u, path)
        if o_types & u_types & {"object"}:
            self.objects(o, u, path)
        if o_types & u_types & {"array"}:
            self.arrays(o, u, path)

    def types(self, o: frozenset[str], u: frozenset[str], path: str) -> bool:
        """Compare the "type"s; False when they changed (nothing more to compare)."""
        if o == u:
            return True
        if _covers(u, o):
            self.add("TYPE_EXTENDED", path)
        elif _covers(o, u):
            self.add("TYPE_NARROWED", path)
        else:
            self.add("TYPE_CHANGED", path)
            return False
        return True

    def annotations(self, o: dict[str, Any], u: dict[str, Any], path: str) -> None:
        for key, kind in (("$id", "ID"), ("title", "TITLE"), ("description", "DESCRIPTION"),
                          ("default", "DEFAULT")):
            if o.get(key) != u.get(key):
                self.add(f"{kind}_CHANGED", path)
        if o.get("pattern") != u.get("pattern"):
            if "pattern" not in o:
                self.add("PATTERN_ADDED", path)
            elif "pattern" not in u:
                self.add("PATTERN_REMOVED", path)
            else:
                self.add("PATTERN_CHANGED", path)
        self.multiple_of(o.get("multipleOf"), u.get("multipleOf"), path)

    def multiple_of(self, o: Any, u: Any, path: str) -> None:
        if o == u:
            return
        if o is None:
            self.add("MULTIPLE_OF_ADDED", path)
        elif u is None:
            self.add("MULTIPLE_OF_REMOVED", path)
        elif (u / o) == int(u / o):
            self.add("MULTIPLE_OF_EXPANDED", path)
        elif (o / u) == int(o / u):
            self.add("MULTIPLE_OF_REDUCED", path)
        else:
            self.add("MULTIPLE_OF_CHANGED", path)

    def limits(self, o: dict[str, Any], u: dict[str, Any], path: str) -> None:
        for key, name, larger_accepts_more in _LIMITS:
            a, b = o.get(key), u.get(key)
            if a == b:
                continue
            if a is None:
                self.add(f"{name}_ADDED", path)
            elif b is None:
                self.add(f"{name}_REMOVED", path)
            elif (b > a) == larger_accepts_more:
                self.add(f"{name}_INCREASED" if larger_accepts_more else f"{name}_DECREASED", path)
            else:
                self.add(f"{name}_DECREASED" if larger_accepts_more else f"{name}_INCREASED", path)

    def enum(self, o: dict[str, Any], u: dict[str, Any], path: str) -> None:
        a = o.get("enum", [o["const"]] if "const" in o else None)
        b = u.get("enum", [u["const"]] if "const" in u else None)
        if a == b:
            return
        if a is None:
            self.add("ENUM_ARRAY_NARROWED", path)
        elif b is None or all(x in b for x in a):
            self.add("ENUM_ARRAY_EXTENDED", path)
        elif all(x in a for x in b):
            self.add("ENUM_ARRAY_NARROWED", path)
        else:
            self.add("ENUM_ARRAY_CHANGED", path)

    def negation(self, o: dict[str, Any], u: dict[str, Any], path: str) -> None:
        if "not" not in u:
            self.add("NOT_TYPE_NARROWED", path)
        elif "not" not in o:
            self.add("NOT_TYPE_EXTENDED", path)
        elif o["not"] != u["not"]:
            # not A -> not B accepts more when B accepts less than A
            narrowed = self.compatible(u["not"], o["not"], f"{path}/not")
            self.add("NOT_TYPE_NARROWED" if narrowed else "NOT_TYPE_EXTENDED", path)

    def combined(self, o: dict[str, Any], u: dict[str, Any], path: str) -> bool:
        """Compare oneOf/anyOf/allOf; True when nothing more is to compare."""
        o_key = next((k for k in _COMBINERS if k in o), None)
        u_key = next((k for k in _COMBINERS if k in u), None)
        if o_key is None and u_key in ("oneOf", "anyOf"):
            ok = any(self.compatible(o, branch, path) for branch in u[u_key])
            self.add("SUM_TYPE_EXTENDED" if ok else "COMBINED_TYPE_CHANGED", path)
            return True
        if u_key is None and o_key in ("oneOf", "anyOf"):
            ok = len(o[o_key]) == 1 and self.compatible(o[o_key][0], u, path)
            self.add("SUM_TYPE_NARROWED" if not ok else "SUM_TYPE_EXTENDED", path)
            return True
        if o_key != u_key or o_key is None or u_key is None:
            self.add("COMBINED_TYPE_CHANGED", path)
            return True
        self.subschemas(o_key, o[o_key], u[u_key], path)
        return False

    def subschemas(self, key: str, o: list[Any], u: list[Any], path: str) -> None:
        if len(u) != len(o):
            grew = len(u) > len(o)
            if key == "allOf":
                self.add("PRODUCT_TYPE_EXTENDED" if grew else "PRODUCT_TYPE_NARROWED", path)
            else:
                self.add("SUM_TYPE_EXTENDED" if grew else "SUM_TYPE_NARROWED", path)
        unmatched = list(range(len(u)))
        for index, branch in enumerate(o):
            match = next((j for j in unmatched
                          if self.compatible(branch, u[j], f"{path}/{key}/{index}")), None)
            if match is not None:
                unmatched.remove(match)
                self.compare(branch, u[match], f"{path}/{key}/{index}")
            elif key != "allOf" and len(u) >= len(o):
                self.add("COMBINED_TYPE_SUBSCHEMAS_CHANGED", f"{path}/{key}/{index}")

    def objects(self, o: dict[str, Any], u: dict[str, Any], path: str) -> None:
        o_props, u_props = o.get("properties", {}), u.get("properties", {})
        o_required, u_required = set(o.get("required", [])), set(u.get("required", []))
        for name in sorted(set(o_props) | set(u_props), key=str):
            at = f"{path}/properties/{name}"
            if name not in u_props:
                self.property_removed(o_props[name], u, at)
            elif name not in o_props:
                self.property_added(u_props[name], o, name in u_required, at)
            else:
                self.compare(o_props[name], u_props[name], at)
        for name in sorted(u_required - o_required):
            has_default = isinstance(u_props.get(name), dict) and "default" in u_props[name]
            self.add("REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED" if has_default
                     else "REQUIRED_ATTRIBUTE_ADDED", f"{path}/required/{name}")
        for name in sorted(o_required - u_required):
            self.add("REQUIRED_ATTRIBUTE_REMOVED", f"{path}/required/{name}")
        self.additional("additionalProperties", "ADDITIONAL_PROPERTIES", o, u, path)
        self.dependencies(o, u, path)

    @staticmethod
    def model(schema: dict[str, Any], additional: str = "additionalProperties",
              patterns: str = "patternProperties") -> str:
        extra = schema.get(additional, True)
        if extra is False and not schema.get(patterns):
            return "closed"
        if _is_empty(extra) and not schema.get(patterns):
            return "open"
        return "partial"

    def covered(self, prop: Any, model_schema: dict[str, Any], at: str, added: bool) -> bool:
        extra = model_schema.get("additionalProperties", True)
        pattern_schemas = list(model_schema.get("patternProperties", {}).values())
        candidates = [*pattern_schemas, extra] if extra is not False else pattern_schemas
        # added: data the original's open part accepted must fit the new property;
        # removed: the removed property's data must fit what the update now allows
        if added:
            return any(self.compatible(c, prop, at) for c in candidates)
        return any(self.compatible(prop, c, at) for c in candidates)

    def property_removed(self, prop: Any, u: dict[str, Any], at: str) -> None:
        model = self.model(u)
        if model == "open":
            self.add("PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL", at)
        elif model == "closed":
            self.add("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", at)
        elif self.covered(prop, u, at, added=False):
            self.add("PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", at)
        else:
            self.add("PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", at)

    def property_added(self, prop: Any, o: dict[str, Any], required: bool, at: str) -> None:
        model = self.model(o)
        if model == "open":
            self.add("PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL" if _is_empty(prop)
                     else "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", at)
        elif model == "partial" and not required:
            self.add("PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                     if self.covered(prop, o, at, added=True)
                     else "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", at)
        elif required:
            has_default = isinstance(prop, dict) and "default" in prop
            self.add("REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL" if has_default
                     else "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", at)
        elif prop is False:
            self.add("PROPERTY_WITH_FALSE_ADDED_TO_CLOSED_CONTENT_MODEL", at)
        else:
            self.add("OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", at)

    def additional(self, key: str, name: str, o: dict[str, Any], u: dict[str, Any],
                   path: str) -> None:
        a, b = o.get(key, True), u.get(key, True)
        if a == b:
            return
        if a is False:
            self.add(f"{name}_ADDED", f"{path}/{key}")
        elif b is False:
            self.add(f"{name}_REMOVED", f"{path}/{key}")
        elif _is_empty(b):
            self.add(f"{name}_EXTENDED", f"{path}/{key}")
        elif _is_empty(a):
            self.add(f"{name}_NARROWED", f"{path}/{key}")
        else:
            self.compare(a, b, f"{path}/{key}")

    def dependencies(self, o: dict[str, Any], u: dict[str, Any], path: str) -> None:
        a = {**o.get("dependencies", {}), **o.get("dependentRequired", {}),
             **o.get("dependentSchemas", {})}
        b = {**u.get("dependencies", {}), **u.get("dependentRequired", {}),
             **u.get("dependentSchemas", {})}
        for name in sorted(set(a) | set(b)):
            at = f"{path}/dependencies/{name}"
            x, y = a.get(name), b.get(name)
            is_array = isinstance(x if x is not None else y, list)
            kind = "DEPENDENCY_ARRAY" if is_array else "DEPENDENCY_SCHEMA"
            if x is None:
                self.add(f"{kind}_ADDED", at)
            elif y is None:
                self.add(f"{kind}_REMOVED", at)
            elif isinstance(x, list) and isinstance(y, list):
                if set(x) == set(y):
                    continue
                if set(y) < set(x):
                    self.add("DEPENDENCY_ARRAY_NARROWED", at)
                elif set(y) > set(x):
                    self.add("DEPENDENCY_ARRAY_EXTENDED", at)
                else:
                    self.add("DEPENDENCY_ARRAY_CHANGED", at)
            elif not isinstance(x, list) and not isinstance(y, list):
                self.compare(x, y, at)
            else:
                self.add("DEPENDENCY_ARRAY_CHANGED", at)

    def arrays(self, o: dict[str, Any], u: dict[str, Any], path: str) -> None:
        o_tuple, u_tuple = self.tuple_items(o), self.tuple_items(u)
        if o_tuple is None and u_tuple is None:
            if "items" in o or "items" in u:
                self.compare(o.get("items", True), u.get("items", True), f"{path}/items")
        else:
            self.tuples(o_tuple or [], u_tuple or [], o, u, path)
        if o.get("uniqueItems", False) != u.get("uniqueItems", False):
            self.add("UNIQUE_ITEMS_ADDED" if u.get("uniqueItems") else "UNIQUE_ITEMS_REMOVED",
                     path)

    @staticmethod
    def tuple_items(schema: dict[str, Any]) -> list[Any] | None:
        if isinstance(schema.get("prefixItems"), list):
            return list(schema["prefixItems"])
        if isinstance(schema.get("items"), list):
            return list(schema["items"])
        return None

    @staticmethod
    def rest_key(schema: dict[str, Any]) -> str:
        return "items" if "prefixItems" in schema else "additionalItems"

    def tuples(self, o: list[Any], u: list[Any], os: dict[str, Any], us: dict[str, Any],
               path: str) -> None:
        o_rest, u_rest = os.get(self.rest_key(os), True), us.get(self.rest_key(us), True)
        for index in range(max(len(o), len(u))):
            at = f"{path}/items/{index}"
            if index >= len(u):
                self.add("ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL" if _is_empty(u_rest)
                         else "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL"
                         if u_rest is False else
                         "ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                         if self.compatible(o[index], u_rest, at)
                         else "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", at)
            elif index >= len(o):
                self.add("ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL" if _is_empty(u[index])
                         and _is_empty(o_rest) else "ITEM_ADDED_TO_OPEN_CONTENT_MODEL"
                         if _is_empty(o_rest) else "ITEM_ADDED_TO_CLOSED_CONTENT_MODEL"
                         if o_rest is False else
                         "ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                         if self.compatible(o_rest, u[index], at)
                         else "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", at)
            else:
                self.compare(o[index], u[index], at)
        self.additional("_rest", "ADDITIONAL_ITEMS", {"_rest": o_rest}, {"_rest": u_rest}, path)


def json_differences(original: JsonSchema, update: JsonSchema) -> list[tuple[str, str]]:
    """Every difference (type, path) from `original` to `update`, compatible ones included."""
    diff = _Diff(original, update)
    diff.compare(original.value, update.value, "#")
    return diff.found


def json_incompatibilities(reader: JsonSchema, writer: JsonSchema,
                           new_is_reader: bool) -> list[Incompatibility]:
    """The incompatible differences for `reader` reading what `writer` accepted."""
    del new_is_reader  # the original is always the writer's schema
    return [
        Incompatibility(kind, path if path != "#" else "#/", kind, style="json")
        for kind, path in json_differences(writer, reader)
        if kind not in COMPATIBLE_CHANGES
    ]
