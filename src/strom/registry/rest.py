"""Confluent Schema Registry's REST API over a Registry (aiohttp).

Reads answer from this instance's state; writes (POST/PUT/DELETE that change something) go
through Registry.write on the primary, and followers forward them to the primary's URL and
answer what it answers. Errors are {"error_code": ..., "message": ...} with Confluent's codes and
HTTP statuses. Bodies may be sent as application/vnd.schemaregistry.v1+json,
application/vnd.schemaregistry+json, application/json or application/octet-stream; answers are
application/vnd.schemaregistry.v1+json.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from aiohttp import web

from strom.loop_thread import LoopThread, start_loop_thread
from strom.registry import errors
from strom.registry.errors import RegistryError
from strom.registry.records import Record
from strom.registry.schemas import SchemaReference, SchemaType
from strom.registry.server import (
    FORWARDED_HEADER,
    FORWARDING_ERROR,
    OFFSET_HEADER,
    UNKNOWN_LEADER,
    NotPrimary,
    Registry,
    RegistrySettings,
)
from strom.registry.state import RegistryState, StoredVersion

log = logging.getLogger("strom.registry")

CONTENT_TYPE: Final = "application/vnd.schemaregistry.v1+json"
ACCEPTED_TYPES: Final = ("application/vnd.schemaregistry.v1+json",
                         "application/vnd.schemaregistry+json", "application/json",
                         "application/octet-stream")
REGISTRY_KEY: Final = web.AppKey("registry", Registry)
FORWARD_RETRY_S: Final = 5.0
HOP_HEADERS: Final = ("host", "content-length", "transfer-encoding", "connection")


def answer(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body, ensure_ascii=False), status=status,
                        content_type=CONTENT_TYPE)


def error(code: int, message: str, status: int | None = None) -> web.Response:
    return answer({"error_code": code, "message": message},
                  status or (code if code < 1000 else code // 100))


def registry_of(request: web.Request) -> Registry:
    return request.app[REGISTRY_KEY]


def flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


def subject_of(request: web.Request) -> str:
    return request.match_info["subject"]


def int_param(text: str, code: int, message: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise RegistryError(code, message) from None


async def body_of(request: web.Request) -> dict[str, Any]:
    """The JSON object a request sends; 415 for other content types, 400 for bad JSON."""
    ctype = request.content_type
    if request.body_exists and ctype not in ACCEPTED_TYPES:
        raise RegistryError(415, f"HTTP 415 Unsupported Media Type: {ctype}")
    text = await request.text()
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RegistryError(400, f"Unrecognized JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise RegistryError(400, "The request body must be a JSON object")
    return data


@dataclass(frozen=True, slots=True)
class SchemaRequest:
    schema: str
    schema_type: SchemaType
    references: tuple[SchemaReference, ...]
    schema_id: int | None
    version: int | None


def schema_request(body: dict[str, Any]) -> SchemaRequest:
    schema = body.get("schema")
    if not isinstance(schema, str) or not schema.strip():
        raise RegistryError(errors.INVALID_SCHEMA, "Empty schema")
    kind = body.get("schemaType")
    if kind is not None and not isinstance(kind, str):
        raise RegistryError(errors.INVALID_SCHEMA, f"Invalid schema type {kind}")
    refs = body.get("references")
    refs = [] if refs is None else refs
    if not isinstance(refs, list):
        raise RegistryError(errors.INVALID_SCHEMA, "Invalid references")
    ids: list[int | None] = []
    for name in ("id", "version"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise RegistryError(errors.INVALID_SCHEMA, f"Invalid {name} {value!r}")
        ids.append(value if value is None or value > 0 else None)
    return SchemaRequest(schema, SchemaType.of(kind),
                         tuple(SchemaReference.from_json(r) for r in refs), ids[0], ids[1])


def version_json(registry: Registry, v: StoredVersion, fmt: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"subject": v.subject, "version": v.version, "id": v.id}
    if v.schema_type is not SchemaType.AVRO:
        out["schemaType"] = v.schema_type.value
    if v.references:
        out["references"] = [r.to_json() for r in v.references]
    out["schema"] = schema_text(registry.state, v, fmt)
    return out


def schema_text(state: RegistryState, v: StoredVersion, fmt: str | None,
                name: str | None = None) -> str:
    """The schema as stored, or for Protobuf with format=serialized, the base64 descriptor."""
    if fmt == "serialized" and v.schema_type is SchemaType.PROTOBUF:
        from strom.registry.schemas.protobuf import ProtobufSchema
        from strom.registry.schemas.protobuf_descriptor import serialized

        parsed = state.parsed(v)
        if isinstance(parsed, ProtobufSchema):
            return serialized(parsed, name or v.subject)
    return v.schema


# ---- middlewares: errors as JSON, authentication

@web.middleware
async def json_errors(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryError as exc:
        return answer(exc.body(), exc.http_status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error(exc.status, f"HTTP {exc.status} {exc.reason}")
        for name in ("WWW-Authenticate", "Allow"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("registry: %s %s", request.method, request.path)
        return error(500, f"Internal Server Error: {exc}")


def basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


@web.middleware
async def basic_auth(request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
    registry = registry_of(request)
    settings = registry.settings
    if settings.auth_required:
        given = basic_credentials(request.headers.get("Authorization", ""))
        if given is None or not await authenticated(registry, *given):
            await asyncio.sleep(0.2)  # slows down guessing
            response = error(401, "Unauthorized")
            response.headers["WWW-Authenticate"] = 'Basic realm="strom schema registry"'
            return response
    return await handler(request)


async def authenticated(registry: Registry, user: str, password: str) -> bool:
    """Checked against the users file, or with the cluster as SASL credentials."""
    users = registry.settings.users
    if users is not None:
        expected = users.get(user)
        return expected is not None and hmac.compare_digest(expected.encode(),
                                                             password.encode())
    return bool(user) and await registry.sasl_login(user, password)


# ---- writes: on the primary, or forwarded to it

Plan = Callable[[RegistryState], tuple[Any, Sequence[Record]]]


async def write(request: web.Request, plan: Plan, body: bytes | None = None) -> web.Response:
    """Plan and write as the primary, or forward to the primary (50003 when it cannot be
    reached, 50004 when no instance is the primary), retrying for a few seconds while an
    election settles."""
    registry = registry_of(request)
    forwarded = FORWARDED_HEADER in request.headers
    if body is None:
        body = await request.read()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FORWARD_RETRY_S
    refresh = False
    while True:
        try:
            result, position = await registry.write(plan, forwarded)
            response = answer(result)
            response.headers[OFFSET_HEADER] = str(position)
            return response
        except NotPrimary:
            pass
        url = await registry.primary_url(refresh)
        refresh = True
        failure = error(UNKNOWN_LEADER, "Leader not known.", 500)
        if url is not None and url != registry.url:
            try:
                return await forward(request, registry, url, body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                failure = error(FORWARDING_ERROR,
                                f"Error while forwarding the request to the master: {exc}", 500)
        if loop.time() > deadline:
            return failure
        await asyncio.sleep(0.3)


async def forward(request: web.Request, registry: Registry, url: str,
                  body: bytes) -> web.Response:
    """Send the request to the primary at `url`; its answer."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
    headers[FORWARDED_HEADER] = registry.url
    timeout = aiohttp.ClientTimeout(total=registry.settings.request_timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.request(
            request.method, url.rstrip("/") + request.path_qs, data=body, headers=headers,
            ssl=registry.settings.client_ssl()) as reply:
        text = await reply.read()
        position = reply.headers.get(OFFSET_HEADER, "")
        if position.isdigit():  # read our own (forwarded) writes too
            with contextlib.suppress(RegistryError):
                await registry.wait_position(int(position), timeout=5.0)
        return web.Response(body=text, status=reply.status,
                            content_type=reply.content_type or CONTENT_TYPE)


# ---- routes

async def root(request: web.Request) -> web.Response:
    return answer({})


async def schema_types(request: web.Request) -> web.Response:
    return answer(["JSON", "PROTOBUF", "AVRO"])


async def contexts(request: web.Request) -> web.Response:
    return answer(["."])


async def metadata_id(request: web.Request) -> web.Response:
    registry = registry_of(request)
    return answer({"scope": {"path": [], "clusters": {
        "schema-registry-cluster": registry.settings.group_id}}})


async def list_subjects(request: web.Request) -> web.Response:
    state = registry_of(request).state
    prefix = request.query.get("subjectPrefix", "")
    return answer([s for s in state.subjects(flag(request, "deleted"))
                   if s.startswith(prefix)])


async def lookup(request: web.Request) -> web.Response:
    registry = registry_of(request)
    req = schema_request(await body_of(request))
    found = registry.state.lookup(subject_of(request), req.schema, req.schema_type,
                                  req.references, flag(request, "normalize"),
                                  flag(request, "deleted"))
    return answer(version_json(registry, found))


async def list_versions(request: web.Request) -> web.Response:
    state = registry_of(request).state
    return answer(state.versions(subject_of(request), flag(request, "deleted")))


async def register(request: web.Request) -> web.Response:
    raw = await request.read()
    req = schema_request(await body_of(request))
    subject = subject_of(request)
    normalize = flag(request, "normalize")

    def plan(state: RegistryState) -> tuple[Any, Sequence[Record]]:
        result = state.register(subject, req.schema, req.schema_type, req.references,
                                normalize, req.schema_id, req.version)
        return {"id": result.id}, result.records

    return await write(request, plan, raw)


async def get_version(request: web.Request) -> web.Response:
    registry = registry_of(request)
    found = registry.state.get_version(subject_of(request), request.match_info["version"],
                                       flag(request, "deleted"))
    return answer(version_json(registry, found, request.query.get("format")))


async def get_version_schema(request: web.Request) -> web.Response:
    registry = registry_of(request)
    found = registry.state.get_version(subject_of(request), request.match_info["version"],
                                       flag(request, "deleted"))
    return web.Response(text=schema_text(registry.state, found, request.query.get("format")),
                        content_type=CONTENT_TYPE)


async def referenced_by(request: web.Request) -> web.Response:
    state = registry_of(request).state
    found = state.get_version(subject_of(request), request.match_info["version"], True)
    return answer(state.referenced_by(found.subject, found.version))


async def delete_subject(request: web.Request) -> web.Response:
    subject = subject_of(request)
    permanent = flag(request, "permanent")

    def plan(state: RegistryState) -> tuple[Any, Sequence[Record]]:
        return state.delete_subject(subject, permanent)

    return await write(request, plan)


async def delete_version(request: web.Request) -> web.Response:
    subject = subject_of(request)
    version = request.match_info["version"]
    permanent = flag(request, "permanent")

    def plan(state: RegistryState) -> tuple[Any, Sequence[Record]]:
        return state.delete_version(subject, version, permanent)

    return await write(request, plan)


async def list_schemas(request: web.Request) -> web.Response:
    """GET /schemas: every version (?subjectPrefix=, ?deleted=true, ?latestOnly=true,
    ?offset=, ?limit=)."""
    registry = registry_of(request)
    state = registry.state
    prefix = request.query.get("subjectPrefix", "")
    deleted, latest_only = flag(request, "deleted"), flag(request, "latestOnly")
    found: list[dict[str, Any]] = []
    for subject in state.subjects(deleted):
        if not subject.startswith(prefix):
            continue
        versions = state.versions(subject, deleted)
        for number in versions[-1:] if latest_only else versions:
            found.append(version_json(registry, state.get_version(subject, number, deleted)))
    offset = max(0, int_param(request.query.get("offset", "0"), 400, "Invalid offset"))
    limit = int_param(request.query.get("limit", "-1"), 400, "Invalid limit")
    return answer(found[offset:] if limit < 0 else found[offset:offset + limit])


def schema_id_of(request: web.Request) -> int:
    return int_param(request.match_info["id"], errors.SCHEMA_NOT_FOUND,
                     f"Schema {request.match_info['id']} not found")


async def schema_by_id(request: web.Request) -> web.Response:
    registry = registry_of(request)
    found = registry.state.schema_by_id(schema_id_of(request))
    out: dict[str, Any] = {}
    if found.schema_type is not SchemaType.AVRO:
        out["schemaType"] = found.schema_type.value
    if found.references:
        out["references"] = [r.to_json() for r in found.references]
    out["schema"] = schema_text(registry.state, found, request.query.get("format"))
    return answer(out)


async def schema_by_id_text(request: web.Request) -> web.Response:
    registry = registry_of(request)
    found = registry.state.schema_by_id(schema_id_of(request))
    return web.Response(text=schema_text(registry.state, found, request.query.get("format")),
                        content_type=CONTENT_TYPE)


async def schema_versions(request: web.Request) -> web.Response:
    state = registry_of(request).state
    pairs = state.versions_of_id(schema_id_of(request), flag(request, "deleted"))
    return answer([{"subject": s, "version": v} for s, v in pairs])


async def schema_subjects(request: web.Request) -> web.Response:
    state = registry_of(request).state
    pairs = state.versions_of_id(schema_id_of(request), flag(request, "deleted"))
    return answer(sorted({s for s, _ in pairs}))


def config_subject(request: web.Request) -> str | None:
    return request.match_info.get("subject")


async def get_config(request: web.Request) -> web.Response:
    state = registry_of(request).state
    level = state.get_config(config_subject(request), flag(request, "defaultToGlobal"))
    return answer({"compatibilityLevel": level})


async def put_config(request: web.Request) -> web.Response:
    raw = await request.read()
    body = await body_of(request)
    level = body.get("compatibility", body.get("compatibilityLevel"))
    subject = config_subject(request)

    def plan(state: RegistryState) -> tuple[Any, Sequence[Record]]:
        value, records = state.set_config(subject, level)
        return {"compatibility": value}, records

    return await write(request, plan, raw)


async def delete_config(request: web.Request) -> web.Response:
    subject = config_subject(request)

    def plan(state: RegistryState) -> tuple[Any, Sequence[Record]]:
        value, records = state.delete_config(subject)
        return {"compatibilityLevel": value}, records

    return await write(request, plan)


async def get_mode(request: web.Request) -> web.Response:
    state = registry_of(request).state
    mode = state.get_mode(config_subject(request), flag(request, "defaultToGlobal"))
    return answer({"mode": mode.value})


async def put_mode(request: web.Request) -> web.Response:
    raw = await request.read()
    body = await body_of(request)
    subject = config_subject(request)
    force = flag(request, "force")

    def plan(state: RegistryState) -> tuple[Any, Sequence[Record]]:
        value, records = state.set_mode(subject, body.get("mode"), force)
        return {"mode": value}, records

    return await write(request, plan, raw)


async def delete_mode(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]

    def plan(state: RegistryState) -> tuple[Any, Sequence[Record]]:
        value, records = state.delete_mode(subject)
        return {"mode": value}, records

    return await write(request, plan)


async def compatibility(request: web.Request) -> web.Response:
    state = registry_of(request).state
    req = schema_request(await body_of(request))
    messages = state.test_compatibility(subject_of(request), req.schema, req.schema_type,
                                        req.references, request.match_info.get("version"))
    out: dict[str, Any] = {"is_compatible": not messages}
    if flag(request, "verbose"):
        out["messages"] = messages
    return answer(out)


def build_app(registry: Registry) -> web.Application:
    app = web.Application(middlewares=[json_errors, basic_auth],
                          client_max_size=16 * 1024 * 1024)
    app[REGISTRY_KEY] = registry
    r = app.router
    r.add_get("/", root)
    r.add_get("/schemas/types", schema_types)
    r.add_get("/contexts", contexts)
    r.add_get("/v1/metadata/id", metadata_id)
    r.add_get("/subjects", list_subjects)
    r.add_post("/subjects/{subject}", lookup)
    r.add_delete("/subjects/{subject}", delete_subject)
    r.add_get("/subjects/{subject}/versions", list_versions)
    r.add_post("/subjects/{subject}/versions", register)
    r.add_get("/subjects/{subject}/versions/{version}", get_version)
    r.add_delete("/subjects/{subject}/versions/{version}", delete_version)
    r.add_get("/subjects/{subject}/versions/{version}/schema", get_version_schema)
    r.add_get("/subjects/{subject}/versions/{version}/referencedby", referenced_by)
    r.add_get("/schemas", list_schemas)
    r.add_get("/schemas/ids/{id}", schema_by_id)
    r.add_get("/schemas/ids/{id}/schema", schema_by_id_text)
    r.add_get("/schemas/ids/{id}/versions", schema_versions)
    r.add_get("/schemas/ids/{id}/subjects", schema_subjects)
    for prefix in ("/config", "/config/{subject}"):
        r.add_get(prefix, get_config)
        r.add_put(prefix, put_config)
        r.add_delete(prefix, delete_config)
    r.add_get("/mode", get_mode)
    r.add_put("/mode", put_mode)
    r.add_get("/mode/{subject}", get_mode)
    r.add_put("/mode/{subject}", put_mode)
    r.add_delete("/mode/{subject}", delete_mode)
    r.add_post("/compatibility/subjects/{subject}/versions", compatibility)
    r.add_post("/compatibility/subjects/{subject}/versions/{version}", compatibility)

    async def lifecycle(app: web.Application) -> Any:
        await registry.start()
        yield
        await registry.stop()

    app.cleanup_ctx.append(lifecycle)
    return app


def listen_url(settings: RegistrySettings, host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    scheme = "https" if settings.tls_cert is not None else "http"
    return f"{scheme}://{shown}:{port}"


async def serve(settings: RegistrySettings, host: str,
                port: int) -> tuple[web.AppRunner, Registry, int]:
    """Bind first (the advertised URL needs the port), then start the registry (it reads
    `_schemas` to its end before the site accepts requests) and serve."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host or "0.0.0.0", port))
    bound = int(sock.getsockname()[1])
    registry = Registry(settings, listen_url(settings, host, bound))
    runner = web.AppRunner(build_app(registry), access_log=None)
    try:
        await runner.setup()
        site = web.SockSite(runner, sock, ssl_context=settings.server_ssl())
        await site.start()
    except BaseException:
        sock.close()
        with contextlib.suppress(Exception):
            await runner.cleanup()
        raise
    return runner, registry, bound


@dataclass(slots=True)
class RunningRegistry:
    """A registry served by a thread of its own (tests, `strom serve --registry`)."""

    url: str
    port: int
    registry: Registry
    _served: LoopThread[tuple[web.AppRunner, Registry, int]]

    def stop(self) -> None:
        self._served.stop(self._served.value[0], cleanup_timeout_s=30)


def start_in_thread(settings: RegistrySettings, host: str = "127.0.0.1",
                    port: int = 0) -> RunningRegistry:
    """Start the registry on its own event loop in a daemon thread; returns once it has read
    `_schemas` to its end and listens."""
    served = start_loop_thread(lambda: serve(settings, host, port), "strom-registry",
                               timeout_s=120)
    _runner, registry, bound = served.value
    return RunningRegistry(registry.url, bound, registry, served)
