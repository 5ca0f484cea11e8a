"""`strom topic ...`: create, list, describe, alter and delete topics with the Admin API."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Final

import click
from confluent_kafka import KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigEntry, ConfigResource, OffsetSpec, ResourceType
from confluent_kafka.cimpl import NewPartitions, NewTopic
from rich.console import Console
from rich.text import Text

from strom.cli.common import (
    UNKNOWN_TOPIC,
    ClientOptions,
    CliError,
    admin_client,
    client_options,
    cluster_metadata,
    console,
    fail,
    kafka_error,
    outcome,
    output_option,
    parse_pairs,
    print_json,
    records,
    render,
    table_of,
    timeouts,
    topic_partitions,
    wait,
    warn,
)
from strom.cli.config import (
    alter_entries,
    describe_entries,
    entry_json,
    shown_entries,
    shown_value,
    source_name,
)
from strom.config.text import plural

CONFIG_OPTION = click.option("--config", "configs", multiple=True, metavar="KEY=VALUE",
                             help="A topic config, e.g. retention.ms=86400000 (repeatable).")


@click.group()
def topic() -> None:
    """Create, list, describe, alter and delete topics."""


# --- create -------------------------------------------------------------------------------

@topic.command()
@click.argument("name")
@click.option("-p", "--partitions", type=click.IntRange(min=1),
              help="Number of partitions [default: the broker's num.partitions].")
@click.option("-r", "--replication-factor", type=click.IntRange(min=1),
              help="Replicas per partition [default: the broker's default.replication.factor].")
@CONFIG_OPTION
@click.option("--if-not-exists", is_flag=True, help="Succeed if the topic already exists.")
@client_options
def create(name: str, partitions: int | None, replication_factor: int | None,
           configs: tuple[str, ...], if_not_exists: bool, client: ClientOptions) -> None:
    """Create topic NAME."""
    config = parse_pairs(configs, "--config")
    new = NewTopic(name, num_partitions=partitions or -1,
                   replication_factor=replication_factor or -1, config=config)
    admin = admin_client(client)
    futures = admin.create_topics([new], operation_timeout=client.request_timeout,
                                  **timeouts(client))
    try:
        outcome(futures[name], client)
    except KafkaException as exc:
        error = kafka_error(exc)
        if error is not None and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            if if_not_exists:
                click.echo(f"topic {name} already exists", err=True)
                return
            raise CliError(f"topic {name} already exists (pass --if-not-exists to accept "
                           "that, or change it with `strom topic alter`)") from None
        raise fail(exc, client, None, f"creating topic {name}") from None
    click.echo(f"created topic {name}{created_size(admin, client, name)}")


def created_size(admin: AdminClient, client: ClientOptions, name: str) -> str:
    """The ' with N partitions' suffix; empty while the new topic's metadata spreads."""
    info = cluster_metadata(admin, client).topics.get(name)
    if info is None or info.error is not None:
        return ""
    count = len(info.partitions)
    return f" with {count} partition{'s' if count != 1 else ''}"


# --- list ---------------------------------------------------------------------------------

@topic.command(name="list")
@click.option("-q", "--names-only", is_flag=True, help="Print only the names, one per line.")
@output_option
@client_options
def list_(names_only: bool, output: str, client: ClientOptions) -> None:
    """List the cluster's topics."""
    admin = admin_client(client)
    metadata = cluster_metadata(admin, client)
    names = sorted(metadata.topics)
    if names_only and output == "table":
        for name in names:
            click.echo(name)
        return
    internal = internal_flags(admin, client, names)
    render(output, ["name", "partitions", "internal"],
           ([name, len(metadata.topics[name].partitions), internal[name]] for name in names),
           key="topics")


def internal_flags(admin: AdminClient, client: ClientOptions,
                   names: list[str]) -> dict[str, bool]:
    """The broker's is_internal flag, or Kafka's naming convention if it cannot say."""
    flags = {name: name.startswith("__") for name in names}
    if not names:
        return flags
    futures = admin.describe_topics(TopicCollection(names), **timeouts(client))
    for name, future in futures.items():
        # deleted since listing, or not describable: keep the convention
        with contextlib.suppress(KafkaException):
            flags[name] = bool(outcome(future, client).is_internal)
    return flags


# --- describe -----------------------------------------------------------------------------

PARTITION_COLUMNS: Final = ["partition", "leader", "replicas", "isr", "low", "high", "records"]


