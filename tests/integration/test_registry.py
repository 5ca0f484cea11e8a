"""The schema registry (strom.registry) against a real broker: confluent-kafka's
SchemaRegistryClient and serializers through strom, and Confluent's REST API over HTTP (status
codes and error bodies)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from strom.registry.rest import RunningRegistry, start_in_thread
from strom.registry.server import RegistrySettings
from strom.security.certs import create_ca, create_certificate
from strom.testing import EmbeddedBroker
from tests.integration.conftest import unique_name
from tests.integration.registry_client import Http, protobuf_class


def start(broker: EmbeddedBroker, **settings: Any) -> RunningRegistry:
    settings.setdefault("topic", unique_name("_schemas"))
    settings.setdefault("group_id", unique_name("registry"))
    return start_in_thread(RegistrySettings(broker.bootstrap_servers, **settings))


@pytest.fixture(scope="module")
def registry(broker: EmbeddedBroker) -> Iterator[RunningRegistry]:
    running = start(broker)
    yield running
    running.stop()


@pytest.fixture
def http(registry: RunningRegistry) -> Http:
    return Http(registry.url)


@pytest.fixture
def client(registry: RunningRegistry) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": registry.url}) as sr:
        yield sr


def round_trip(broker: EmbeddedBroker, topic: str, serialize: Any, deserialize: Any,
               values: list[Any]) -> list[Any]:
    """Produce each value serialized through strom, consume it back and deserialize it."""
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for value in values:
        producer.produce(topic, value=serialize(value, SerializationContext(
            topic, MessageField.VALUE)))
    assert producer.flush(20) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers,
                         "group.id": unique_name("g"), "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    out = []
    while len(out) < len(values):
        message = consumer.poll(20)
        assert message is not None and message.error() is None
        out.append(deserialize(message.value(), SerializationContext(topic, MessageField.VALUE)))
    consumer.close()
    return out


AVRO_USER = json.dumps({"type": "record", "name": "User", "namespace": "t", "fields": [
    {"name": "name", "type": "string"}, {"name": "age", "type": "int"}]})


def test_avro_round_trip_through_strom(broker: EmbeddedBroker, client: SchemaRegistryClient,
                                       topic: str) -> None:
    serializer = AvroSerializer(schema_registry_client=client, schema_str=AVRO_USER)
    deserializer = AvroDeserializer(schema_registry_client=client)
    values = [{"name": "ann", "age": 31}, {"name": "bob", "age": 7}]
    assert round_trip(broker, topic, serializer, deserializer, values) == values
    registered = client.get_latest_version(f"{topic}-value")
    assert registered.version == 1
    assert json.loads(registered.schema.schema_str)["name"] == "User"


def test_json_round_trip_through_strom(broker: EmbeddedBroker, client: SchemaRegistryClient,
                                       topic: str) -> None:
    schema = json.dumps({"type": "object", "properties": {
        "id": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["id"]})
    serializer = JSONSerializer(schema_str=schema, schema_registry_client=client)
    deserializer = JSONDeserializer(schema_str=schema, schema_registry_client=client)
    values = [{"id": 1, "tags": ["a"]}, {"id": 2, "tags": []}]
    assert round_trip(broker, topic, serializer, deserializer, values) == values
    assert client.get_latest_version(f"{topic}-value").schema.schema_type == "JSON"


def test_protobuf_round_trip_through_strom(broker: EmbeddedBroker, http: Http,
                                           client: SchemaRegistryClient, topic: str) -> None:
    user = protobuf_class(unique_name("p").replace("-", "_"))
    serializer = ProtobufSerializer(msg_type=user, schema_registry_client=client,
                                    conf={"use.deprecated.format": False})
    deserializer = ProtobufDeserializer(message_type=user, schema_registry_client=client,
                                        conf={"use.deprecated.format": False})
    values = [user(name="ann", age=31, tags=["x", "y"]), user(name="bob", age=7)]
    assert round_trip(broker, topic, serializer, deserializer, values) == values
    latest = http.get(f"/subjects/{topic}-value/versions/latest").body
    assert latest["schemaType"] == "PROTOBUF"
    assert "message User" in latest["schema"]  # stored as .proto text
    serialized = http.get(f"/schemas/ids/{latest['id']}?format=serialized").body["schema"]
    assert "message User" not in serialized  # base64 of a FileDescriptorProto


def test_evolution_accepted_and_refused_per_level(client: SchemaRegistryClient,
                                                  http: Http) -> None:
    subject = unique_name("evolve")
    v1 = Schema(AVRO_USER, "AVRO")
    first = client.register_schema(subject, v1)
    with_default = json.loads(AVRO_USER)
    with_default["fields"].append({"name": "email", "type": "string", "default": ""})
    assert client.register_schema(subject, Schema(json.dumps(with_default), "AVRO")) > first
    without_default = json.loads(AVRO_USER)
    without_default["fields"].append({"name": "phone", "type": "string"})
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, Schema(json.dumps(without_default), "AVRO"))
    assert refused.value.http_status_code == 409
    assert refused.value.error_code == 409
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in refused.value.error_message
    assert "phone" in refused.value.error_message
    verbose = http.post(f"/compatibility/subjects/{subject}/versions/latest?verbose=true",
                        {"schema": json.dumps(without_default)})
    assert verbose.status == 200
    assert verbose.body["is_compatible"] is False
    assert any("READER_FIELD_MISSING_DEFAULT_VALUE" in m for m in verbose.body["messages"])
    assert http.post(f"/compatibility/subjects/{subject}/versions/latest",
                     {"schema": json.dumps(with_default)}).body == {"is_compatible": True}
    # FORWARD: removing a field without a default is refused, BACKWARD accepted it
    assert client.set_compatibility(subject, "FORWARD")["compatibility"] == "FORWARD"
    dropped = {"type": "record", "name": "User", "namespace": "t",
               "fields": [{"name": "name", "type": "string"}]}
    with pytest.raises(SchemaRegistryError) as forward:
        client.register_schema(subject, Schema(json.dumps(dropped), "AVRO"))
    assert forward.value.http_status_code == 409
    # NONE: anything goes
    client.set_compatibility(subject, "NONE")
    assert client.register_schema(subject, Schema(json.dumps(without_default), "AVRO")) > 0
    assert http.get(f"/subjects/{subject}/versions").body == [1, 2, 3]
    assert http.get(f"/config/{subject}").body == {"compatibilityLevel": "NONE"}


def test_same_schema_same_id_across_subjects(http: Http) -> None:
    a, b = unique_name("same"), unique_name("same")
    schema = json.dumps({"type": "enum", "name": "Colour", "symbols": ["RED", unique_name("c")
                                                                        .replace("-", "_")]})
    first = http.register(a, schema)
    assert first.status == 200
    assert http.register(a, schema).body == first.body  # idempotent: no new version
    assert http.register(b, schema).body["id"] == first.body["id"]
    assert http.get(f"/subjects/{a}/versions").body == [1]
    found = http.post(f"/subjects/{a}", {"schema": schema})
    assert found.status == 200
    assert (found.body["subject"], found.body["version"], found.body["id"]) == (
        a, 1, first.body["id"])
    assert http.get(f"/schemas/ids/{first.body['id']}/subjects").body == sorted([a, b])
    assert http.get(f"/schemas/ids/{first.body['id']}/versions").body == sorted(
        [{"subject": a, "version": 1}, {"subject": b, "version": 1}], key=lambda x: x["subject"])


def test_avro_references(broker: EmbeddedBroker, client: SchemaRegistryClient, http: Http,
                         topic: str) -> None:
    address_subject = unique_name("address")
    address = json.dumps({"type": "record", "name": "Address", "namespace": "t",
                          "fields": [{"name": "city", "type": "string"}]})
    client.register_schema(address_subject, Schema(address, "AVRO"))
    person = json.dumps({"type": "record", "name": "Person", "namespace": "t",
                         "fields": [{"name": "name", "type": "string"},
                                    {"name": "home", "type": "t.Address"}]})
    refs = [SchemaReference("t.Address", address_subject, 1)]
    person_id = client.register_schema(f"{topic}-value", Schema(person, "AVRO", refs))
    assert http.get(f"/subjects/{address_subject}/versions/1/referencedby").body == [person_id]
    got = http.get(f"/schemas/ids/{person_id}").body
    assert got["references"] == [{"name": "t.Address", "subject": address_subject,
                                  "version": 1}]
    serializer = AvroSerializer(schema_registry_client=client,
                                schema_str=Schema(person, "AVRO", refs),
                                conf={"auto.register.schemas": False,
                                      "use.latest.version": True})
    deserializer = AvroDeserializer(schema_registry_client=client)
    values = [{"name": "ann", "home": {"city": "Oslo"}}]
    assert round_trip(broker, topic, serializer, deserializer, values) == values
    # a referenced version cannot be deleted
    refused = http.delete(f"/subjects/{address_subject}/versions/1")
    assert (refused.status, refused.code) == (422, 42206)
    assert http.delete(f"/subjects/{address_subject}").code == 42206
    # an unknown reference is an invalid schema
    bad = http.register(unique_name("p"), person, references=[
        {"name": "t.Address", "subject": address_subject, "version": 9}])
    assert (bad.status, bad.code) == (422, 42201)


def test_soft_and_hard_deletes(http: Http) -> None:
    subject = unique_name("del")
    http.put(f"/config/{subject}", {"compatibility": "NONE"})
    ids = [http.register(subject, s).body["id"] for s in ('"string"', '"int"', '"long"')]
    # a hard delete needs a soft delete first
    assert http.delete(f"/subjects/{subject}/versions/1?permanent=true").code == 40407
    assert http.delete(f"/subjects/{subject}/versions/1").body == 1
    assert http.get(f"/subjects/{subject}/versions").body == [2, 3]
    assert http.get(f"/subjects/{subject}/versions?deleted=true").body == [1, 2, 3]
    gone = http.get(f"/subjects/{subject}/versions/1")
    assert (gone.status, gone.code) == (404, 40402)
    assert http.get(f"/subjects/{subject}/versions/1?deleted=true").body["id"] == ids[0]
    again = http.delete(f"/subjects/{subject}/versions/1")
    assert (again.status, again.code) == (404, 40406)
    assert http.get(f"/schemas/ids/{ids[0]}").status == 200  # still readable by id
    assert http.delete(f"/subjects/{subject}/versions/1?permanent=true").body == 1
    assert http.get(f"/subjects/{subject}/versions?deleted=true").body == [2, 3]
    assert http.get(f"/schemas/ids/{ids[0]}").code == 40403
    # a subject: soft, then hard
    assert http.delete(f"/subjects/{subject}?permanent=true").code == 40405
    assert http.delete(f"/subjects/{subject}").body == [2, 3]
    assert subject not in http.get("/subjects").body
    assert subject in http.get("/subjects?deleted=true").body
    assert http.delete(f"/subjects/{subject}").code == 40404
    assert http.get(f"/subjects/{subject}/versions").code == 40401
    assert http.delete(f"/subjects/{subject}?permanent=true").body == [2, 3]
    assert subject not in http.get("/subjects?deleted=true").body
    assert http.delete(f"/subjects/{subject}").code == 40401
    # the versions go on from the largest ever seen? a new subject starts at 1 again
    assert http.register(subject, '"string"').status == 200
    assert http.get(f"/subjects/{subject}/versions").body == [1]


def test_error_codes_per_endpoint(http: Http) -> None:
    missing = unique_name("missing")
    cases = [
        (http.get(f"/subjects/{missing}/versions"), 404, 40401),
        (http.get(f"/subjects/{missing}/versions/1"), 404, 40401),
        (http.get(f"/subjects/{missing}/versions/latest/schema"), 404, 40401),
        (http.post(f"/subjects/{missing}", {"schema": '"string"'}), 404, 40401),
        (http.delete(f"/subjects/{missing}"), 404, 40401),
        (http.get("/schemas/ids/987654"), 404, 40403),
        (http.get("/schemas/ids/abc"), 404, 40403),
        (http.get(f"/config/{missing}"), 404, 40408),
        (http.get(f"/mode/{missing}"), 404, 40409),
        (http.register(missing, "{not avro"), 422, 42201),
        (http.register(missing, '{"type": "nope"}'), 422, 42201),
        (http.register(missing, "x", schemaType="XML"), 422, 42201),
        (http.post(f"/subjects/{missing}/versions", {}), 422, 42201),
        (http.put("/config/x", {"compatibility": "SOMETIMES"}), 422, 42203),
        (http.put("/mode/x", {"mode": "SLEEPY"}), 422, 42204),
        (http.call("POST", f"/subjects/{missing}/versions", raw=b"{", ), 400, 400),
        (http.call("POST", f"/subjects/{missing}/versions", raw=b"<x/>",
                   content_type="application/xml"), 415, 415),
        (http.get("/nowhere"), 404, 404),
        (http.call("PATCH", "/subjects"), 405, 405),
    ]
    for reply, status, code in cases:
        assert (reply.status, reply.code) == (status, code), reply
        assert isinstance(reply.body["message"], str) and reply.body["message"]
    subject = unique_name("codes")
    assert http.register(subject, '"string"').status == 200
    assert http.get(f"/subjects/{subject}/versions/0").code == 42202
    assert http.get(f"/subjects/{subject}/versions/x").code == 42202
    assert http.get(f"/subjects/{subject}/versions/2").code == 40402
    assert http.post(f"/subjects/{subject}", {"schema": '"int"'}).code == 40403
    for ctype in ("application/vnd.schemaregistry.v1+json", "application/vnd.schemaregistry+json",
                  "application/json"):
        reply = http.call("POST", f"/subjects/{subject}/versions",
                          raw=b'{"schema": "\\"string\\""}', content_type=ctype)
        assert reply.status == 200, ctype
        assert reply.headers["Content-Type"].startswith("application/vnd.schemaregistry.v1+json")


def test_config_and_mode(http: Http) -> None:
    subject = unique_name("cfg")
    assert http.get("/config").body == {"compatibilityLevel": "BACKWARD"}
    assert http.put(f"/config/{subject}", {"compatibility": "full_transitive"}).body == {
        "compatibility": "FULL_TRANSITIVE"}
    assert http.get(f"/config/{subject}").body == {"compatibilityLevel": "FULL_TRANSITIVE"}
    other = unique_name("cfg")
    assert http.get(f"/config/{other}?defaultToGlobal=true").body == {
        "compatibilityLevel": "BACKWARD"}
    assert http.delete(f"/config/{subject}").body == {"compatibilityLevel": "FULL_TRANSITIVE"}
    assert http.get(f"/config/{subject}").code == 40408
    assert http.get("/mode").body == {"mode": "READWRITE"}
    assert http.put(f"/mode/{subject}", {"mode": "READONLY"}).body == {"mode": "READONLY"}
    refused = http.register(subject, '"string"')
    assert (refused.status, refused.code) == (422, 42205)
    assert http.delete(f"/mode/{subject}").body == {"mode": "READONLY"}
    assert http.register(subject, '"string"').status == 200
    assert http.put(f"/mode/{subject}", {"mode": "IMPORT"}).code == 42205  # has schemas
    imported = unique_name("imp")
    assert http.put(f"/mode/{imported}", {"mode": "IMPORT"}).body == {"mode": "IMPORT"}
    reply = http.register(imported, '"bytes"', id=90001, version=7)
    assert reply.body == {"id": 90001}
    assert http.get(f"/subjects/{imported}/versions").body == [7]


def test_misc_endpoints(http: Http) -> None:
    assert http.get("/").body == {}
    assert sorted(http.get("/schemas/types").body) == ["AVRO", "JSON", "PROTOBUF"]
    subject = unique_name("misc")
    reply = http.register(subject, '{"type": "fixed", "name": "F", "size": 4}')
    schema_id = reply.body["id"]
    assert http.get(f"/schemas/ids/{schema_id}/schema").body == {"type": "fixed", "name": "F",
                                                                 "size": 4}
    assert http.get(f"/subjects/{subject}/versions/latest/schema").body["size"] == 4
    assert http.get(f"/schemas/ids/{schema_id}?subject={subject}").body["schema"]
    assert subject in http.get(f"/subjects?subjectPrefix={subject[:6]}").body
    assert "scope" in http.get("/v1/metadata/id").body
    listed = http.get(f"/schemas?subjectPrefix={subject}").body
    assert [(v["subject"], v["version"], v["id"]) for v in listed] == [(subject, 1, schema_id)]
    assert http.get("/schemas?limit=1").body.__len__() == 1


def test_restart_loses_nothing(broker: EmbeddedBroker) -> None:
    topic, group = unique_name("_schemas"), unique_name("registry")
    first = start(broker, topic=topic, group_id=group)
    http = Http(first.url)
    subject = unique_name("keep")
    http.put(f"/config/{subject}", {"compatibility": "NONE"})
    ids = [http.register(subject, s).body["id"] for s in ('"string"', '"int"', '"long"')]
    http.delete(f"/subjects/{subject}/versions/2")
    http.put("/mode/" + subject, {"mode": "READONLY"})
    before = {path: http.get(path).body for path in (
        "/subjects", f"/subjects/{subject}/versions", f"/subjects/{subject}/versions?deleted=true",
        f"/config/{subject}", f"/mode/{subject}", f"/schemas/ids/{ids[2]}")}
    first.stop()
    second = start(broker, topic=topic, group_id=group)
    try:
        again = Http(second.url)
        assert {path: again.get(path).body for path in before} == before
        # new ids continue after the largest one read back
        again.put(f"/mode/{subject}", {"mode": "READWRITE"})
        assert again.register(subject, '"double"').body["id"] == max(ids) + 1
    finally:
        second.stop()


# ---- HTTP basic authentication and TLS

def test_basic_auth(broker: EmbeddedBroker, tmp_path: Path) -> None:
    running = start(broker, users={"alice": "s3cret"})
    try:
        anonymous = Http(running.url).get("/subjects")
        assert (anonymous.status, anonymous.code) == (401, 401)
        assert "Basic" in anonymous.headers["WWW-Authenticate"]
        assert Http(running.url, ("alice", "wrong")).get("/subjects").status == 401
        assert Http(running.url, ("bob", "s3cret")).get("/subjects").status == 401
        assert Http(running.url, ("alice", "s3cret")).get("/subjects").status == 200
        with SchemaRegistryClient({"url": running.url,
                                   "basic.auth.user.info": "alice:s3cret"}) as client:
            assert client.register_schema(unique_name("auth"), Schema('"string"', "AVRO")) > 0
        with pytest.raises(SchemaRegistryError) as refused, SchemaRegistryClient(
                {"url": running.url}) as anonymous_client:
            anonymous_client.get_subjects()
        assert refused.value.http_status_code == 401
    finally:
        running.stop()


def test_tls(broker: EmbeddedBroker, tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    cert = create_certificate(tmp_path, ca, "registry", ["127.0.0.1", "localhost"])
    running = start(broker, tls_cert=cert.cert_path, tls_key=cert.key_path)
    try:
        assert running.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(ca.cert_path))
        assert Http(running.url, context=context).get("/").body == {}
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
            Http(running.url, context=ssl.create_default_context()).get("/")
        with SchemaRegistryClient({"url": running.url,
                                   "ssl.ca.location": str(ca.cert_path)}) as client:
            assert client.register_schema(unique_name("tls"), Schema('"string"', "AVRO")) > 0
    finally:
        running.stop()
