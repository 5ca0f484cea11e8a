"""Kafka Connect's REST API, endpoint by endpoint (ConnectorsResource, ConnectorPluginsResource,
LoggingResource, RootResource): a table of the 27 method+path pairs, each with its success case
(status code and the exact keys and types of the JSON body) and its main error cases, against an
in-process standalone worker. The table must list exactly the routes strom.connect.rest serves:
an endpoint added or removed without its row fails `test_the_table_is_every_route`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from strom.connect import rest
from strom.testing import EmbeddedBroker
from tests.integration.conftest import unique_name
from tests.integration.connect_worker import ConnectWorker, wait_for
from tests.integration.group_clients import GROUP_BROKER_SETTINGS

SOURCE = "tests.integration.connect_plugins:CountingSource"


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return dict(GROUP_BROKER_SETTINGS)


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ConnectWorker]:
    props = {"bootstrap.servers": broker.bootstrap_servers,
             "key.converter": "org.apache.kafka.connect.storage.StringConverter",
             "value.converter": "org.apache.kafka.connect.storage.StringConverter",
             "offset.storage.file.filename": str(tmp_path_factory.mktemp("offsets") / "o"),
             "offset.flush.interval.ms": "200"}
    with ConnectWorker(props) as running:
        yield running


# --- the JSON shapes ---------------------------------------------------------------------------

class MapOf:
    """A JSON object of any keys, each value of `schema`."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema


class Anything:
    pass


def conforms(value: Any, schema: Any, where: str = "$") -> None:
    """`schema`: a type; a dict of exact keys (`key?`: optional); [item schema]; MapOf; a tuple
    of alternatives; None for null; Anything."""
    if schema is Anything:
        return
    if isinstance(schema, tuple):
        _one_of(value, schema, where)
    elif schema is None:
        assert value is None, f"{where}: {value!r} is not null"
    elif isinstance(schema, dict):
        _object(value, schema, where)
    elif isinstance(schema, list):
        assert isinstance(value, list), f"{where}: {value!r} is not an array"
        for i, item in enumerate(value):
            conforms(item, schema[0], f"{where}[{i}]")
    elif isinstance(schema, MapOf):
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        for key, item in value.items():
            conforms(item, schema.schema, f"{where}.{key}")
    elif schema is int:
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r}"
    else:
        assert isinstance(value, schema), f"{where}: {value!r} is not {schema.__name__}"


def _one_of(value: Any, alternatives: tuple[Any, ...], where: str) -> None:
    errors = []
    for alternative in alternatives:
        try:
            conforms(value, alternative, where)
            return
        except AssertionError as error:
            errors.append(str(error))
    raise AssertionError(f"{where}: {value!r} matches none of {errors}")


def _object(value: Any, schema: dict[str, Any], where: str) -> None:
    assert isinstance(value, dict), f"{where}: {value!r} is not an object"
    required = {k for k in schema if not k.endswith("?")}
    allowed = {k.rstrip("?") for k in schema}
    assert required <= set(value), f"{where}: missing {required - set(value)} in {value!r}"
    assert set(value) <= allowed, f"{where}: unexpected {set(value) - allowed}"
    for key, sub in schema.items():
        if key.rstrip("?") in value:
            conforms(value[key.rstrip("?")], sub, f"{where}.{key.rstrip('?')}")


SERVER_INFO = {"version": str, "commit": str, "kafka_cluster_id": str}
STATE = {"state": str, "worker_id": str, "trace?": str}
TASK_STATE = {"id": int, "state": str, "worker_id": str, "trace?": str}
STATUS = {"name": str, "connector": STATE, "tasks": [TASK_STATE], "type": str}
INFO = {"name": str, "config": MapOf(str), "tasks": [{"connector": str, "task": int}],
        "type": str}