@topic.command()
@click.argument("name")
@click.option("--all-configs", is_flag=True, help="Show every config, not only overrides.")
@output_option
@client_options
def describe(name: str, all_configs: bool, output: str, client: ClientOptions) -> None:
    """Show topic NAME: partitions, leaders, replicas, watermarks and configs."""
    admin = admin_client(client)
    topic_partitions(cluster_metadata(admin, client), name)
    futures = admin.describe_topics(TopicCollection([name]), **timeouts(client))
    description = wait(futures[name], client, name, f"describing topic {name}")
    ids = [p.id for p in description.partitions]
    low = watermarks(admin, client, name, ids, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
    high = watermarks(admin, client, name, ids, OffsetSpec.latest())  # type: ignore[no-untyped-call]
    rows: list[list[object]] = []
    for p in sorted(description.partitions, key=lambda p: p.id):
        lo, hi = low.get(p.id), high.get(p.id)
        count = hi - lo if lo is not None and hi is not None else None
        rows.append([p.id, p.leader.id if p.leader is not None else None,
                     [n.id for n in p.replicas], [n.id for n in p.isr], lo, hi, count])
    entries = topic_configs(admin, client, name)
    if output == "json":
        print_json({"name": name, "id": str(description.topic_id),
                    "internal": bool(description.is_internal),
                    "partitions": records(PARTITION_COLUMNS, rows),
                    "configs": None if entries is None else [
                        entry_json(e, all_configs) for e in shown_entries(entries, all_configs)]})
        return
    out = console()
    out.print(Text(f"Topic: {name}  id: {description.topic_id}  partitions: {len(ids)}  "
                   f"internal: {'yes' if description.is_internal else 'no'}"))
    out.print(table_of(PARTITION_COLUMNS, rows))
    print_configs(out, entries, all_configs)


def watermarks(admin: AdminClient, client: ClientOptions, name: str, ids: list[int],
               spec: OffsetSpec) -> dict[int, int]:
    """Each partition's offset for `spec` (ListOffsets); empty with a warning if unavailable."""
    if not ids:
        return {}
    request = {TopicPartition(name, p): spec for p in ids}
    offsets: dict[int, int] = {}
    try:
        for tp, future in admin.list_offsets(request, **timeouts(client)).items():
            offsets[tp.partition] = outcome(future, client).offset
    except KafkaException as exc:
        warn(fail(exc, client, name, "listing offsets").message)
        return {}
    return offsets


def topic_configs(admin: AdminClient, client: ClientOptions,
                  name: str) -> Mapping[str, ConfigEntry] | None:
    """The topic's configs; None with a warning if the cluster does not say."""
    try:
        return describe_entries(admin, client, ConfigResource(ResourceType.TOPIC, name))
    except CliError as exc:
        warn(exc.message)
        return None


def print_configs(out: Console, entries: Mapping[str, ConfigEntry] | None,
                  all_configs: bool) -> None:
    if entries is None:
        return
    shown = shown_entries(entries, all_configs)
    if not shown:
        out.print(Text("Configs: all defaults"))
        return
    out.print(table_of(["config", "value", "source"],
                       ([e.name, shown_value(e), source_name(e.source)] for e in shown),
                       title="Configs" if all_configs else "Overrides"))


# --- alter --------------------------------------------------------------------------------

@topic.command()
@click.argument("name")
@click.option("-p", "--partitions", type=click.IntRange(min=1),
              help="Grow the topic to this many partitions (Kafka cannot shrink a topic).")
@CONFIG_OPTION
@click.option("--delete-config", "deletes", multiple=True, metavar="KEY",
              help="Remove an override so the default applies again (repeatable).")
@client_options
def alter(name: str, partitions: int | None, configs: tuple[str, ...], deletes: tuple[str, ...],
          client: ClientOptions) -> None:
    """Change topic NAME's partition count or configs."""
    sets = parse_pairs(configs, "--config")
    if partitions is None and not sets and not deletes:
        raise click.UsageError("nothing to change: pass --partitions, --config or "
                               "--delete-config")
    admin = admin_client(client)
    current = len(topic_partitions(cluster_metadata(admin, client), name))
    if sets or deletes:
        alter_configs(admin, client, name, sets, deletes)
        click.echo(f"updated {len(sets) + len(deletes)} config(s) of topic {name}")
    if partitions is not None:
        grow(admin, client, name, current, partitions)


def alter_configs(admin: AdminClient, client: ClientOptions, name: str,
                  sets: Mapping[str, str], deletes: Iterable[str]) -> None:
    alter_entries(admin, client, ResourceType.TOPIC, name, sets, deletes)


def grow(admin: AdminClient, client: ClientOptions, name: str, current: int,
         partitions: int) -> None:
    if partitions == current:
        click.echo(f"topic {name} already has {plural(current, 'partition')}")
        return
    if partitions < current:
        raise CliError(f"topic {name} has {plural(current, 'partition')} and Kafka cannot remove "
                       "partitions (create a new topic to have fewer)")
    futures = admin.create_partitions([NewPartitions(name, partitions)],
                                      operation_timeout=client.request_timeout,
                                      **timeouts(client))
    wait(futures[name], client, name, f"adding partitions to topic {name}")
    click.echo(f"topic {name} now has {plural(partitions, 'partition')} (was {current})")


# --- delete -------------------------------------------------------------------------------

@topic.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--if-exists", is_flag=True, help="Succeed for topics that do not exist.")
@client_options
def delete(names: tuple[str, ...], if_exists: bool, client: ClientOptions) -> None:
    """Delete the topics NAMES (and all their records)."""
    admin = admin_client(client)
    cluster_metadata(admin, client)  # a clear error when the cluster is unreachable
    wanted = list(dict.fromkeys(names))
    futures = admin.delete_topics(wanted, operation_timeout=client.request_timeout,
                                  **timeouts(client))
    failures = []
    for name in wanted:
        try:
            outcome(futures[name], client)
            click.echo(f"deleted topic {name}")
        except KafkaException as exc:
            error = kafka_error(exc)
            if error is not None and error.code() in UNKNOWN_TOPIC:
                if if_exists:
                    click.echo(f"topic {name} does not exist", err=True)
                    continue
                failures.append(f"topic {name} does not exist (see `strom topic list`; "
                                "pass --if-exists to ignore missing topics)")
                continue
            failures.append(fail(exc, client, name, f"deleting topic {name}").message)
    if failures:
        raise CliError("\n".join(failures))
