"""Kafka Connect's REST API (aiohttp) over a `Herder`.

Paths, JSON shapes and status codes are Kafka Connect's (ConnectorsResource,
ConnectorPluginsResource, LoggingResource, RootResource); errors are
``{"error_code": N, "message": "..."}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from strom.connect import loggers
from strom.connect.discovery import PluginNotFound, connector_plugins, find_connector
from strom.connect.herder import Herder
from strom.connect.states import BadRequest, HerderError, NotFound, TargetState
from strom.connect.validation import (
    other_plugin_config_definitions,
    plugin_config_definitions,
)

log = logging.getLogger(__name__)

HERDER_KEY = web.AppKey("herder", Herder)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, message: str,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error_code": status, "message": message}, status=status,
                             headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HerderError as error:
        return error_response(error.status, error.message)
    except web.HTTPException as error:
        if error.status >= 400:
            # Jersey's messages: "HTTP 404 Not Found", "HTTP 405 Method Not Allowed" (with
            # its Allow header).
            allow = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
            return error_response(error.status, f"HTTP {error.status} {error.reason}", allow)
        raise
    except Exception as error:
        log.exception("REST request %s %s failed", request.method, request.path)
        return error_response(500, f"{type(error).__name__}: {error}")


def _herder(request: web.Request) -> Herder:
    return request.app[HERDER_KEY]


def _flag(request: web.Request, name: str, default: bool = False) -> bool:
    """A boolean query parameter as JAX-RS reads one: true only for "true" (any case)."""
    value = request.query.get(name)
    return default if value is None else value.lower() == "true"


def _location(request: web.Request, name: str) -> str:
    return f"{request.url.origin()}/connectors/{quote(name, safe='')}"


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(f"Invalid JSON: {error}") from error


def _string_config(config: Any) -> dict[str, str]:
    if not isinstance(config, dict):
        raise BadRequest("Connector configuration must be a JSON object")
    return {str(k): v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list))
            else str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in config.items() if v is not None}


def _task_id(request: web.Request) -> int:
    try:
        return int(request.match_info["task"])
    except ValueError as error:
        raise NotFound(f"Task {request.match_info['task']} not found") from error


# --- root --------------------------------------------------------------------------------------

async def root(request: web.Request) -> web.Response:
    return web.json_response(_herder(request).server_info())


# --- connectors --------------------------------------------------------------------------------

async def list_connectors(request: web.Request) -> web.Response:
    herder = _herder(request)
    names = await herder.connectors()
    if "expand" not in request.query:
        return web.json_response(names)
    # Kafka: `expand=status&expand=info`; `expand=status,info` is accepted too. Unknown
    # expansions are ignored.
    expand = {part.strip() for value in request.query.getall("expand")
              for part in value.split(",")}
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        entry: dict[str, Any] = {}
        try:
            if "status" in expand:
                entry["status"] = await herder.connector_status(name)
            if "info" in expand:
                entry["info"] = (await herder.connector_info(name)).to_json()
        except NotFound:
            continue
        out[name] = entry
    return web.json_response(out)


async def create_connector(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object with name and config")
    config = _string_config(body.get("config") or {})
    raw_name = body.get("name")
    if raw_name is not None and not isinstance(raw_name, str):
        raise BadRequest("Connector name must be a string")
    name = (raw_name or "").strip()  # as Kafka: the name of the request, trimmed
    if "name" in config and config["name"] != name:
        raise BadRequest(f"Connector name configuration ({config['name']}) doesn't match "
                         f"connector name in the URL ({name})")
    if not name:
        raise BadRequest("Connector name must not be empty")
    if "/" in name:
        raise BadRequest("Connector name must not contain '/'")
    initial = body.get("initial_state")  # KIP-980
    target = None
    if initial is not None:
        if not isinstance(initial, str) or initial.upper() not in ("RUNNING", "PAUSED",
                                                                    "STOPPED"):
            raise BadRequest(f"Invalid initial state {initial}: must be one of RUNNING, "
                             "PAUSED, STOPPED")
        target = TargetState.STARTED if initial.upper() == "RUNNING" \
            else TargetState[initial.upper()]
    herder = _herder(request)
    _, info = await herder.put_connector_config(name, config, allow_replace=False,
                                                initial_state=target)
    return web.json_response(info.to_json(), status=201,
                             headers={"Location": _location(request, name)})


async def get_connector(request: web.Request) -> web.Response:
    info = await _herder(request).connector_info(request.match_info["name"])
    return web.json_response(info.to_json())


async def get_config(request: web.Request) -> web.Response:
    return web.json_response(await _herder(request).connector_config(request.match_info["name"]))


async def put_config(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    config = _string_config(await _json_body(request))
    if "name" in config and config["name"] != name:
        raise BadRequest(f"Connector name configuration ({config['name']}) doesn't match "
                         f"connector name in the URL ({name})")
    created, info = await _herder(request).put_connector_config(name, config,
                                                                allow_replace=True)
    if created:
        return web.json_response(info.to_json(), status=201,
                                 headers={"Location": _location(request, name)})
    return web.json_response(info.to_json())


async def delete_connector(request: web.Request) -> web.Response:
    await _herder(request).delete_connector(request.match_info["name"])
    return web.Response(status=204)


async def connector_status(request: web.Request) -> web.Response:
    return web.json_response(await _herder(request).connector_status(request.match_info["name"]))


async def restart_connector(request: web.Request) -> web.Response:
    status = await _herder(request).restart_connector(
        request.match_info["name"], _flag(request, "includeTasks"), _flag(request, "onlyFailed"))
    if status is None:
        return web.Response(status=204)
    return web.json_response(status, status=202)


def _target(state: TargetState, code: int) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        await _herder(request).set_target_state(request.match_info["name"], state)
        return web.Response(status=code)
    return handler


async def task_configs(request: web.Request) -> web.Response:
    return web.json_response(await _herder(request).task_configs(request.match_info["name"]))


async def tasks_config(request: web.Request) -> web.Response:
    """The deprecated GET /connectors/{name}/tasks-config: {"name-0": {...}}."""
    name = request.match_info["name"]
    tasks = await _herder(request).task_configs(name)
    return web.json_response({f"{name}-{t['id']['task']}": t["config"] for t in tasks})


async def task_status(request: web.Request) -> web.Response:
    return web.json_response(await _herder(request).task_status(request.match_info["name"],
                                                                _task_id(request)))


async def restart_task(request: web.Request) -> web.Response:
    await _herder(request).restart_task(request.match_info["name"], _task_id(request))
    return web.Response(status=204)


async def topics(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return web.json_response({name: {"topics": await _herder(request).active_topics(name)}})


async def reset_topics(request: web.Request) -> web.Response:
    await _herder(request).reset_active_topics(request.match_info["name"])
    return web.Response(status=202)


async def get_offsets(request: web.Request) -> web.Response:
    offsets = await _herder(request).connector_offsets(request.match_info["name"])
    return web.json_response({"offsets": offsets})


async def patch_offsets(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("offsets"), (list, type(None))):
        raise BadRequest("Offsets must be specified in the request body as "
                         '{"offsets": [{"partition": ..., "offset": ...}]}')
    if not body.get("offsets"):
        raise BadRequest("Partitions / offsets need to be provided for an alter offsets request")
    if not all(isinstance(entry, dict) for entry in body["offsets"]):
        raise BadRequest('Each offset must be {"partition": {...}, "offset": {...}}')
    await _herder(request).alter_offsets(request.match_info["name"], body["offsets"])
    return web.json_response({"message": "The offsets for this connector have been altered "
                                         "successfully"})


async def delete_offsets(request: web.Request) -> web.Response:
    await _herder(request).alter_offsets(request.match_info["name"], None)
    return web.json_response({"message": "The offsets for this connector have been reset "
                                         "successfully"})


# --- metrics -----------------------------------------------------------------------------------

async def metrics(request: web.Request) -> web.Response:
    """The worker's metrics (strom.connect.metrics) in Prometheus' text format."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    body = await _herder(request).metrics()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# --- connector plugins -------------------------------------------------------------------------