TASK_INFO = {"id": {"connector": str, "task": int}, "config": MapOf(str)}
TOPICS = MapOf({"topics": [str]})
OFFSETS = {"offsets": [{"partition": MapOf(Anything), "offset": MapOf(Anything)}]}
MESSAGE = {"message": str}
PLUGIN = {"class": str, "type": str, "version": str}
CONFIG_KEY = {"name": str, "type": str, "required": bool, "default_value": (str, None),
              "importance": str, "documentation": (str, None), "group": (str, None),
              "order": int, "width": str, "display_name": str, "dependents": [str]}
CONFIG_VALUE = {"name": str, "value": (str, None), "recommended_values": [str], "errors": [str],
                "visible": bool}
CONFIG_INFOS = {"name": str, "error_count": int, "groups": [str],
                "configs": [{"definition": CONFIG_KEY, "value": CONFIG_VALUE}]}
LOGGER = {"level": str, "last_modified": (int, None)}
ERROR = {"error_code": int, "message": str}


# --- the client --------------------------------------------------------------------------------

@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw) if self.raw else None


def send(url: str, method: str, body: Any = None, raw: bytes | None = None) -> Answer:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, dict(error.headers), error.read())


# --- the table ---------------------------------------------------------------------------------

@dataclass
class Env:
    """Per case: `running` (a CountingSource RUNNING with one task), `stopped` (one created
    STOPPED), `missing` (no such connector), `new` (a name free to create)."""
    worker: ConnectWorker
    running: str
    stopped: str
    missing: str
    new: str

    def path(self, template: str) -> str:
        return template.format(running=self.running, stopped=self.stopped,
                               missing=self.missing, new=self.new)


Check = Callable[[Answer, Env], object]  # False: failed


@dataclass
class Case:
    what: str
    method: str
    path: str  # with {running}, {stopped}, {missing}, {new}
    status: int
    shape: Any = None  # None: no body
    body: Any = None
    raw: bytes | None = None
    check: Check | None = None


@dataclass
class Endpoint:
    method: str
    route: str
    cases: list[Case] = field(default_factory=list)


def source(topic: str = "contract", **extra: str) -> dict[str, str]:
    return {"connector.class": SOURCE, "tasks.max": "1", "topic": topic, **extra}


def message_has(*parts: str) -> Check:
    def check(answer: Answer, env: Env) -> None:
        for part in parts:
            expected = part.replace("{running}", env.running).replace("{new}", env.new)
            assert expected in answer.body["message"], (expected, answer.body)
    return check


def all_of(*checks: Check) -> Check:
    def check(answer: Answer, env: Env) -> None:
        for one in checks:
            one(answer, env)
    return check


def created(answer: Answer, env: Env) -> None:
    assert answer.headers["Location"].endswith(f"/connectors/{env.new}")
    assert answer.body["name"] == env.new and answer.body["config"]["name"] == env.new


def listed_names(answer: Answer, env: Env) -> None:
    assert {env.running, env.stopped} <= set(answer.body)


def expanded(*keys: str) -> Check:
    def check(answer: Answer, env: Env) -> None:
        entry = answer.body[env.running]
        assert set(entry) == set(keys), entry
        if "status" in keys:
            conforms(entry["status"], STATUS)
            assert answer.body[env.stopped]["status"]["connector"]["state"] == "STOPPED"
        if "info" in keys:
            conforms(entry["info"], INFO)
    return check


def restarting(connector: bool, tasks: bool) -> Check:
    def check(answer: Answer, env: Env) -> None:
        body = answer.body
        assert body["name"] == env.running
        assert (body["connector"]["state"] == "RESTARTING") is connector, body
        assert body["tasks"] and all((t["state"] == "RESTARTING") is tasks
                                     for t in body["tasks"]), body
    return check


def validation_errors(answer: Answer, _env: Env) -> None:
    body = answer.body
    errors = {c["value"]["name"]: c["value"]["errors"] for c in body["configs"]}
    assert errors["topic"] == ['Missing required configuration "topic" which has no default '
                               'value.']
    assert errors["tasks.max"] == ["Invalid value zero for configuration tasks.max: Not a "
                                   "number of type INT"]
    assert body["error_count"] == 2 == sum(len(e) for e in errors.values())
    assert body["name"] == SOURCE and "Common" in body["groups"]
    value = next(c["value"] for c in body["configs"] if c["value"]["name"] == "tasks.max")
    assert value["value"] == "zero"


