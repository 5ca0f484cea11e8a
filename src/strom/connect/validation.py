"""Connector config validation in the shape of Kafka's ConfigInfos (PUT
/connector-plugins/{plugin}/config/validate, and POST/PUT of connector configs).

The common settings every connector has (Kafka's ConnectorConfig / SinkConnectorConfig) are
checked here; the connector's own through its `validate()` (A's ConfigDef/ConfigValue)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from strom.connect import topic_creation
from strom.connect.discovery import ConnectorPlugin, PluginNotFound, find_connector
from strom.connect.override_policy import override_errors
from strom.connect.states import BadRequest


@dataclass
class Definition:
    name: str
    type: str
    default: Any
    importance: str
    doc: str
    group: str
    order: int
    display: str = ""
    required: bool = False
    width: str = "NONE"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "required": self.required,
                "default_value": default_string(self.default), "importance": self.importance,
                "documentation": self.doc, "group": self.group, "width": self.width,
                "display_name": self.display or self.name, "dependents": [],
                "order": self.order}


def default_string(default: Any) -> str | None:
    """A default as Kafka's ConfigKeyInfo has it: a string (ConfigDef.convertToString)."""
    if default is None:
        return None
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, (list, tuple)):
        return ",".join(str(v) for v in default)
    return str(default)


@dataclass
class Value:
    name: str
    value: Any
    errors: list[str] = field(default_factory=list)
    recommended: list[Any] = field(default_factory=list)
    visible: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "recommended_values": self.recommended,
                "errors": self.errors, "visible": self.visible}


