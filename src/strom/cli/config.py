"""`strom config get|set|delete`: broker and topic configs, like Kafka's kafka-configs.sh.

DescribeConfigs reads them (librdkafka asks for synonyms, so --all shows where each value comes
from); IncrementalAlterConfigs changes them, SET and DELETE per key. `strom topic describe` and
`strom topic alter --config` use the same functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import click
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    ResourceType,
)

from strom.cli.common import (
    UNKNOWN_TOPIC,
    UNREACHABLE,
    ClientOptions,
    CliError,
    Column,
    admin_client,
    client_options,
    cluster_metadata,
    format_ids,
    kafka_error,
    outcome,
    output_option,
    parse_pairs,
    print_json,
    render,
    timeouts,
    unknown_topic_message,
    unreachable_message,
)

AUTHORIZATION: Final = frozenset({
    KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
})


def source_name(source: Any) -> str:
    """`dynamic_topic` for ConfigSource.DYNAMIC_TOPIC_CONFIG (the client may give its int)."""
    try:
        name = ConfigSource(source).name
    except ValueError:
        name = str(source)
    return name.lower().removesuffix("_config")


def resource_label(resource: ConfigResource) -> str:
    kind = "broker" if resource.restype == ResourceType.BROKER else "topic"
    return f"{kind} {resource.name}"


def config_error(exc: BaseException, client: ClientOptions, resource: ConfigResource,
                 action: str) -> CliError:
    """One line: what failed, the Kafka error's name, and what to do about it."""
    error = kafka_error(exc)
    if error is None:
        return CliError(f"{action} failed: {exc}")
    code = error.code()
    if code in UNREACHABLE:
        return CliError(unreachable_message(client))
    reason = error.str()
    is_topic = resource.restype == ResourceType.TOPIC
    if code in UNKNOWN_TOPIC and is_topic:
        return CliError(f"{action} failed: {unknown_topic_message(resource.name)} "
                        f"({error.name()})")
    if code in AUTHORIZATION:
        operation = "AlterConfigs" if action.startswith(("setting", "deleting")) else (
            "DescribeConfigs")
        on = f"--topic {resource.name}" if is_topic else "--cluster"
        return CliError(f"{action} failed: {reason} ({error.name()}; the principal needs "
                        f"{operation} on the {'topic' if is_topic else 'cluster'}: "
                        "`strom acl add --allow-principal User:NAME "
                        f"--operation {operation} {on}`)")
    if code == KafkaError.INVALID_CONFIG:
        return CliError(f"{action} failed: {reason} ({error.name()}; check the key and value "
                        f"against `strom config get --{resource_label(resource)} --all`)")
    if code == KafkaError.INVALID_REQUEST and not is_topic:
        return CliError(f"{action} failed: {reason} ({error.name()}; this broker's configs "
                        "are read-only: change its configuration file and restart it)")
    if code in (KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION):
        return CliError(f"{action} failed: the broker does not support it ({reason}; "
                        f"{error.name()})")
    return CliError(f"{action} failed: {reason} ({error.name()})")


def describe_entries(admin: AdminClient, client: ClientOptions,
                     resource: ConfigResource) -> Mapping[str, ConfigEntry]:
    """The resource's configs (DescribeConfigs); a CliError if the cluster refuses."""
    action = f"describing the configs of {resource_label(resource)}"
    try:
        future = admin.describe_configs([resource], **timeouts(client))[resource]
        entries: Mapping[str, ConfigEntry] = outcome(future, client)
    except KafkaException as exc:
        raise config_error(exc, client, resource, action) from None
    return entries


def alter_entries(admin: AdminClient, client: ClientOptions, resource_type: ResourceType,
                  name: str, sets: Mapping[str, str], deletes: Iterable[str]) -> None:
    """SET and DELETE keys of one resource in one IncrementalAlterConfigs request."""
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
               for k, v in sets.items()]
    entries += [ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE)
                for k in deletes]
    resource = ConfigResource(resource_type, name, incremental_configs=entries)
    action = (f"{'setting' if sets else 'deleting'} configs of {resource_label(resource)}")
    try:
        outcome(admin.incremental_alter_configs([resource], **timeouts(client))[resource],
                client)
    except KafkaException as exc:
        raise config_error(exc, client, resource, action) from None


def shown_entries(entries: Mapping[str, ConfigEntry], all_configs: bool) -> list[ConfigEntry]:
    """Sorted by name; only the overrides (non-default values) unless all_configs."""
    return sorted((e for e in entries.values() if all_configs or not e.is_default),
                  key=lambda e: e.name)


def shown_value(entry: ConfigEntry) -> str | None:
    return "(sensitive)" if entry.is_sensitive else entry.value