def transform_errors(answer: Answer, _env: Env) -> None:
    body = answer.body
    errors = {c["value"]["name"]: c["value"]["errors"] for c in body["configs"]}
    assert {name: e for name, e in errors.items() if e} == {
        "transforms.a.type": ['Missing required configuration "transforms.a.type" which has '
                              'no default value.'],
        "transforms.b.type": ["Invalid value Nope for configuration transforms.b.type: Class "
                              "Nope could not be found."],
        "predicates.p.pattern": ['Missing required configuration "predicates.p.pattern" '
                                 'which has no default value.']}
    assert body["error_count"] == 3
    assert {"Transforms: a", "Transforms: b", "Transforms: c", "Predicates: p"} <= set(
        body["groups"])
    assert {"transforms.c.predicate", "transforms.c.negate", "transforms.c.static.field"} <= set(
        errors)
    static = next(c for c in body["configs"] if c["value"]["name"] == "transforms.c.static.field")
    assert static["value"]["value"] == "s" and static["definition"]["group"] == "Transforms: c"


INVALID = ("Connector configuration is invalid and contains the following 1 error(s):",
           "You can also find the above list of errors at the endpoint "
           "`/connector-plugins/{connectorType}/config/validate`")
NOT_STOPPED = ("Connectors must be in the STOPPED state before their offsets can be modified",)
PATCH = {"offsets": [{"partition": {"task": "0"}, "offset": {"n": 5}}]}
VALIDATE = f"/connector-plugins/{SOURCE}/config/validate"


def not_found(method: str, path: str, what: str = "unknown connector") -> Case:
    return Case(what, method, path, 404, ERROR)


