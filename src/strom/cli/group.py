"""`strom group ...`: list, describe and delete consumer groups, and reset their offsets.

Like Kafka's kafka-consumer-groups.sh, with the Admin API: ListGroups, DescribeGroups,
OffsetFetch, ListOffsets, DeleteGroups and (reset-offsets) OffsetCommit.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from rich.text import Text

from strom.cli.common import (
    ClientOptions,
    CliError,
    admin_client,
    client_options,
    cluster_metadata,
    console,
    describe_error,
    fail,
    kafka_error,
    outcome,
    output_option,
    print_json,
    records,
    render,
    table_of,
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
@output_option
@client_options
def list_(states: set[ConsumerGroupState], types: tuple[str, ...], names_only: bool,
          output: str, client: ClientOptions) -> None:
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
    if names_only and output == "table":
        for listing in listings:
            click.echo(listing.group_id)
        return
    render(output, ["group", "type", "state", "protocol type"],
           ([listing.group_id, type_name(getattr(listing, "type", None)),
             state_name(getattr(listing, "state", None)),
             protocol_type(listing.is_simple_consumer_group)] for listing in listings),
           key="groups")


# --- describe -----------------------------------------------------------------------------

@group.command()
@click.argument("groups", nargs=-1, required=True, callback=group_id)
@output_option
@client_options
def describe(groups: tuple[str, ...], output: str, client: ClientOptions) -> None:
    """Show GROUPS: state, coordinator, members and each partition's offsets and lag.

    Lag is the log end offset minus the committed offset."""
    admin = admin_client(client)
    cluster_metadata(admin, client)  # a clear error when the cluster is unreachable
    wanted = list(dict.fromkeys(groups))
    futures = admin.describe_consumer_groups(wanted, **timeouts(client))
    out = console()
    failures = []
    documents = []
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
        shown = group_view(admin, client, description, offsets)
        if output == "json":
            documents.append(shown.as_json())
        else:
            shown.print(out)
    if output == "json":
        print_json({"groups": documents})
    if failures:
        raise CliError("\n".join(failures))


MEMBER_COLUMNS: Final = ["member id", "instance id", "client id", "host",
                          "assigned partitions"]
OFFSET_COLUMNS: Final = ["topic", "partition", "committed offset", "log end offset", "lag",
                         "member"]


class GroupView:
    """What `group describe` shows of one group, as text or as JSON."""

    def __init__(self, description: ConsumerGroupDescription,
                 members: list[MemberDescription], offset_rows: list[list[object]]) -> None:
        self.description = description
        self.members = members
        self.offset_rows = offset_rows

    def header(self) -> dict[str, object]:
        d = self.description
        c = d.coordinator
        return {"group": d.group_id, "state": state_name(getattr(d, "state", None)),
                "type": type_name(getattr(d, "type", None)),
                "protocol_type": protocol_type(d.is_simple_consumer_group),
                "assignor": d.partition_assignor or None,
                "coordinator": None if c is None else {"id": c.id, "host": c.host,
                                                       "port": c.port}}

    def member_rows(self) -> list[list[object]]:
        return [[m.member_id, m.group_instance_id, m.client_id, m.host, assignment_text(m)]
                for m in self.members]

    def as_json(self) -> dict[str, object]:
        members = records(MEMBER_COLUMNS, self.member_rows())
        for member, m in zip(members, self.members, strict=True):
            member["assigned_partitions"] = [
                {"topic": tp.topic, "partition": tp.partition}
                for tp in sorted(m.assignment.topic_partitions,
                                 key=lambda tp: (tp.topic, tp.partition))]
        return {**self.header(), "members": members,
                "offsets": records(OFFSET_COLUMNS, self.offset_rows)}

    def print(self, out: Console) -> None:
        h = self.header()
        c = self.description.coordinator
        where = "unknown" if c is None else f"{c.id} ({c.host}:{c.port})"
        out.print(Text(f"Group: {h['group']}  state: {h['state']}  type: {h['type']}"
                       f"  protocol type: {h['protocol_type']}  assignor: {h['assignor'] or '-'}"
                       f"  coordinator: {where}"))
        if self.members:
            out.print(table_of(MEMBER_COLUMNS, self.member_rows(), title="Members"))
        else:
            out.print(Text("No active members."))
        if not self.offset_rows:
            out.print(Text("No committed offsets."))
            return
        out.print(table_of(OFFSET_COLUMNS, self.offset_rows, title="Offsets"))


def group_view(admin: AdminClient, client: ClientOptions, description: ConsumerGroupDescription,
               offsets: Mapping[Partition, int | None]) -> GroupView:
    members = sorted(description.members or [], key=lambda m: str(m.member_id))
    owners = {(tp.topic, tp.partition): m.member_id
              for m in members for tp in m.assignment.topic_partitions}
    partitions = sorted(set(offsets) | set(owners))
    rows: list[list[object]] = []
    if partitions:
        ends, problems = log_offsets(admin, client, partitions,
                                     OffsetSpec.latest())  # type: ignore[no-untyped-call]
        for problem in problems:
            warn(problem)
        for tp in partitions:
            committed, end = offsets.get(tp), ends.get(tp)
            lag = end - committed if committed is not None and end is not None else None
            rows.append([tp[0], tp[1], committed, end, lag, owners.get(tp)])
    return GroupView(description, members, rows)


def assignment_text(member: MemberDescription) -> str:
    """`orders:0,1 payments:2`; `-` when nothing is assigned."""
    by_topic: dict[str, list[int]] = {}
    for tp in member.assignment.topic_partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return " ".join(f"{topic}:{','.join(str(p) for p in sorted(ps))}"
                    for topic, ps in sorted(by_topic.items())) or "-"


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
