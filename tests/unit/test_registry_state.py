"""strom.registry.state: the registry's state rebuilt from `_schemas` records, and Confluent's
logic of registration, lookups, deletes, configs and modes with its error codes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.registry.compatibility import CompatibilityLevel
from strom.registry.errors import RegistryError
from strom.registry.records import (
    ClearSubjectKey,
    ClearSubjectValue,
    ConfigKey,
    ConfigValue,
    DeleteSubjectKey,
    DeleteSubjectValue,
    ModeKey,
    ModeValue,
    Record,
    RecordFormatError,
    SchemaKey,
    SchemaValue,
    encode_key,
    encode_value,
)
from strom.registry.schemas import SchemaReference, SchemaType
from strom.registry.state import (
    IncompatibleSchemaError,
    Mode,
    RegisterResult,
    RegistryState,
    parse_version,
)


class Registry:
    """A state and its `_schemas` log: every planned record is appended, then applied."""

    def __init__(self) -> None:
        self.state = RegistryState()
        self.log: list[tuple[bytes, bytes | None]] = []

    def write(self, records: list[Record]) -> None:
        for record in records:
            self.log.append(record.encode())
            assert self.state.apply_encoded(*record.encode())

    def register(self, subject: str, schema: Any, schema_type: str | None = None,
                 **kwargs: Any) -> RegisterResult:
        text = schema if isinstance(schema, str) else json.dumps(schema)
        result = self.state.register(subject, text, schema_type, **kwargs)
        self.write(result.records)
        return result

    def delete_version(self, subject: str, version: int | str, permanent: bool = False) -> int:
        number, records = self.state.delete_version(subject, version, permanent)
        self.write(records)
        return number

    def delete_subject(self, subject: str, permanent: bool = False) -> list[int]:
        versions, records = self.state.delete_subject(subject, permanent)
        self.write(records)
        return versions

    def set_config(self, subject: str | None, level: str) -> None:
        self.write(self.state.set_config(subject, level)[1])

    def set_mode(self, subject: str | None, mode: str, force: bool = False) -> None:
        self.write(self.state.set_mode(subject, mode, force)[1])

    def replayed(self) -> RegistryState:
        fresh = RegistryState()
        for key, value in self.log:
            fresh.apply_encoded(key, value)
        return fresh


def snapshot(state: RegistryState) -> Any:
    return (state.subject_versions, state.configs, state.modes, state.ids(),
            {i: state.versions_of_id(i, deleted=True) for i in state.ids()})


def record(*fields: tuple[str, Any], name: str = "User") -> dict[str, Any]:
    return {"type": "record", "name": name,
            "fields": [{"name": n, "type": t, **({"default": d} if d is not ... else {})}
                       for n, t, d in ((f[0], f[1], f[2] if len(f) > 2 else ...)
                                       for f in fields)]}


V1 = record(("name", "string"))
V2 = record(("name", "string"), ("age", "int", 0))
V3_BAD = record(("name", "string"), ("age", "int", 0), ("email", "string"))


def code(error: pytest.ExceptionInfo[RegistryError]) -> int:
    return error.value.error_code


def test_register_and_read_back() -> None:
    r = Registry()
    first = r.register("users-value", V1)
    assert (first.id, first.version, len(first.records)) == (1, 1, 1)
    stored = r.state.get_version("users-value", "latest")
    assert stored.schema == json.dumps(V1, separators=(",", ":"))
    assert stored.schema_type is SchemaType.AVRO
    assert r.state.schema_by_id(1) == stored
    assert r.state.subjects() == ["users-value"]
    assert r.state.versions("users-value") == [1]


def test_same_schema_same_answer_and_no_record() -> None:
    r = Registry()
    r.register("s", V1)
    again = r.register("s", json.dumps(V1, indent=2))  # whitespace is not a difference
    assert (again.id, again.version, again.records) == (1, 1, [])
    assert len(r.log) == 1


def test_same_schema_in_another_subject_reuses_the_id() -> None:
    r = Registry()
    r.register("a", V1)
    other = r.register("b", V1)
    assert (other.id, other.version) == (1, 1)
    assert r.state.versions_of_id(1) == [("a", 1), ("b", 1)]
    assert r.register("b", V2).id == 2


def test_versions_increase_and_ids_grow() -> None:
    r = Registry()
    assert [r.register("s", s).version for s in (V1, V2)] == [1, 2]
    r.delete_version("s", 2)
    assert r.register("s", record(("name", "string"), ("x", "long", 0))).version == 3
    assert r.state.versions("s") == [1, 3]
    assert r.state.versions("s", deleted=True) == [1, 2, 3]
    assert r.state.next_id == 4


def test_incompatible_schema_is_409_with_details() -> None:
    r = Registry()
    r.register("s", V1)
    r.register("s", V2)
    with pytest.raises(IncompatibleSchemaError) as info:
        r.register("s", V3_BAD)
    assert info.value.error_code == 409 and info.value.http_status == 409
    assert info.value.message.startswith(
        'Schema being registered is incompatible with an earlier schema for subject "s"')
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in info.value.details[0]
    assert len(r.log) == 2
    r.set_config("s", "none")
    assert r.register("s", V3_BAD).version == 3


def test_transitive_level_checks_every_live_version() -> None:
    r = Registry()
    r.register("s", V1)
    r.register("s", V2)
    v3 = record(("name", "string"), ("age", "int"))
    assert r.state.test_compatibility("s", json.dumps(v3)) == []  # BACKWARD: against v2
    r.set_config(None, "BACKWARD_TRANSITIVE")
    assert r.state.test_compatibility("s", json.dumps(v3)) != []
    assert r.state.test_compatibility("s", json.dumps(v3), version=2) == []
    assert r.state.test_compatibility("s", json.dumps(v3), version="1") != []
    with pytest.raises(IncompatibleSchemaError):
        r.register("s", v3)
    # soft-deleting v1 takes it out of the check
    r.delete_version("s", 1)
    assert r.register("s", v3).version == 3


def test_test_compatibility_errors() -> None:
    r = Registry()
    assert r.state.test_compatibility("new", json.dumps(V1)) == []
    with pytest.raises(RegistryError) as info:
        r.state.test_compatibility("new", json.dumps(V1), version=1)
    assert code(info) == 40401
    r.register("s", V1)
    with pytest.raises(RegistryError) as info:
        r.state.test_compatibility("s", json.dumps(V1), version=5)
    assert code(info) == 40402
    with pytest.raises(RegistryError) as info:
        r.state.test_compatibility("s", "{bad")
    assert code(info) == 42201


def test_lookup() -> None:
    r = Registry()
    r.register("s", V1)
    r.register("s", V2)
    assert r.state.lookup("s", json.dumps(V2)).version == 2
    with pytest.raises(RegistryError) as info:
        r.state.lookup("s", json.dumps(V3_BAD))
    assert code(info) == 40403
    with pytest.raises(RegistryError) as info:
        r.state.lookup("nope", json.dumps(V1))
    assert code(info) == 40401
    with pytest.raises(RegistryError) as info:
        r.state.lookup("s", "not a schema")
    assert code(info) == 42201
    reordered = json.dumps({"fields": V1["fields"], "name": "User", "type": "record"})
    with pytest.raises(RegistryError):
        r.state.lookup("s", reordered)  # key order differs: not the same without normalize
    assert r.state.lookup("s", reordered, normalize=True).version == 1
    r.delete_version("s", 1)
    with pytest.raises(RegistryError):
        r.state.lookup("s", json.dumps(V1))
    assert r.state.lookup("s", json.dumps(V1), deleted=True).deleted


def test_register_with_normalize_stores_the_normalized_form() -> None:
    r = Registry()
    a = '{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"integer"}}}'
    b = '{"properties":{"a":{"type":"integer"},"b":{"type":"string"}},"type":"object"}'
    first = r.register("j", a, "JSON", normalize=True)
    assert r.state.get_version("j", 1).schema == b.replace(" ", "")
    assert r.register("j", b, "JSON", normalize=True).id == first.id
    assert r.register("j", a, "JSON", normalize=True).records == []


@pytest.mark.parametrize(("version", "expected"), [
    ("latest", None), (-1, None), ("-1", None), ("3", 3), (7, 7), ("LATEST", None),
])
def test_parse_version(version: int | str, expected: int | None) -> None:
    assert parse_version(version) == expected


@pytest.mark.parametrize("version", [0, "0", -2, "abc", 2**31, "1.5", ""])
def test_invalid_versions_are_42202(version: int | str) -> None:
    with pytest.raises(RegistryError) as info:
        parse_version(version)
    assert code(info) == 42202


def test_get_version_errors() -> None:
    r = Registry()
    with pytest.raises(RegistryError) as info:
        r.state.get_version("s", 1)
    assert code(info) == 40401
    assert info.value.message == "Subject 's' not found."
    r.register("s", V1)
    with pytest.raises(RegistryError) as info:
        r.state.get_version("s", 2)
    assert code(info) == 40402
    with pytest.raises(RegistryError) as info:
        r.state.get_version("s", "zero")
    assert code(info) == 42202
    with pytest.raises(RegistryError) as info:
        r.state.schema_by_id(99)
    assert code(info) == 40403 and info.value.http_status == 404
    with pytest.raises(RegistryError) as info:
        r.state.versions("other")
    assert code(info) == 40401


def test_soft_and_hard_delete_of_a_version() -> None:
    r = Registry()
    r.register("s", V1)
    r.register("s", V2)
    with pytest.raises(RegistryError) as info:
        r.delete_version("s", 2, permanent=True)
    assert code(info) == 40407
    assert r.delete_version("s", "latest") == 2
    assert r.state.get_version("s", "latest").version == 1
    assert r.state.get_version("s", 2, deleted=True).deleted
    with pytest.raises(RegistryError) as info:
        r.state.get_version("s", 2)
    assert code(info) == 40402
    with pytest.raises(RegistryError) as info:
        r.delete_version("s", 2)
    assert code(info) == 40406
    assert "was soft deleted" in info.value.message
    assert r.state.schema_by_id(2).deleted  # ids still answer for soft-deleted versions
    assert r.delete_version("s", 2, permanent=True) == 2
    assert r.log[-1] == (encode_key(SchemaKey("s", 2)), None)  # a tombstone
    with pytest.raises(RegistryError) as info:
        r.state.schema_by_id(2)
    assert code(info) == 40403
    assert r.state.versions("s", deleted=True) == [1]


def test_soft_and_hard_delete_of_a_subject() -> None:
    r = Registry()
    r.register("s", V1)
    r.register("s", V2)
    r.set_config("s", "FULL")
    r.set_mode("s", "READWRITE")
    with pytest.raises(RegistryError) as info:
        r.delete_subject("s", permanent=True)
    assert code(info) == 40405
    assert r.delete_subject("s") == [1, 2]
    assert r.state.subjects() == [] and r.state.subjects(deleted=True) == ["s"]
    with pytest.raises(RegistryError) as info:
        r.state.versions("s")
    assert code(info) == 40401
    with pytest.raises(RegistryError) as info:
        r.delete_subject("s")
    assert code(info) == 40404
    # registering again after a soft delete checks nothing against the deleted versions
    assert r.register("s", V3_BAD).version == 3
    r.delete_subject("s")
    assert r.delete_subject("s", permanent=True) == [1, 2, 3]
    assert "s" not in r.state.configs and "s" not in r.state.modes
    assert r.state.subjects(deleted=True) == []
    with pytest.raises(RegistryError) as info:
        r.delete_subject("s")
    assert code(info) == 40401
    assert r.register("s", V1).version == 1  # a fresh subject
    assert r.register("s", V1).id == 4  # ids are never reused


def test_references_protect_what_they_reference() -> None:
    r = Registry()
    address = {"type": "record", "name": "Address", "namespace": "acme",
               "fields": [{"name": "street", "type": "string"}]}
    r.register("address", address)
    ref = SchemaReference("acme.Address", "address", 1)
    person = {"type": "record", "name": "Person", "namespace": "acme",
              "fields": [{"name": "home", "type": "Address"}]}
    registered = r.register("person", person, references=[ref])
    assert r.state.get_version("person", 1).references == (ref,)
    assert r.state.referenced_by("address", 1) == [registered.id]
    with pytest.raises(RegistryError) as info:
        r.delete_version("address", 1)
    assert code(info) == 42206
    assert info.value.message == ("One or more references exist to the schema "
                                  "{magic=1,keytype=SCHEMA,subject=address,version=1}.")
    with pytest.raises(RegistryError) as info:
        r.delete_subject("address")
    assert code(info) == 42206
    # the same text with other references is another schema
    with pytest.raises(RegistryError) as info:
        r.register("person2", person)
    assert code(info) == 42201
    with pytest.raises(RegistryError) as info:
        r.register("person3", person, references=[SchemaReference("acme.Address", "nope", 1)])
    assert code(info) == 42201
    r.delete_subject("person")
    assert r.delete_version("address", 1) == 1  # unreferenced once the referrer is deleted
    # the soft-deleted schema still resolves for its referrers
    assert r.state.parsed(r.state.get_version("person", 1, deleted=True)).references == (ref,)


def test_a_subject_referencing_itself_can_be_deleted_whole() -> None:
    r = Registry()
    r.register("s", '"string"')
    r.set_config("s", "NONE")
    ref = SchemaReference("x", "s", 1)
    r.register("s", '{"type":"record","name":"R","fields":[]}', references=[ref])
    with pytest.raises(RegistryError) as info:
        r.delete_version("s", 1)
    assert code(info) == 42206
    assert r.delete_subject("s") == [1, 2]


def test_protobuf_and_json_schemas_register() -> None:
    r = Registry()
    first = r.register("p", 'syntax = "proto3";\nmessage M {\n  string a = 1;\n}\n', "PROTOBUF")
    assert r.state.get_version("p", 1).schema_type is SchemaType.PROTOBUF
    assert r.register("p", 'syntax = "proto3"; message M { string a = 1; }',
                      "PROTOBUF").id == first.id  # same canonical text
    with pytest.raises(IncompatibleSchemaError):
        r.register("p", 'syntax = "proto3"; message M { int32 a = 1; }', "PROTOBUF")
    r.register("j", '{"type":"string"}', "JSON")
    with pytest.raises(IncompatibleSchemaError):  # another format under the same subject
        r.register("j", '"string"')


def test_configs() -> None:
    r = Registry()
    assert r.state.get_config(None) == "BACKWARD"
    with pytest.raises(RegistryError) as info:
        r.state.get_config("s")
    assert code(info) == 40408
    assert r.state.get_config("s", default_to_global=True) == "BACKWARD"
    r.set_config(None, "full")
    assert r.state.compatibility("s") is CompatibilityLevel.FULL
    r.set_config("s", "NONE")
    assert r.state.get_config("s") == "NONE"
    with pytest.raises(RegistryError) as info:
        r.state.set_config("s", "SIDEWAYS")
    assert code(info) == 42203
    previous, records = r.state.delete_config("s")
    r.write(records)
    assert previous == "NONE"
    assert r.state.compatibility("s") is CompatibilityLevel.FULL
    with pytest.raises(RegistryError) as info:
        r.state.delete_config("s")
    assert code(info) == 40408
    with pytest.raises(RegistryError) as info:
        r.state.set_config("", "FULL")
    assert code(info) == 42208


def test_modes() -> None:
    r = Registry()
    r.register("s", V1)
    assert r.state.get_mode(None) is Mode.READWRITE
    with pytest.raises(RegistryError) as info:
        r.state.get_mode("s")
    assert code(info) == 40409
    r.set_mode("s", "READONLY")
    for write in (lambda: r.register("s", V2), lambda: r.delete_version("s", 1),
                  lambda: r.delete_subject("s")):
        with pytest.raises(RegistryError) as info:
            write()
        assert code(info) == 42205
    assert r.register("other", V1).id == 1  # other subjects stay writable
    previous, records = r.state.delete_mode("s")
    r.write(records)
    assert previous == "READONLY"
    assert r.register("s", V2).version == 2
    with pytest.raises(RegistryError) as info:
        r.state.set_mode(None, "SOMETIMES")
    assert code(info) == 42204
    with pytest.raises(RegistryError) as info:
        r.state.set_mode(None, "IMPORT")
    assert code(info) == 42205
    assert "existing subjects" in info.value.message
    with pytest.raises(RegistryError) as info:
        r.register("s", V3_BAD, schema_id=50)
    assert code(info) == 42205


def test_import_mode_keeps_ids_and_versions() -> None:
    r = Registry()
    r.set_mode(None, "IMPORT")
    r.register("s", V1, schema_id=100, version=5)
    r.register("s", V3_BAD, schema_id=7, version=6)  # no compatibility check on import
    assert r.state.get_version("s", 5).id == 100
    assert r.state.get_version("s", "latest").version == 6
    assert r.state.next_id == 101
    with pytest.raises(RegistryError) as info:
        r.register("t", V2, schema_id=100)  # id taken by another schema
    assert code(info) == 42207
    with pytest.raises(RegistryError) as info:
        r.register("s", V2, schema_id=8, version=5)  # version taken
    assert code(info) == 42202
    assert r.register("t", V1, schema_id=100).version == 1  # same schema, same id: fine
    r.set_mode(None, "READWRITE")
    assert r.register("s", record(("name", "string"), ("n", "int", 1))).id == 101


def test_import_mode_on_a_subject_with_force() -> None:
    r = Registry()
    r.register("s", V1)
    r.set_mode("s", "IMPORT", force=True)
    assert r.state.mode("s") is Mode.IMPORT and r.state.mode("t") is Mode.READWRITE
    r.set_mode("empty", "IMPORT")


def test_invalid_subjects() -> None:
    r = Registry()
    for subject in ("", "a\x00b", "line\nbreak"):
        with pytest.raises(RegistryError) as info:
            r.register(subject, V1)
        assert code(info) == 42208


def test_replay_rebuilds_the_state() -> None:
    r = Registry()
    r.register("a", V1)
    r.register("a", V2)
    r.register("b", V1)
    r.set_config(None, "FULL")
    r.set_config("b", "NONE")
    r.set_mode("b", "READONLY")
    r.delete_version("a", 1)
    r.delete_version("a", 1, permanent=True)
    r.register("c", '{"type":"string"}', "JSON")
    r.delete_subject("c")
    replayed = r.replayed()
    assert snapshot(replayed) == snapshot(r.state)
    assert replayed.next_id == r.state.next_id
    assert replayed.register("d", json.dumps(V1)).id == 1


def test_confluent_records_and_garbage_in_the_topic() -> None:
    state = RegistryState()

    def put(subject: str, version: int, schema_id: int) -> None:
        value = SchemaValue(subject, version, schema_id, '"string"' if version == 1 else '"int"')
        assert state.apply_encoded(encode_key(SchemaKey(subject, version)), encode_value(value))

    put("s", 1, 1)
    put("s", 2, 2)
    assert not state.apply_encoded(b"garbage", b"{}")
    assert not state.apply_encoded(b'{"keytype":"SCHEMA","subject":"s","version":3,"magic":1}',
                                   b'{"nonsense":true}')
    assert not state.apply_encoded(b'{"keytype":"MODE","subject":null,"magic":0}',
                                   b'{"mode":"SOMETIMES"}')
    assert state.skipped_records == 3
    assert state.apply_encoded(b'{"keytype":"NOOP","magic":0}', None)
    state.apply(Record(DeleteSubjectKey("s"), DeleteSubjectValue("s", 1)))
    assert state.versions("s") == [2]
    state.apply(Record(ClearSubjectKey("s"), ClearSubjectValue("s")))
    assert state.versions("s", deleted=True) == [2]
    # a version rewritten with another id (an import over an old record) moves the id
    put("s", 2, 9)
    assert state.ids() == [9]


OPS = st.lists(st.tuples(st.sampled_from(["register", "soft", "hard", "subject", "config"]),
                         st.sampled_from(["a", "b"]), st.integers(0, 3)), max_size=25)
POOL = [json.dumps(record(("name", "string"), *[(f"f{i}", "int", 0) for i in range(n)]))
        for n in range(4)]


@settings(max_examples=40, deadline=None)
@given(OPS)
def test_any_history_replays_to_the_same_state(ops: list[tuple[str, str, int]]) -> None:
    r = Registry()
    for op, subject, n in ops:
        try:
            if op == "register":
                result = r.register(subject, POOL[n])
                assert r.state.get_version(subject, result.version).id == result.id
            elif op == "soft":
                r.delete_version(subject, n + 1)
            elif op == "hard":
                r.delete_version(subject, n + 1, permanent=True)
            elif op == "subject":
                r.delete_subject(subject, permanent=n % 2 == 1)
            else:
                r.set_config(subject, ["NONE", "FULL", "BACKWARD", "FORWARD"][n])
        except RegistryError as exc:
            assert exc.error_code in (409, 40401, 40402, 40404, 40405, 40406, 40407)
    assert snapshot(r.replayed()) == snapshot(r.state)
    # the same schema text always has one id
    by_text: dict[str, int] = {}
    for versions in r.state.subject_versions.values():
        for v in versions.values():
            assert by_text.setdefault(v.schema, v.id) == v.id


def test_circular_references_in_the_topic_are_invalid_not_a_hang() -> None:
    state = RegistryState()
    state.apply_all([
        Record(SchemaKey("a", 1), SchemaValue("a", 1, 1, '"int"',
                                              references=(SchemaReference("B", "b", 1),))),
        Record(SchemaKey("b", 1), SchemaValue("b", 1, 2, '"int"',
                                              references=(SchemaReference("A", "a", 1),))),
    ])
    assert state.versions("a") == [1] and state.versions("b") == [1]
    with pytest.raises(RegistryError) as info:
        state.parsed(state.get_version("a", 1))
    assert code(info) == 42201


def test_odd_records_applied_by_hand() -> None:
    state = RegistryState()
    with pytest.raises(RecordFormatError):
        state.apply(Record(SchemaKey("s", 1), ModeValue("READWRITE")))
    state.apply(Record(ConfigKey(None), ConfigValue("SIDEWAYS")))  # a level we do not know
    assert state.compatibility("s") is CompatibilityLevel.BACKWARD
    state.apply(Record(ModeKey(None), None))
    state.apply(Record(DeleteSubjectKey("s"), None))  # a tombstone of an old record: nothing
    assert state.subjects(deleted=True) == []


def test_import_refuses_ids_out_of_range() -> None:
    r = Registry()
    r.set_mode(None, "IMPORT")
    with pytest.raises(RegistryError) as info:
        r.register("s", V1, schema_id=0)
    assert code(info) == 42207