ENDPOINTS = [
    Endpoint("GET", "/", [Case("server info", "GET", "/", 200, SERVER_INFO)]),
    Endpoint("GET", "/connectors", [
        Case("names", "GET", "/connectors", 200, [str], check=listed_names),
        Case("expand=status", "GET", "/connectors?expand=status", 200,
             MapOf({"status": STATUS}), check=expanded("status")),
        Case("expand=info", "GET", "/connectors?expand=info", 200, MapOf({"info": INFO}),
             check=expanded("info")),
        Case("Kafka UI's expand=info&expand=status", "GET",
             "/connectors?expand=info&expand=status", 200,
             MapOf({"status": STATUS, "info": INFO}), check=expanded("status", "info")),
        Case("expand=status,info", "GET", "/connectors?expand=status,info", 200,
             MapOf({"status": STATUS, "info": INFO}), check=expanded("status", "info")),
        Case("an unknown expansion is ignored", "GET", "/connectors?expand=nothing", 200,
             MapOf({}), check=expanded()),
    ]),
    Endpoint("POST", "/connectors", [
        Case("create", "POST", "/connectors", 201, INFO, {"name": "{new}", "config": source()},
             check=created),
        Case("exists", "POST", "/connectors", 409, ERROR,
             {"name": "{running}", "config": source()},
             check=message_has("Connector {running} already exists")),
        Case("bad JSON", "POST", "/connectors", 400, ERROR, raw=b'{"name": '),
        Case("no name", "POST", "/connectors", 400, ERROR, {"config": source()}),
        Case("name mismatch", "POST", "/connectors", 400, ERROR,
             {"name": "{new}", "config": source(name="other")},
             check=message_has("Connector name configuration (other) doesn't match connector "
                               "name in the URL ({new})")),
        Case("invalid config", "POST", "/connectors", 400, ERROR,
             {"name": "{new}", "config": source(**{"tasks.max": "zero"})},
             check=message_has(*INVALID, "tasks.max: Invalid value zero")),
        Case("no connector.class", "POST", "/connectors", 400, ERROR,
             {"name": "{new}", "config": {"topic": "t"}}, check=message_has("no connector type")),
        Case("bad initial_state", "POST", "/connectors", 400, ERROR,
             {"name": "{new}", "config": source(), "initial_state": "NAPPING"}),
    ]),
    Endpoint("GET", "/connectors/{name}", [
        Case("info", "GET", "/connectors/{running}", 200, INFO),
        not_found("GET", "/connectors/{missing}"),
    ]),
    Endpoint("DELETE", "/connectors/{name}", [
        Case("delete", "DELETE", "/connectors/{running}", 204),
        not_found("DELETE", "/connectors/{missing}"),
    ]),
    Endpoint("GET", "/connectors/{name}/config", [
        Case("config", "GET", "/connectors/{running}/config", 200, MapOf(str)),
        not_found("GET", "/connectors/{missing}/config"),
    ]),
    Endpoint("PUT", "/connectors/{name}/config", [
        Case("update", "PUT", "/connectors/{running}/config", 200, INFO, source("other")),
        Case("create", "PUT", "/connectors/{new}/config", 201, INFO, source(), check=created),
        Case("name mismatch", "PUT", "/connectors/{running}/config", 400, ERROR,
             source(name="other"), check=message_has("doesn't match")),
        Case("invalid config", "PUT", "/connectors/{running}/config", 400, ERROR,
             source(**{"tasks.max": "zero"}), check=message_has(*INVALID)),
        Case("bad JSON", "PUT", "/connectors/{running}/config", 400, ERROR, raw=b"{,"),
    ]),
    Endpoint("GET", "/connectors/{name}/status", [
        Case("status", "GET", "/connectors/{running}/status", 200, STATUS),
        not_found("GET", "/connectors/{missing}/status"),
    ]),
    Endpoint("POST", "/connectors/{name}/restart", [
        Case("the connector only", "POST", "/connectors/{running}/restart", 204),
        Case("includeTasks=true&onlyFailed=false", "POST",
             "/connectors/{running}/restart?includeTasks=true&onlyFailed=false", 202, STATUS,
             check=restarting(connector=True, tasks=True)),
        Case("onlyFailed=true: nothing failed", "POST",
             "/connectors/{running}/restart?includeTasks=true&onlyFailed=true", 202, STATUS,
             check=restarting(connector=False, tasks=False)),
        not_found("POST", "/connectors/{missing}/restart"),
    ]),
    Endpoint("PUT", "/connectors/{name}/pause", [
        Case("pause", "PUT", "/connectors/{running}/pause", 202),
        not_found("PUT", "/connectors/{missing}/pause"),
    ]),
    Endpoint("PUT", "/connectors/{name}/resume", [
        Case("resume", "PUT", "/connectors/{running}/resume", 202),
        Case("resume a stopped one", "PUT", "/connectors/{stopped}/resume", 202),
        not_found("PUT", "/connectors/{missing}/resume"),
    ]),
    Endpoint("PUT", "/connectors/{name}/stop", [
        Case("stop", "PUT", "/connectors/{running}/stop", 204),
        Case("idempotent", "PUT", "/connectors/{stopped}/stop", 204),
        not_found("PUT", "/connectors/{missing}/stop"),
    ]),
    Endpoint("GET", "/connectors/{name}/tasks", [
        Case("task configs", "GET", "/connectors/{running}/tasks", 200, [TASK_INFO]),
        not_found("GET", "/connectors/{missing}/tasks"),
    ]),
    Endpoint("GET", "/connectors/{name}/tasks-config", [
        Case("deprecated task configs", "GET", "/connectors/{running}/tasks-config", 200,
             MapOf(MapOf(str))),
        not_found("GET", "/connectors/{missing}/tasks-config"),
    ]),
    Endpoint("GET", "/connectors/{name}/tasks/{task}/status", [
        Case("task status", "GET", "/connectors/{running}/tasks/0/status", 200, TASK_STATE),
        not_found("GET", "/connectors/{running}/tasks/7/status", "unknown task"),
        not_found("GET", "/connectors/{running}/tasks/x/status", "not a task number"),
        not_found("GET", "/connectors/{missing}/tasks/0/status"),
    ]),
    Endpoint("POST", "/connectors/{name}/tasks/{task}/restart", [
        Case("restart a task", "POST", "/connectors/{running}/tasks/0/restart", 204),
        not_found("POST", "/connectors/{running}/tasks/7/restart", "unknown task"),
        not_found("POST", "/connectors/{missing}/tasks/0/restart"),
    ]),
    Endpoint("GET", "/connectors/{name}/topics", [
        Case("active topics", "GET", "/connectors/{running}/topics", 200, TOPICS),
        not_found("GET", "/connectors/{missing}/topics"),
    ]),
    Endpoint("PUT", "/connectors/{name}/topics/reset", [
        Case("reset", "PUT", "/connectors/{running}/topics/reset", 202),
        not_found("PUT", "/connectors/{missing}/topics/reset"),
    ]),
    Endpoint("GET", "/connectors/{name}/offsets", [
        Case("offsets", "GET", "/connectors/{running}/offsets", 200, OFFSETS),
        Case("of a stopped one", "GET", "/connectors/{stopped}/offsets", 200, OFFSETS),
        not_found("GET", "/connectors/{missing}/offsets"),
    ]),
    Endpoint("PATCH", "/connectors/{name}/offsets", [
        Case("alter", "PATCH", "/connectors/{stopped}/offsets", 200, MESSAGE, PATCH,
             check=message_has("The offsets for this connector have been altered "
                               "successfully")),
        Case("not STOPPED", "PATCH", "/connectors/{running}/offsets", 400, ERROR, PATCH,
             check=message_has(*NOT_STOPPED)),
        Case("no offsets", "PATCH", "/connectors/{stopped}/offsets", 400, ERROR,
             {"offsets": []}, check=message_has("Partitions / offsets need to be provided")),
        Case("bad JSON", "PATCH", "/connectors/{stopped}/offsets", 400, ERROR, raw=b"["),
        Case("unknown connector", "PATCH", "/connectors/{missing}/offsets", 404, ERROR, PATCH),
    ]),
    Endpoint("DELETE", "/connectors/{name}/offsets", [
        Case("reset", "DELETE", "/connectors/{stopped}/offsets", 200, MESSAGE,
             check=message_has("The offsets for this connector have been reset successfully")),
        Case("not STOPPED", "DELETE", "/connectors/{running}/offsets", 400, ERROR,
             check=message_has(*NOT_STOPPED)),
        not_found("DELETE", "/connectors/{missing}/offsets"),
    ]),
    Endpoint("GET", "/connector-plugins", [
        Case("connectors", "GET", "/connector-plugins", 200, [PLUGIN],
             check=lambda a, _e: {p["type"] for p in a.body} == {"source", "sink"}),
        Case("connectorsOnly=false", "GET", "/connector-plugins?connectorsOnly=false", 200,
             [PLUGIN], check=lambda a, _e: {p["type"] for p in a.body} == {
                 "source", "sink", "converter", "header_converter", "transformation",
                 "predicate"}),
    ]),
    Endpoint("GET", "/connector-plugins/{plugin}/config", [
        Case("definitions", "GET", "/connector-plugins/FileStreamSource/config", 200,
             [CONFIG_KEY]),
        Case("a transformation's (KIP-769)", "GET",
             "/connector-plugins/org.apache.kafka.connect.transforms.InsertField$Value/config",
             200, [CONFIG_KEY], check=lambda a, _e: "static.field" in {k["name"] for k in a.body}),
        Case("a converter's", "GET", "/connector-plugins/JsonConverter/config", 200,
             [CONFIG_KEY], check=lambda a, _e: "schemas.enable" in {k["name"] for k in a.body}),
        Case("unknown plugin", "GET", "/connector-plugins/NoSuchPlugin/config", 404, ERROR),
    ]),
    Endpoint("PUT", "/connector-plugins/{plugin}/config/validate", [
        Case("valid", "PUT", VALIDATE, 200, CONFIG_INFOS, {**source(), "name": "v"},
             check=lambda a, _e: a.body["error_count"] == 0),
        Case("missing required and bad values", "PUT", VALIDATE, 200, CONFIG_INFOS,
             {"connector.class": SOURCE, "name": "v", "tasks.max": "zero"},
             check=validation_errors),
        Case("transformations and predicates, each alias its own configs", "PUT", VALIDATE,
             200, CONFIG_INFOS, {**source(), "name": "v", "transforms": "a,b,c",
                                 "transforms.b.type": "Nope",
                                 "transforms.c.type": "InsertField$Value",
                                 "transforms.c.static.field": "s",
                                 "predicates": "p", "predicates.p.type": "TopicNameMatches"},
             check=transform_errors),
        Case("another plugin's connector.class", "PUT", VALIDATE, 400, ERROR,
             {"connector.class": "FileStreamSink", "name": "v"},
             check=message_has("does not match request type")),
        Case("unknown plugin", "PUT", "/connector-plugins/NoSuchPlugin/config/validate", 400,
             ERROR, {"connector.class": "NoSuchPlugin"}),
        Case("bad JSON", "PUT", VALIDATE, 400, ERROR, raw=b"nope"),
    ]),
    Endpoint("GET", "/admin/loggers", [
        Case("levels", "GET", "/admin/loggers", 200, MapOf(LOGGER),
             check=lambda a, _e: "root" in a.body),
    ]),
    Endpoint("GET", "/admin/loggers/{logger}", [
        Case("root", "GET", "/admin/loggers/root", 200, LOGGER),
        Case("unknown logger", "GET", "/admin/loggers/no.such.logger", 404, ERROR,
             check=message_has("Logger no.such.logger not found.")),
    ]),
    Endpoint("PUT", "/admin/loggers/{logger}", [
        Case("worker scope", "PUT", "/admin/loggers/strom.contract.a", 200, [str],
             {"level": "DEBUG"}, check=lambda a, _e: a.body == ["strom.contract.a"]),
        Case("cluster scope", "PUT", "/admin/loggers/strom.contract.b?scope=cluster", 204,
             None, {"level": "warn"}),
        Case("scope is case-insensitive", "PUT", "/admin/loggers/strom.contract.c?scope=Cluster",
             204, None, {"level": "INFO"}),
        Case("no level", "PUT", "/admin/loggers/strom.contract.a", 400, ERROR, {},
             check=message_has("Desired 'level' parameter was not specified in request.")),
        Case("invalid level", "PUT", "/admin/loggers/strom.contract.a", 404, ERROR,
             {"level": "LOUD"}, check=message_has("invalid log level 'LOUD'.")),
    ]),
]