def synonyms_of(entry: ConfigEntry) -> list[dict[str, object]]:
    """Where the value could come from, strongest first: [{name, value, source}]."""
    return [{"name": s.name, "value": shown_value(s), "source": source_name(s.source)}
            for s in (entry.synonyms or {}).values()]


def entry_json(entry: ConfigEntry, all_configs: bool) -> dict[str, object]:
    document: dict[str, object] = {
        "name": entry.name, "value": shown_value(entry), "source": source_name(entry.source),
        "default": bool(entry.is_default), "read_only": bool(entry.is_read_only),
        "sensitive": bool(entry.is_sensitive)}
    if all_configs:
        document["synonyms"] = synonyms_of(entry)
    return document


# --- the command --------------------------------------------------------------------------

def resource_option(func: Any) -> Any:
    func = click.option("--broker", metavar="ID", type=click.IntRange(min=0),
                        help="A broker's configs (its node id).")(func)
    return click.option("--topic", metavar="NAME", help="A topic's configs.")(func)


def chosen_resource(admin: AdminClient, client: ClientOptions, topic: str | None,
                    broker: int | None) -> ConfigResource:
    """The --topic or --broker resource; a broker must be in the cluster's metadata (the client
    would otherwise wait for it until the timeout)."""
    if (topic is None) == (broker is None):
        raise click.UsageError("pass exactly one of --topic NAME or --broker ID")
    if topic is not None:
        return ConfigResource(ResourceType.TOPIC, topic)
    brokers = sorted(cluster_metadata(admin, client).brokers)
    if broker not in brokers:
        raise CliError(f"broker {broker} is not in the cluster (its brokers: "
                       f"{format_ids(brokers)}; see `strom cluster brokers`)")
    return ConfigResource(ResourceType.BROKER, str(broker))


@click.group()
def config() -> None:
    """Show and change broker and topic configs (like kafka-configs.sh)."""


@config.command()
@resource_option
@click.option("--all", "all_configs", is_flag=True,
              help="Every config with its source and synonyms, not only the overrides.")
@output_option
@client_options
def get(topic: str | None, broker: int | None, all_configs: bool, output: str,
        client: ClientOptions) -> None:
    """Show the configs of a topic (--topic NAME) or a broker (--broker ID).

    Without --all only values that are not defaults are shown."""
    admin = admin_client(client)
    resource = chosen_resource(admin, client, topic, broker)
    entries = shown_entries(describe_entries(admin, client, resource), all_configs)
    if output == "json":
        print_json({"resource_type": "topic" if topic is not None else "broker",
                    "resource_name": resource.name,
                    "configs": [entry_json(e, all_configs) for e in entries]})
        return
    if not entries:
        click.echo(f"{resource_label(resource)}: all configs are defaults "
                   "(pass --all to see them)")
        return
    columns: list[str | Column] = ["config", "value", "source"]
    if all_configs:
        columns += ["read-only", Column("synonyms")]
    rows = []
    for entry in entries:
        cells: list[object] = [entry.name, shown_value(entry), source_name(entry.source)]
        if all_configs:
            cells += [bool(entry.is_read_only),
                      " ".join(f"{s['source']}:{s['name']}={s['value']}"
                               for s in synonyms_of(entry)) or None]
        rows.append(cells)
    render(output, columns, rows,
           title=f"Configs of {resource_label(resource)}" if all_configs else
           f"Overrides of {resource_label(resource)}")


@config.command(name="set")
@resource_option
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@client_options
def set_(topic: str | None, broker: int | None, pairs: tuple[str, ...],
         client: ClientOptions) -> None:
    """Set configs of a topic (--topic NAME) or a broker (--broker ID)."""
    sets = parse_pairs(pairs, "KEY=VALUE")
    admin = admin_client(client)
    resource = chosen_resource(admin, client, topic, broker)
    alter_entries(admin, client, resource.restype, resource.name, sets, ())
    click.echo(f"set {', '.join(f'{k}={v}' for k, v in sets.items())} on "
               f"{resource_label(resource)}")


@config.command()
@resource_option
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@client_options
def delete(topic: str | None, broker: int | None, keys: tuple[str, ...],
           client: ClientOptions) -> None:
    """Remove config overrides of a topic or broker, so the defaults apply again."""
    wanted = list(dict.fromkeys(k.strip() for k in keys))
    if not all(wanted):
        raise click.BadParameter("a key must not be empty", param_hint="KEY")
    admin = admin_client(client)
    resource = chosen_resource(admin, client, topic, broker)
    alter_entries(admin, client, resource.restype, resource.name, {}, wanted)
    click.echo(f"deleted {', '.join(wanted)} from {resource_label(resource)} "
               "(the defaults apply)")
