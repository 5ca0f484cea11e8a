"""Helpers for the schema registry's integration tests: a small HTTP client (urllib) and
runtime-built Protobuf message classes."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def code(self) -> Any:
        return self.body.get("error_code") if isinstance(self.body, dict) else None


@dataclass(frozen=True)
class Http:
    url: str
    user: tuple[str, str] | None = None
    context: ssl.SSLContext | None = None

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
             content_type: str = CONTENT_TYPE) -> Reply:
        data = raw if raw is not None else (
            json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": content_type} if data is not None else {}
        if self.user is not None:
            token = base64.b64encode(f"{self.user[0]}:{self.user[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60, context=self.context) as reply:
                return Reply(reply.status, _json(reply.read()), dict(reply.headers))
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, _json(exc.read()), dict(exc.headers))

    def get(self, path: str) -> Reply:
        return self.call("GET", path)

    def post(self, path: str, body: Any = None) -> Reply:
        return self.call("POST", path, body if body is not None else {})

    def put(self, path: str, body: Any) -> Reply:
        return self.call("PUT", path, body)

    def delete(self, path: str) -> Reply:
        return self.call("DELETE", path)

    def register(self, subject: str, schema: str, **extra: Any) -> Reply:
        return self.post(f"/subjects/{subject}/versions", {"schema": schema, **extra})


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data.decode(errors="replace")


def protobuf_class(package: str, message: str = "User") -> Any:
    """A message class `package.User {string name = 1; int64 age = 2; repeated string tags = 3}`
    built at runtime from a FileDescriptorProto (no protoc)."""
    fd = descriptor_pb2.FileDescriptorProto(name=f"{package}/user.proto", package=package,
                                            syntax="proto3")
    msg = fd.message_type.add(name=message)
    F = descriptor_pb2.FieldDescriptorProto
    msg.field.add(name="name", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    msg.field.add(name="age", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    msg.field.add(name="tags", number=3, type=F.TYPE_STRING, label=F.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{message}"))