def test_the_table_is_every_route(worker: ConnectWorker) -> None:
    table = [(e.method, e.route) for e in ENDPOINTS]
    assert len(table) == len(set(table)) == 27
    assert [(m, p) for m, p, _ in rest.ROUTES] == table
    served = set()
    for route in worker.runtime.runner.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD":
            served.add((route.method, path.rstrip("/") or "/"))
    assert served == set(table) | {("GET", "/metrics")}  # Prometheus' (not Kafka's)
    # Every case's path is one of its endpoint's.
    for endpoint in ENDPOINTS:
        assert endpoint.cases and endpoint.cases[0].status < 300, endpoint.route
        pattern = endpoint.route.split("/")
        for case in endpoint.cases:
            assert case.method == endpoint.method
            parts = case.path.split("?")[0].split("/")
            assert len(parts) == len(pattern) and all(
                p == q or p.startswith("{") for p, q in zip(pattern, parts, strict=True)), case


@pytest.fixture
def env(worker: ConnectWorker) -> Iterator[Env]:
    running, stopped = unique_name("run"), unique_name("stopped")
    code, body = worker.request("POST", "/connectors", {"name": running,
                                                        "config": source(unique_name("t"))})
    assert code == 201, body
    code, body = worker.request("POST", "/connectors", {"name": stopped, "config": source(),
                                                        "initial_state": "STOPPED"})
    assert code == 201, body

    def running_now() -> bool:
        code, status = worker.request("GET", f"/connectors/{running}/status")
        return code == 200 and status["connector"]["state"] == "RUNNING" \
            and [t["state"] for t in status["tasks"]] == ["RUNNING"]

    wait_for(running_now, what="the connector running")
    made = Env(worker, running, stopped, unique_name("missing"), unique_name("new"))
    yield made
    for name in (running, stopped, made.new):
        worker.request("DELETE", f"/connectors/{name}")