def _other_plugins() -> list[dict[str, Any]]:
    """Converters, header converters, transformations and predicates under Kafka's names
    (`?connectorsOnly=false`), with Kafka's plugin type names."""
    from strom import __version__
    from strom.connect import plugins
    return [{"class": name, "type": kind, "version": __version__}
            for kind in ("converter", "header_converter", "transformation", "predicate")
            for name in plugins.full_names(kind)]


async def list_plugins(request: web.Request) -> web.Response:
    out: list[dict[str, Any]] = [{"class": p.class_name, "type": p.type, "version": p.version()}
                                 for p in connector_plugins()]
    if not _flag(request, "connectorsOnly", default=True):
        out += _other_plugins()
    return web.json_response(out)


async def plugin_config(request: web.Request) -> web.Response:
    """A connector's settings, or (KIP-769) a transformation's, predicate's or converter's."""
    name = request.match_info["plugin"]
    try:
        plugin = find_connector(name)
    except PluginNotFound as error:
        others = other_plugin_config_definitions(name)
        if others is None:
            raise NotFound(str(error)) from error
        return web.json_response(others)
    return web.json_response(plugin_config_definitions(plugin))


async def validate_config(request: web.Request) -> web.Response:
    plugin = request.match_info["plugin"]
    config = _string_config(await _json_body(request))
    declared = config.get("connector.class")
    if declared is not None and declared != plugin:
        try:
            same = find_connector(declared).class_name == find_connector(plugin).class_name
        except PluginNotFound:
            same = False
        if not same:
            raise BadRequest(f"Included connector type {declared} does not match request type "
                             f"{plugin}")
    config.setdefault("connector.class", plugin)
    return web.json_response(await _herder(request).validate(plugin, config))


