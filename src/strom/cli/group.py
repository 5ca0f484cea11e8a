"""`strom group ...`: list, describe and delete consumer groups, and reset their offsets.

Like Kafka's kafka-consumer-groups.sh, with the Admin API: ListGroups, DescribeGroups,
OffsetFetch, ListOffsets, DeleteGroups and (reset-offsets) OffsetCommit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import click
from confluent_kafka import ConsumerGroupState, ConsumerGroupType, KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ConsumerGroupDescription,
    ListConsumerGroupsResult,
    MemberDescription,
    OffsetSpec,
)
from rich.console import Console
from rich.table import Table
from rich.text import Text

from strom.cli.common import (
    ClientOptions,
    CliError,
    admin_client,
    client_options,
    cluster_metadata,
    console,
    dash,
    describe_error,
    fail,
    kafka_error,
    outcome,
    row,
    timeouts,
    wait,
    warn,
)
from strom.cli.group_health import health
from strom.cli.group_offsets import (
    Partition,
    committed_offsets,
    group_failure,
    group_id,
    is_unreachable,
    log_offsets,
    not_found_message,
    reset_offsets,
    state_name,
)

STATES: Final = {
    "empty": ConsumerGroupState.EMPTY, "stable": ConsumerGroupState.STABLE,
    "preparingrebalance": ConsumerGroupState.PREPARING_REBALANCING,
    "completingrebalance": ConsumerGroupState.COMPLETING_REBALANCING,
    "dead": ConsumerGroupState.DEAD,
    # librdkafka's names
    "preparingrebalancing": ConsumerGroupState.PREPARING_REBALANCING,
    "completingrebalancing": ConsumerGroupState.COMPLETING_REBALANCING,
}
TYPES: Final = {"classic": ConsumerGroupType.CLASSIC, "consumer": ConsumerGroupType.CONSUMER}


@click.group()
def group() -> None:
    """List, describe and delete consumer groups; reset their committed offsets; evaluate
    their consumer-lag health."""


group.add_command(reset_offsets)
group.add_command(health)


# --- list ---------------------------------------------------------------------------------

def parse_states(ctx: click.Context | None, param: click.Parameter | None,
                 values: tuple[str, ...]) -> set[ConsumerGroupState]:
    """The --state callback: names as Kafka writes them, any case, comma-separated or not."""
    states = set()
    for value in values:
        for name in filter(None, (part.strip() for part in value.split(","))):
            state = STATES.get(name.lower().replace("-", "").replace("_", ""))
            if state is None:
                raise click.BadParameter(f"{name!r} is not one of Empty, Stable, "
                                         "PreparingRebalance, CompletingRebalance, Dead",
                                         ctx, param)
            states.add(state)
    return states


def listing_error(error: object, client: ClientOptions) -> str:
    """librdkafka reports a broker's ListGroups failure as a KafkaError (or an exception)."""
    if isinstance(error, KafkaError):
        return describe_error(error, client, action="listing groups")
    if isinstance(error, BaseException):
        return fail(error, client, action="listing groups").message
    return f"listing groups failed: {error}"


def type_name(value: Any) -> str:
    return value.name.lower() if isinstance(value, ConsumerGroupType) else "unknown"


def protocol_type(is_simple: bool) -> str:
    """librdkafka lists consumer groups only: protocol type `consumer`, or none (simple)."""
    return "-" if is_simple else "consumer"


@group.command(name="list")
@click.option("--state", "states", multiple=True, callback=parse_states, metavar="STATE",
              help="Only groups in this state: Empty, Stable, PreparingRebalance, "
                   "CompletingRebalance or Dead (repeatable, or comma-separated).")
@click.option("--type", "types", multiple=True,
              type=click.Choice(sorted(TYPES), case_sensitive=False),
              help="Only groups of this type (repeatable).")
@click.option("-q", "--names-only", is_flag=True, help="Print only the group ids.")
@client_options
def list_(states: set[ConsumerGroupState], types: tuple[str, ...], names_only: bool,
          client: ClientOptions) -> None:
    """List the cluster's consumer groups.

    Protocol type `-` marks a simple group: one whose consumers assign() partitions and
    commit offsets without joining."""
    admin = admin_client(client)
    cluster_metadata(admin, client)  # a clear error when the cluster is unreachable
    filters: dict[str, Any] = {}
    if states:
        filters["states"] = states
    if types:
        filters["types"] = {TYPES[t.lower()] for t in types}
    result: ListConsumerGroupsResult = wait(
        admin.list_consumer_groups(**filters, **timeouts(client)), client, None,
        "listing groups")
    errors = [listing_error(e, client) for e in result.errors or []]
    if errors and not result.valid:
        raise CliError("\n".join(dict.fromkeys(errors)))
    for error in errors:
        warn(f"{error} (on one of the brokers; its groups are missing below)")
    listings = sorted(result.valid or [], key=lambda g: str(g.group_id))
    if names_only:
        for listing in listings:
            click.echo(listing.group_id)
        return
    table = Table("group", "type", "state", "protocol type")
    for listing in listings:
        table.add_row(*row(listing.group_id, type_name(getattr(listing, "type", None)),
                           state_name(getattr(listing, "state", None)),
                           protocol_type(listing.is_simple_consumer_group)))
    console().print(table)