def _fill(value: Any, env: Env) -> Any:
    if isinstance(value, str):
        return env.path(value)
    if isinstance(value, dict):
        return {k: _fill(v, env) for k, v in value.items()}
    return value


CASES = [pytest.param(endpoint, case, id=f"{endpoint.method} {endpoint.route}: {case.what}")
         for endpoint in ENDPOINTS for case in endpoint.cases]


@pytest.mark.parametrize(("endpoint", "case"), CASES)
def test_endpoint(env: Env, endpoint: Endpoint, case: Case) -> None:
    answer = send(env.worker.url + env.path(case.path), case.method, _fill(case.body, env),
                  case.raw)
    assert answer.status == case.status, answer.raw
    if case.shape is None:
        assert answer.raw == b"", answer.raw
    else:
        assert answer.headers["Content-Type"].split(";")[0] == "application/json"
        conforms(answer.body, case.shape)
        if case.shape is ERROR:
            assert answer.body["error_code"] == case.status
    if case.check is not None:  # asserts, or answers False
        assert case.check(answer, env) is not False, answer.body


def test_unknown_paths_methods_and_trailing_slashes(env: Env) -> None:
    url = env.worker.url
    answer = send(url + "/no/such/path", "GET")
    assert answer.status == 404
    assert answer.body == {"error_code": 404, "message": "HTTP 404 Not Found"}
    answer = send(url + f"/connectors/{env.running}/status", "DELETE")
    assert answer.status == 405
    assert answer.body == {"error_code": 405, "message": "HTTP 405 Method Not Allowed"}
    assert "GET" in answer.headers["Allow"]
    # As Jersey, a trailing slash matches.
    answer = send(url + "/connectors/", "GET")
    assert answer.status == 200 and env.running in answer.body
    answer = send(url + f"/connectors/{env.running}/config/", "GET")
    assert answer.status == 200 and answer.body["name"] == env.running
    assert send(url + f"/connectors/{env.stopped}/", "DELETE").status == 204
    assert send(url + f"/connectors/{env.stopped}", "GET").status == 404