def _common(sink: bool) -> list[Definition]:
    defs = [
        Definition("name", "STRING", None, "HIGH", "Globally unique name to use for this "
                   "connector.", "Common", 1, "Connector name", required=True, width="MEDIUM"),
        Definition("connector.class", "STRING", None, "HIGH", "Name or alias of the class for "
                   "this connector.", "Common", 2, "Connector class", required=True,
                   width="LONG"),
        Definition("tasks.max", "INT", 1, "HIGH", "Maximum number of tasks to use for this "
                   "connector.", "Common", 3, "Tasks max", width="SHORT"),
        Definition("key.converter", "CLASS", None, "LOW", "Converter class used to convert "
                   "between Kafka Connect format and the serialized form.", "Common", 4,
                   "Key converter class", width="SHORT"),
        Definition("value.converter", "CLASS", None, "LOW", "Converter class used to convert "
                   "between Kafka Connect format and the serialized form.", "Common", 5,
                   "Value converter class", width="SHORT"),
        Definition("header.converter", "CLASS", None, "LOW", "HeaderConverter class used to "
                   "convert between Kafka Connect format and the serialized form.", "Common",
                   6, "Header converter class", width="SHORT"),
        Definition("transforms", "LIST", "", "LOW", "Aliases for the transformations to be "
                   "applied to records.", "Transforms", 7, "Transforms", width="LONG"),
        Definition("predicates", "LIST", "", "LOW", "Aliases for the predicates used by "
                   "transformations.", "Predicates", 8, "Predicates", width="LONG"),
        Definition("errors.retry.timeout", "LONG", 0, "MEDIUM", "The maximum duration in "
                   "milliseconds that a failed operation will be reattempted.",
                   "Error Handling", 1, "Retry Timeout for Errors", width="MEDIUM"),
        Definition("errors.retry.delay.max.ms", "LONG", 60000, "MEDIUM", "The maximum duration "
                   "in milliseconds between consecutive retry attempts.", "Error Handling", 2,
                   "Maximum Delay Between Retries for Errors", width="MEDIUM"),
        Definition("errors.tolerance", "STRING", "none", "MEDIUM", "Behavior for tolerating "
                   "errors during connector operation: 'none' or 'all'.", "Error Handling", 3,
                   "Error Tolerance", width="SHORT"),
        Definition("errors.log.enable", "BOOLEAN", False, "MEDIUM", "Log each error and the "
                   "details of the failed operation.", "Error Handling", 4, "Log Errors",
                   width="SHORT"),
        Definition("errors.log.include.messages", "BOOLEAN", False, "MEDIUM", "Include in the "
                   "log the records that resulted in a failure.", "Error Handling", 5,
                   "Log Error Details", width="SHORT"),
    ]
    if sink:
        defs += [
            Definition("topics", "LIST", "", "HIGH", "List of topics to consume, separated by "
                       "commas", "Common", 4, "Topics", width="LONG"),
            Definition("topics.regex", "STRING", "", "HIGH", "Regular expression giving topics "
                       "to consume.", "Common", 4, "Topics regex", width="LONG"),
            Definition("errors.deadletterqueue.topic.name", "STRING", "", "MEDIUM", "The name "
                       "of the topic to be used as the dead letter queue (DLQ).",
                       "Error Handling", 6, "Dead Letter Queue Topic Name", width="MEDIUM"),
            Definition("errors.deadletterqueue.topic.replication.factor", "SHORT", 3, "MEDIUM",
                       "Replication factor used to create the dead letter queue topic.",
                       "Error Handling", 7, "Dead Letter Queue Topic Replication Factor",
                       width="MEDIUM"),
            Definition("errors.deadletterqueue.context.headers.enable", "BOOLEAN", False,
                       "MEDIUM", "If true, add headers containing error context to the "
                       "messages written to the dead letter queue.", "Error Handling", 8,
                       "Enable Error Context Headers", width="MEDIUM"),
        ]
    else:
        defs += [
            Definition("topic.creation.groups", "LIST", "", "LOW", "Groups of configurations "
                       "for topics created by source connectors (KIP-158), besides the "
                       "default group.", "Topic Creation", 1, "Topic Creation Groups",
                       width="LONG"),
            Definition("exactly.once.support", "STRING", "requested", "MEDIUM", "requested "
                       "or required: whether the connector must support exactly-once "
                       "semantics (checked with the connector when the worker enables "
                       "exactly-once source support).", "Exactly Once Support", 1,
                       "Exactly once support", width="SHORT"),
            Definition("transaction.boundary", "STRING", "poll", "MEDIUM", "poll, interval or "
                       "connector: where a transaction of an exactly-once source task ends "
                       "(after each poll() batch, every transaction.boundary.interval.ms, or "
                       "where the connector says).", "Exactly Once Support", 2,
                       "Transaction Boundary", width="SHORT"),
            Definition("transaction.boundary.interval.ms", "LONG", None, "LOW", "With "
                       "transaction.boundary=interval: the transaction length (default: the "
                       "worker's offset.flush.interval.ms).", "Exactly Once Support", 3,
                       "Transaction boundary interval", width="SHORT"),
        ]
    return defs


def _is_int(value: str) -> bool:
    return re.fullmatch(r"-?\d+", value.strip()) is not None


def _check_source(config: Mapping[str, str], connector: Any, exactly_once_source: bool,
                  err: Callable[[str, str], None]) -> None:
    """KIP-618's exactly.once.support / transaction.boundary (Kafka checks the connector only
    when the worker enables exactly-once source support)."""
    support = config.get("exactly.once.support", "requested").strip().lower()
    if support not in ("requested", "required"):
        err("exactly.once.support", f"Invalid value {config['exactly.once.support']} for "
                                    "configuration exactly.once.support: String must be one "
                                    "of (case insensitive): requested, required")
    boundary = config.get("transaction.boundary", "poll").strip().lower()
    if boundary not in ("poll", "interval", "connector"):
        err("transaction.boundary", f"Invalid value {config['transaction.boundary']} for "
                                    "configuration transaction.boundary: String must be one "
                                    "of (case insensitive): poll, interval, connector")
    interval = config.get("transaction.boundary.interval.ms", "").strip()
    if interval and (not _is_int(interval) or int(interval) < 0):
        err("transaction.boundary.interval.ms",
            f"Invalid value {interval} for configuration transaction.boundary.interval.ms: "
            "Value must be a non-negative number of type LONG")
    if not exactly_once_source:
        return
    if support == "required":
        declared = _ask(connector, "exactly_once_support")
        if declared is None:
            err("exactly.once.support", "The connector does not implement the API required "
                "for preflight validation of exactly-once source support. Check the "
                "connector's documentation for whether it supports exactly-once semantics, "
                "and use \"requested\" for this setting if so (the connector can then be "
                "created, without exactly-once guarantees if it cannot give them).")
        elif str(declared).upper() != "SUPPORTED":
            err("exactly.once.support", "The connector does not support exactly-once "
                "semantics with the provided configuration.")
    if boundary == "connector" and str(_ask(connector, "can_define_transaction_boundaries")
                                       ).upper() != "SUPPORTED":
        err("transaction.boundary", "The connector does not support connector-defined "
            "transaction boundaries with the given configuration. Please reconfigure it to use "
            "a different transaction boundary definition.")