# --- describe -----------------------------------------------------------------------------

@group.command()
@click.argument("groups", nargs=-1, required=True, callback=group_id)
@client_options
def describe(groups: tuple[str, ...], client: ClientOptions) -> None:
    """Show GROUPS: state, coordinator, members and each partition's offsets and lag.

    Lag is the log end offset minus the committed offset."""
    admin = admin_client(client)
    cluster_metadata(admin, client)  # a clear error when the cluster is unreachable
    wanted = list(dict.fromkeys(groups))
    futures = admin.describe_consumer_groups(wanted, **timeouts(client))
    out = console()
    failures = []
    for name in wanted:
        try:
            description = outcome(futures[name], client)
        except KafkaException as exc:
            if is_unreachable(exc):
                raise group_failure(exc, client, name, f"describing group {name}") from None
            failures.append(group_failure(exc, client, name, f"describing group {name}").message)
            continue
        offsets = committed_offsets(admin, client, name)
        if getattr(description, "state", None) == ConsumerGroupState.DEAD and not offsets:
            failures.append(not_found_message(name))
            continue
        print_group(out, admin, client, description, offsets)
    if failures:
        raise CliError("\n".join(failures))


def print_group(out: Console, admin: AdminClient, client: ClientOptions,
                description: ConsumerGroupDescription,
                offsets: Mapping[Partition, int | None]) -> None:
    coordinator = description.coordinator
    where = "unknown" if coordinator is None else (
        f"{coordinator.id} ({coordinator.host}:{coordinator.port})")
    out.print(Text(
        f"Group: {description.group_id}  state: {state_name(getattr(description, 'state', None))}"
        f"  type: {type_name(getattr(description, 'type', None))}"
        f"  protocol type: {protocol_type(description.is_simple_consumer_group)}"
        f"  assignor: {description.partition_assignor or '-'}  coordinator: {where}"))
    members = sorted(description.members or [], key=lambda m: str(m.member_id))
    if members:
        out.print(members_table(members))
    else:
        out.print(Text("No active members."))
    owners = {(tp.topic, tp.partition): m.member_id
              for m in members for tp in m.assignment.topic_partitions}
    if not offsets and not owners:
        out.print(Text("No committed offsets."))
        return
    partitions = sorted(set(offsets) | set(owners))
    ends, problems = log_offsets(admin, client, partitions,
                                 OffsetSpec.latest())  # type: ignore[no-untyped-call]
    for problem in problems:
        warn(problem)
    out.print(offsets_table(partitions, offsets, ends, owners))


def members_table(members: Iterable[MemberDescription]) -> Table:
    table = Table("member id", "instance id", "client id", "host", "assigned partitions",
                  title="Members")
    for m in members:
        table.add_row(*row(m.member_id, m.group_instance_id or "-", m.client_id, m.host,
                           assignment_text(m)))
    return table


def assignment_text(member: MemberDescription) -> str:
    """`orders:0,1 payments:2`; `-` when nothing is assigned."""
    by_topic: dict[str, list[int]] = {}
    for tp in member.assignment.topic_partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return " ".join(f"{topic}:{','.join(str(p) for p in sorted(ps))}"
                    for topic, ps in sorted(by_topic.items())) or "-"


def offsets_table(partitions: list[Partition], offsets: Mapping[Partition, int | None],
                  ends: Mapping[Partition, int], owners: Mapping[Partition, str]) -> Table:
    table = Table("topic", "partition", "committed offset", "log end offset", "lag", "member",
                  title="Offsets")
    for tp in partitions:
        committed, end = offsets.get(tp), ends.get(tp)
        lag = end - committed if committed is not None and end is not None else None
        table.add_row(*row(tp[0], tp[1], dash(committed), dash(end), dash(lag),
                           owners.get(tp, "-")))
    return table


# --- delete -------------------------------------------------------------------------------

@group.command()
@click.argument("groups", nargs=-1, required=True, callback=group_id)
@click.option("--if-exists", is_flag=True, help="Succeed for groups that do not exist.")
@client_options
def delete(groups: tuple[str, ...], if_exists: bool, client: ClientOptions) -> None:
    """Delete GROUPS and their committed offsets (they must have no active members)."""
    admin = admin_client(client)
    cluster_metadata(admin, client)  # a clear error when the cluster is unreachable
    wanted = list(dict.fromkeys(groups))
    futures = admin.delete_consumer_groups(wanted, **timeouts(client))
    failures = []
    for name in wanted:
        try:
            outcome(futures[name], client)
            click.echo(f"deleted group {name}")
        except KafkaException as exc:
            if is_unreachable(exc):
                raise group_failure(exc, client, name, f"deleting group {name}") from None
            if if_exists and is_missing(exc):
                click.echo(f"group {name} does not exist", err=True)
                continue
            failures.append(group_failure(exc, client, name, f"deleting group {name}").message)
    if failures:
        raise CliError("\n".join(failures))


def is_missing(exc: BaseException) -> bool:
    error = kafka_error(exc)
    return error is not None and error.code() == KafkaError.GROUP_ID_NOT_FOUND