def test_an_unexpected_failure_is_a_500_error_body(env: Env,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(name: str) -> Any:
        raise RuntimeError("the herder broke")

    monkeypatch.setattr(env.worker.runtime.herder, "connector_config", broken)
    answer = send(env.worker.url + f"/connectors/{env.running}/config", "GET")
    assert answer.status == 500
    assert answer.headers["Content-Type"].split(";")[0] == "application/json"
    assert answer.body == {"error_code": 500, "message": "RuntimeError: the herder broke"}


def test_logger_levels_and_last_modified(worker: ConnectWorker, tmp_path: Path) -> None:
    name = unique_name("strom.contract.levels")
    child = f"{name}.child"
    assert worker.request("PUT", f"/admin/loggers/{child}", {"level": "ERROR"})[0] == 200
    code, changed = worker.request("PUT", f"/admin/loggers/{name}", {"level": "TRACE"})
    assert code == 200 and changed == sorted([name, child])  # the namespace and descendants
    code, level = worker.request("GET", f"/admin/loggers/{child}")
    assert level["level"] == "TRACE" and isinstance(level["last_modified"], int)
    code, levels = worker.request("GET", "/admin/loggers")
    assert levels[name]["level"] == "TRACE"
    assert worker.request("PUT", f"/admin/loggers/{name}?scope=cluster",
                          {"level": "OFF"})[0] == 204
    assert worker.request("GET", f"/admin/loggers/{child}")[1]["level"] == "OFF"