def _ask(connector: Any, method: str) -> Any:
    """A KIP-618 capability of a connector, asked after starting nothing: Kafka passes the
    config; strom's connectors read it from start(), so it is given when the method takes it."""
    ask = getattr(connector, method, None)
    if ask is None:
        return None
    try:
        return ask()
    except Exception as error:
        return f"failed: {error}"


def _check_common(config: Mapping[str, str], sink: bool) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}

    def err(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    if not config.get("name", "").strip():
        err("name", 'Missing required configuration "name" which has no default value.')
    tasks = config.get("tasks.max", "1")
    if not _is_int(tasks):
        err("tasks.max", f"Invalid value {tasks} for configuration tasks.max: Not a number "
                         "of type INT")
    elif int(tasks) < 1:
        err("tasks.max", f"Invalid value {tasks} for configuration tasks.max: Value must be "
                         "at least 1")
    _check_errors(config, err)
    if sink:
        _check_sink(config, err)
    return errors


def _check_errors(config: Mapping[str, str], err: Callable[[str, str], None]) -> None:
    tolerance = config.get("errors.tolerance", "none")
    if tolerance.strip().lower() not in ("none", "all"):
        err("errors.tolerance", f"Invalid value {tolerance} for configuration "
                                "errors.tolerance: String must be one of: none, all")
    for name in ("errors.retry.timeout", "errors.retry.delay.max.ms"):
        if name in config and not _is_int(config[name]):
            err(name, f"Invalid value {config[name]} for configuration {name}: Not a number "
                      "of type LONG")
    for name in ("errors.log.enable", "errors.log.include.messages",
                 "errors.deadletterqueue.context.headers.enable"):
        if name in config and config[name].strip().lower() not in ("true", "false"):
            err(name, f"Invalid value {config[name]} for configuration {name}: Expected value "
                      "to be either true or false")


def _check_sink(config: Mapping[str, str], err: Callable[[str, str], None]) -> None:
    topics = [t.strip() for t in config.get("topics", "").split(",") if t.strip()]
    regex = config.get("topics.regex", "").strip()
    if topics and regex:
        msg = "topics and topics.regex are mutually exclusive options, but both are set."
        err("topics", msg)
        err("topics.regex", msg)
    elif not topics and not regex:
        msg = "Must configure one of topics or topics.regex"
        err("topics", msg)
        err("topics.regex", msg)
    if regex:
        try:
            re.compile(regex)
        except re.error as error:
            err("topics.regex", f"Invalid value {regex} for configuration topics.regex: "
                                f"{error}")
    dlq = config.get("errors.deadletterqueue.topic.name", "").strip()
    if dlq and (dlq in topics or (regex and re.fullmatch(regex, dlq))):
        err("errors.deadletterqueue.topic.name",
            f"The DLQ topic '{dlq}' may not be included in the list of topics "
            "('topics' or 'topics.regex') to consume, as this would lead to an infinite loop")


def _definition_of(key: Any, order: int) -> dict[str, Any]:
    """A ConfigDef key (A's strom.connect.config) as Kafka's ConfigKeyInfo JSON."""
    def attr(*names: str, default: Any = None) -> Any:
        for name in names:
            if hasattr(key, name):
                value = getattr(key, name)
                return value.name if hasattr(value, "name") and not isinstance(value, str) \
                    else value
        return default

    default = attr("default_value", "default")
    has_default = getattr(key, "has_default", None)
    required = (not has_default) if isinstance(has_default, bool) else default is None
    return {"name": attr("name"), "type": str(attr("type", default="STRING")),
            "required": bool(required),
            "default_value": None if required else default_string(default),
            "importance": str(attr("importance", default="MEDIUM")),
            "documentation": attr("documentation", "doc", default=""),
            "group": attr("group", default=None), "width": str(attr("width", default="NONE")),
            "display_name": attr("display_name", default=None) or attr("name"),
            "dependents": list(attr("dependents", default=[]) or []),
            "order": attr("order_in_group", "order", default=order) or order}


def _keys_of(config_def: Any) -> list[Any]:
    for name in ("config_keys", "keys", "configs"):
        keys = getattr(config_def, name, None)
        if keys is None:
            continue
        keys = keys() if callable(keys) else keys
        return list(keys.values()) if isinstance(keys, Mapping) else list(keys)
    return []


def plugin_config_definitions(plugin: ConnectorPlugin) -> list[dict[str, Any]]:
    """GET /connector-plugins/{plugin}/config: the connector's own settings."""
    connector = plugin.cls()
    return [_definition_of(key, i + 1) for i, key in enumerate(_keys_of(connector.config()))]


def other_plugin_config_definitions(name: str) -> list[dict[str, Any]] | None:
    """GET /connector-plugins/{plugin}/config of a transformation, predicate, converter or
    header converter (KIP-769); None when `name` is none of them."""
    from strom.connect import plugins
    from strom.connect.errors import ConfigException
    for kind in ("transformation", "predicate", "converter", "header_converter"):
        try:
            config_def = plugins.lookup(kind, name)().config_def()
        except (ConfigException, AttributeError, TypeError):
            continue
        return [_definition_of(key, i + 1) for i, key in enumerate(_keys_of(config_def))]
    return None


_ALIASED = (("transforms", "transformation", "Transforms", "Transformation"),
            ("predicates", "predicate", "Predicates", "Predicate"))


def _aliases(config: Mapping[str, str], key: str) -> list[str]:
    return list(dict.fromkeys(a.strip() for a in config.get(key, "").split(",") if a.strip()))


def _enriched(config: Mapping[str, str]) -> list[dict[str, Any]]:
    """As Kafka's ConnectorConfig.enrich: per transformation / predicate alias, its
    `<key>.<alias>.type` (and a transformation's `predicate` and `negate`), then the plugin's
    own settings under the prefix, each validated, in the group `Transforms: <alias>` /
    `Predicates: <alias>`."""
    from strom.connect import plugins
    from strom.connect.errors import ConfigException
    out: list[dict[str, Any]] = []
    for key, kind, group_name, title in _ALIASED:
        for alias in _aliases(config, key):
            prefix, group = f"{key}.{alias}.", f"{group_name}: {alias}"
            type_def = Definition(f"{prefix}type", "CLASS", None, "HIGH",
                                  f"Class for the '{alias}' {kind}.", group, 0,
                                  f"{title} type for {alias}", required=True, width="LONG")
            defs = [type_def]
            if kind == "transformation":
                defs += [Definition(f"{prefix}predicate", "STRING", None, "MEDIUM",
                                    f"The alias of a predicate used to determine whether to "
                                    f"apply the {alias} transformation.", group, 1,
                                    f"Predicate for {alias}", width="LONG"),
                         Definition(f"{prefix}negate", "BOOLEAN", False, "MEDIUM",
                                    "Whether the configured predicate should be negated.",
                                    group, 2, f"Negate predicate for {alias}", width="SHORT")]
            class_name = config.get(type_def.name, "").strip()
            type_errors: list[str] = []
            config_def: Any = None
            if not class_name:
                type_errors.append(f'Missing required configuration "{type_def.name}" which '
                                   "has no default value.")
            else:
                try:
                    config_def = plugins.lookup(kind, class_name)().config_def()
                except (ConfigException, AttributeError, TypeError) as error:
                    type_errors.append(f"Invalid value {class_name} for configuration "
                                       f"{type_def.name}: {error}")
            for definition in defs:
                errors = type_errors if definition is type_def else []
                out.append({"definition": definition.to_json(),
                            "value": Value(definition.name, config.get(definition.name),
                                           errors).to_json()})
            if config_def is not None:
                out += _prefixed(config, config_def, prefix, group, len(defs))
    return out


def _prefixed(config: Mapping[str, str], config_def: Any, prefix: str, group: str,
              first: int) -> list[dict[str, Any]]:
    """A plugin's own settings under `prefix`, validated against what the config has there."""
    own = {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}
    try:
        outcomes = {v.name: v for v in config_def.validate(own)}
    except Exception:  # a plugin's validation that breaks: its definitions only
        outcomes = {}
    out = []
    for i, key in enumerate(_keys_of(config_def)):
        definition = _definition_of(key, first + i)
        name = definition["name"]
        outcome = outcomes.get(name)
        definition.update(name=prefix + name, group=group, order=first + i)
        errors = [e.replace(f'configuration "{name}"', f'configuration "{prefix}{name}"')
                  .replace(f"configuration {name}:", f"configuration {prefix}{name}:")
                  for e in getattr(outcome, "errors", []) or []]
        out.append({"definition": definition,
                    "value": Value(prefix + name, own.get(name), errors).to_json()})
    return out


def validate_connector_config(plugin_name: str, config: Mapping[str, str],
                              exactly_once_source: bool = False,
                              override_policy: str = "All") -> dict[str, Any]:
    """`exactly_once_source`: the worker enables KIP-618 exactly-once source support, so the
    connector's exactly_once_support() / can_define_transaction_boundaries() are checked;
    `override_policy`: the worker's connector.client.config.override.policy (KIP-458)."""
    try:
        plugin = find_connector(plugin_name)
    except PluginNotFound as error:
        raise BadRequest(str(error)) from error
    sink = plugin.type == "sink"
    common = _common(sink)
    errors = _check_common(config, sink)
    connector = plugin.cls()
    if not sink:
        _check_source(config, connector, exactly_once_source,
                      lambda name, message: errors.setdefault(name, []).append(message))
        errors.update(topic_creation.validation_errors(config))
    errors.update(override_errors(override_policy, config))
    configs: list[dict[str, Any]] = []
    for definition in common:
        value = Value(definition.name, config.get(definition.name),
                      errors.pop(definition.name, []))
        configs.append({"definition": definition.to_json(), "value": value.to_json()})
    for setting, messages in errors.items():  # topic.creation.<group>.* settings
        configs.append({"definition": None,
                        "value": Value(setting, config.get(setting), messages).to_json()})
    configs += _enriched(config)
    common_names = {d.name for d in common}
    definitions = {d["name"]: d for d in (_definition_of(k, i + 1) for i, k in
                                          enumerate(_keys_of(connector.config())))}
    try:
        values = connector.validate(dict(config))
    except Exception as error:
        values = []
        configs.append({"definition": None,
                        "value": Value("connector.class", config.get("connector.class"),
                                       [f"{type(error).__name__}: {error}"]).to_json()})
    for outcome in values:
        name = getattr(outcome, "name", None)
        if name in common_names:
            continue
        raw = getattr(outcome, "value", None)
        configs.append({
            "definition": definitions.get(name),
            "value": {"name": name, "value": default_string(raw),
                      "recommended_values": list(getattr(outcome, "recommended_values", [])
                                                 or []),
                      "errors": list(getattr(outcome, "errors", []) or []),
                      "visible": bool(getattr(outcome, "visible", True))}})
    groups: list[str] = []
    for entry in configs:
        group = (entry["definition"] or {}).get("group")
        if group and group not in groups:
            groups.append(group)
    error_count = sum(len(entry["value"]["errors"]) for entry in configs)
    return {"name": plugin.class_name, "error_count": error_count, "groups": groups,
            "configs": configs}