# --- loggers (KIP-495, KIP-976) -----------------------------------------------------------------

async def list_loggers(request: web.Request) -> web.Response:
    return web.json_response(loggers.all_logger_levels())


async def get_logger(request: web.Request) -> web.Response:
    name = request.match_info["logger"]
    level = loggers.logger_level(name)
    if level is None:
        raise NotFound(f"Logger {name} not found.")
    return web.json_response(level)


async def put_logger(request: web.Request) -> web.Response:
    name = request.match_info["logger"]
    body = await _json_body(request)
    level_name = body.get("level") if isinstance(body, dict) else None
    if not isinstance(level_name, str):
        raise BadRequest("Desired 'level' parameter was not specified in request.")
    level = loggers.parse_level(level_name)
    if level is None:
        raise NotFound(f"invalid log level '{level_name}'.")  # Kafka's status for it
    scope = request.query.get("scope", "worker").lower()
    if scope == "cluster":
        await _herder(request).set_cluster_logger_level(name, level_name.upper())
        return web.Response(status=204)
    if scope != "worker":
        log.warning("invalid logger scope %r: using worker", scope)
    return web.json_response(loggers.set_level(name, level))


# Kafka Connect's endpoints: (method, path, handler). Each also answers with a trailing slash, as
# Jersey's do (`DELETE /connectors/name/`); GETs answer HEAD too.
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/", root),
    ("GET", "/connectors", list_connectors),
    ("POST", "/connectors", create_connector),
    ("GET", "/connectors/{name}", get_connector),
    ("DELETE", "/connectors/{name}", delete_connector),
    ("GET", "/connectors/{name}/config", get_config),
    ("PUT", "/connectors/{name}/config", put_config),
    ("GET", "/connectors/{name}/status", connector_status),
    ("POST", "/connectors/{name}/restart", restart_connector),
    ("PUT", "/connectors/{name}/pause", _target(TargetState.PAUSED, 202)),
    ("PUT", "/connectors/{name}/resume", _target(TargetState.STARTED, 202)),
    ("PUT", "/connectors/{name}/stop", _target(TargetState.STOPPED, 204)),
    ("GET", "/connectors/{name}/tasks", task_configs),
    ("GET", "/connectors/{name}/tasks-config", tasks_config),
    ("GET", "/connectors/{name}/tasks/{task}/status", task_status),
    ("POST", "/connectors/{name}/tasks/{task}/restart", restart_task),
    ("GET", "/connectors/{name}/topics", topics),
    ("PUT", "/connectors/{name}/topics/reset", reset_topics),
    ("GET", "/connectors/{name}/offsets", get_offsets),
    ("PATCH", "/connectors/{name}/offsets", patch_offsets),
    ("DELETE", "/connectors/{name}/offsets", delete_offsets),
    ("GET", "/connector-plugins", list_plugins),
    ("GET", "/connector-plugins/{plugin}/config", plugin_config),
    ("PUT", "/connector-plugins/{plugin}/config/validate", validate_config),
    ("GET", "/admin/loggers", list_loggers),
    ("GET", "/admin/loggers/{logger}", get_logger),
    ("PUT", "/admin/loggers/{logger}", put_logger),
]


def make_app(herder: Herder) -> web.Application:
    app = web.Application(middlewares=[errors_middleware])
    app[HERDER_KEY] = herder
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
        if method == "GET":
            app.router.add_route("HEAD", path, handler)
        if path != "/":
            app.router.add_route(method, path + "/", handler)
    # Not one of Kafka Connect's endpoints (Kafka's workers report metrics over JMX).
    app.router.add_route("GET", "/metrics", metrics)
    app.router.add_route("HEAD", "/metrics", metrics)
    return app
