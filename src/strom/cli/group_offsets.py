"""`strom group reset-offsets`, and the offset look-ups that `strom group describe` shares.

Like Kafka's kafka-consumer-groups.sh --reset-offsets: a dry run by default that prints the
offsets it would commit; --execute commits them with the Admin API (OffsetCommit without a
member id), which the group coordinator only accepts while the group has no active members.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import click
from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from strom.cli.common import (
    UNKNOWN_TOPIC,
    UNREACHABLE,
    ClientOptions,
    CliError,
    Progress,
    admin_client,
    check_partitions,
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
    table_of,
    timeouts,
    topic_partitions,
    warn,
)

Partition = tuple[str, int]

COMMIT_BATCH: Final = 500  # partitions an AlterConsumerGroupOffsets request commits
INACTIVE_STATES: Final = frozenset({ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD})
# What OffsetCommit without a member id answers while the group has members.
ACTIVE_MEMBER_ERRORS: Final = frozenset({
    KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION,
    KafkaError.REBALANCE_IN_PROGRESS, KafkaError.FENCED_INSTANCE_ID,
    KafkaError.STALE_MEMBER_EPOCH, KafkaError.FENCED_MEMBER_EPOCH,
})


# --- errors -------------------------------------------------------------------------------

def not_found_message(group: str) -> str:
    return f"group {group} does not exist (see `strom group list`)"


def active_members_message(group: str, action: str) -> str:
    return (f"{action} failed: the group has active members; stop the consumers of group "
            f"{group} first")


def group_message(error: KafkaError | None, client: ClientOptions, group: str,
                  action: str) -> str:
    """What went wrong with a group request, in the terms of the group."""
    code = None if error is None else error.code()
    if code == KafkaError.GROUP_ID_NOT_FOUND:
        return not_found_message(group)
    if code == KafkaError.NON_EMPTY_GROUP:
        return f"group {group} still has active members; stop them first"
    if code == KafkaError.INVALID_GROUP_ID:
        return f"{group!r} is not a valid group id"
    if code in ACTIVE_MEMBER_ERRORS:
        return active_members_message(group, action)
    if code in (KafkaError._TIMED_OUT, KafkaError._TIMED_OUT_QUEUE):
        # the cluster answered Metadata just before: its group coordinator is what is silent
        return (f"{action} failed: the group coordinator did not answer within "
                f"{client.request_timeout:g}s (try a longer --request-timeout)")
    return describe_error(error, client, action=action)


def group_failure(exc: BaseException, client: ClientOptions, group: str,
                  action: str) -> CliError:
    """The CliError for a failed group request; unreachable clusters fail alike for all."""
    error = kafka_error(exc)
    if error is None:
        return fail(exc, client, action=action)
    return CliError(group_message(error, client, group, action))


def is_unreachable(exc: BaseException) -> bool:
    error = kafka_error(exc)
    return error is not None and error.code() in UNREACHABLE


def group_id(ctx: click.Context | None, param: click.Parameter | None, value: Any) -> Any:
    """Rejects empty group ids (one or several) before they reach the client."""
    for name in value if isinstance(value, tuple) else (value,):
        if not name.strip():
            raise click.BadParameter("a group id cannot be empty", ctx, param)
    return value


# --- offsets ------------------------------------------------------------------------------

def committed_offsets(admin: AdminClient, client: ClientOptions,
                      group: str) -> dict[Partition, int | None]:
    """The group's committed offset of each partition it committed (None: no offset)."""
    request = [ConsumerGroupTopicPartitions(group)]
    futures = admin.list_consumer_group_offsets(request, **timeouts(client))
    action = f"fetching the committed offsets of group {group}"
    try:
        result = outcome(futures[group], client)
    except KafkaException as exc:
        error = kafka_error(exc)
        if error is not None and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
            return {}
        raise group_failure(exc, client, group, action) from None
    offsets: dict[Partition, int | None] = {}
    for tp in result.topic_partitions or []:
        if tp.error is not None and tp.error.code() not in UNKNOWN_TOPIC:
            raise CliError(group_message(tp.error, client, group, action))
        offsets[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else None
    return offsets


def log_offsets(admin: AdminClient, client: ClientOptions, partitions: Iterable[Partition],
                spec: OffsetSpec) -> tuple[dict[Partition, int], list[str]]:
    """Each partition's offset for `spec` (ListOffsets), and what could not be looked up."""
    request = {TopicPartition(topic, p): spec for topic, p in partitions}
    if not request:
        return {}, []
    found: dict[Partition, int] = {}
    problems = []
    for tp, future in admin.list_offsets(request, **timeouts(client)).items():
        try:
            found[(tp.topic, tp.partition)] = outcome(future, client).offset
        except KafkaException as exc:
            if is_unreachable(exc):
                raise fail(exc, client, action="listing offsets") from None
            problems.append(fail(exc, client, tp.topic, f"listing offsets of {tp.topic}"
                                 f"[{tp.partition}]").message)
    return found, problems


def required_offsets(admin: AdminClient, client: ClientOptions,
                     partitions: Iterable[Partition], spec: OffsetSpec) -> dict[Partition, int]:
    found, problems = log_offsets(admin, client, partitions, spec)
    if problems:
        raise CliError("\n".join(problems))
    return found


def group_state(admin: AdminClient, client: ClientOptions, group: str) -> ConsumerGroupState:
    futures = admin.describe_consumer_groups([group], **timeouts(client))
    try:
        description = outcome(futures[group], client)
    except KafkaException as exc:
        error = kafka_error(exc)
        if error is not None and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
            return ConsumerGroupState.DEAD
        raise group_failure(exc, client, group, f"describing group {group}") from None
    state: ConsumerGroupState = getattr(description, "state", ConsumerGroupState.UNKNOWN)
    return state


# --- what to reset, and to what -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A --topic: a topic and the chosen partitions (empty: all of them)."""

    topic: str
    partitions: tuple[int, ...] = ()


def parse_topics(ctx: click.Context | None, param: click.Parameter | None,
                 values: tuple[str, ...]) -> list[TopicSpec]:
    """The --topic callback: TOPIC or TOPIC:P,P,... (a topic name cannot contain `:`)."""
    specs = []
    for value in values:
        topic, sep, rest = value.partition(":")
        try:
            partitions = tuple(int(p) for p in rest.split(",")) if sep else ()
        except ValueError:
            partitions = (-1,)
        if not topic or any(p < 0 for p in partitions):
            raise click.BadParameter(f"{value!r} is not TOPIC or TOPIC:PARTITION[,...]",
                                     ctx, param)
        specs.append(TopicSpec(topic, partitions))
    return specs


def parse_datetime(ctx: click.Context | None, param: click.Parameter | None,
                   value: str | None) -> int | None:
    """The --to-datetime callback: ISO 8601 (local time without a zone) into epoch ms."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date-time such as "
                                 "2024-05-01T12:00:00 or 2024-05-01T12:00:00.000+02:00",
                                 ctx, param) from None
    # a naive datetime's timestamp() is local time; before 1970 means from the beginning
    # (negative timestamps are ListOffsets' codes for latest and earliest)
    return max(0, int(moment.timestamp() * 1000))


@dataclass(frozen=True, slots=True)
class Target:
    """Where to move each offset: earliest, latest, offset N, timestamp MS or shift N."""

    kind: str
    value: int = 0


def chosen_target(options: Mapping[str, Target | None]) -> Target:
    given = [target for target in options.values() if target is not None]
    if len(given) != 1:
        raise click.UsageError(f"pass exactly one of {', '.join(options)}")
    return given[0]


def maybe(kind: str, value: int | None) -> Target | None:
    return None if value is None else Target(kind, value)


def flag(kind: str, given: bool) -> Target | None:
    return Target(kind) if given else None


def chosen_partitions(admin: AdminClient, client: ClientOptions, specs: list[TopicSpec],
                      committed: Mapping[Partition, int | None]) -> list[Partition]:
    """The partitions of the --topic options, or (for --all-topics) those with offsets."""
    if not specs:
        return sorted(committed)
    metadata = cluster_metadata(admin, client)
    chosen: dict[Partition, None] = {}
    for spec in specs:
        available = topic_partitions(metadata, spec.topic)
        check_partitions(spec.topic, available, spec.partitions)
        for partition in spec.partitions or available:
            chosen[(spec.topic, partition)] = None
    return sorted(chosen)


@dataclass(frozen=True, slots=True)
class Reset:
    topic: str
    partition: int
    current: int | None
    new: int


def requested_offsets(admin: AdminClient, client: ClientOptions, target: Target,
                      partitions: list[Partition], committed: Mapping[Partition, int | None],
                      start: Mapping[Partition, int],
                      end: Mapping[Partition, int]) -> dict[Partition, int]:
    """The offset `target` asks for in each partition, before clamping."""
    if target.kind == "offset":
        return {tp: target.value for tp in partitions}
    if target.kind == "shift":
        missing = [tp for tp in partitions if committed.get(tp) is None]
        if missing:
            raise CliError("cannot shift: the group has no committed offset for "
                           + ", ".join(f"{t}[{p}]" for t, p in missing)
                           + " (use --to-earliest, --to-latest or --to-offset for those)")
        return {tp: (committed[tp] or 0) + target.value for tp in partitions}
    if target.kind == "timestamp":
        spec = OffsetSpec.for_timestamp(target.value)
        found = required_offsets(admin, client, partitions, spec)
        # no record that new: the end, as Kafka's tool does
        return {tp: found[tp] if found.get(tp, -1) >= 0 else end[tp] for tp in partitions}
    return dict(start if target.kind == "earliest" else end)


def plan(admin: AdminClient, client: ClientOptions, target: Target, partitions: list[Partition],
         committed: Mapping[Partition, int | None]) -> list[Reset]:
    """The new offset of each partition, clamped into [log start, log end]."""
    start = required_offsets(admin, client, partitions,
                             OffsetSpec.earliest())  # type: ignore[no-untyped-call]
    end = required_offsets(admin, client, partitions,
                           OffsetSpec.latest())  # type: ignore[no-untyped-call]
    wanted = requested_offsets(admin, client, target, partitions, committed, start, end)
    return [Reset(topic, p, committed.get((topic, p)),
                  min(max(wanted[(topic, p)], start[(topic, p)]), end[(topic, p)]))
            for topic, p in partitions]


def commit(admin: AdminClient, client: ClientOptions, group: str, resets: list[Reset]) -> None:
    """Commits the new offsets (AlterConsumerGroupOffsets, COMMIT_BATCH partitions a request, with
    a progress bar on a terminal); per-partition errors fail."""
    action = f"resetting the offsets of group {group}"
    batch = COMMIT_BATCH
    with Progress(f"committing offsets of group {group}", len(resets)) as progress:
        for first in range(0, len(resets), batch):
            chunk = resets[first:first + batch]
            commit_batch(admin, client, group, chunk, action)
            progress.advance(len(chunk))


def commit_batch(admin: AdminClient, client: ClientOptions, group: str, resets: list[Reset],
                 action: str) -> None:
    request = [ConsumerGroupTopicPartitions(
        group, [TopicPartition(r.topic, r.partition, r.new) for r in resets])]
    futures = admin.alter_consumer_group_offsets(request, **timeouts(client))
    try:
        result = outcome(futures[group], client)
    except KafkaException as exc:
        raise group_failure(exc, client, group, action) from None
    problems = {group_message(tp.error, client, group, action)
                for tp in result.topic_partitions or [] if tp.error is not None}
    if problems:
        raise CliError("\n".join(sorted(problems)))


PLAN_COLUMNS: Final = ["topic", "partition", "old offset", "new offset"]


def print_plan(group: str, resets: list[Reset], output: str = "table",
               dry_run: bool = True) -> None:
    rows = [[r.topic, r.partition, r.current, r.new] for r in resets]
    if output == "json":
        print_json({"group": group, "dry_run": dry_run, "offsets": records(PLAN_COLUMNS, rows)})
        return
    console().print(table_of(PLAN_COLUMNS, rows, title=f"group {group}"))


def check_inactive(admin: AdminClient, client: ClientOptions, group: str, execute: bool) -> None:
    """Kafka only lets a group's offsets be reset while no consumer is in it."""
    state = group_state(admin, client, group)
    if state in INACTIVE_STATES:
        if state == ConsumerGroupState.DEAD:
            click.echo(f"note: group {group} does not exist yet; committing creates it",
                       err=True)
        return
    message = (f"group {group} has active members (state {state_name(state)}); "
               "stop its consumers before resetting offsets")
    if execute:
        raise CliError(message)
    warn(message)


def state_name(state: ConsumerGroupState | None) -> str:
    names = {ConsumerGroupState.EMPTY: "Empty", ConsumerGroupState.STABLE: "Stable",
             ConsumerGroupState.PREPARING_REBALANCING: "PreparingRebalance",
             ConsumerGroupState.COMPLETING_REBALANCING: "CompletingRebalance",
             ConsumerGroupState.DEAD: "Dead"}
    return names.get(state, "Unknown") if state is not None else "Unknown"


# --- command ------------------------------------------------------------------------------

@click.command(name="reset-offsets")
@click.argument("group", callback=group_id)
@click.option("--topic", "topics", multiple=True, callback=parse_topics,
              metavar="TOPIC[:P,P...]",
              help="Reset this topic's partitions (all, or the listed ones) (repeatable).")
@click.option("--all-topics", is_flag=True,
              help="Reset every partition the group has a committed offset for.")
@click.option("--to-earliest", is_flag=True, help="To each partition's log start.")
@click.option("--to-latest", is_flag=True, help="To each partition's log end.")
@click.option("--to-offset", type=click.IntRange(min=0), metavar="N", help="To offset N.")
@click.option("--to-datetime", callback=parse_datetime, metavar="ISO8601",
              help="To the first record at or after this time (local time unless the value "
                   "has a zone), e.g. 2024-05-01T12:00:00; the log end if none is that new.")
@click.option("--to-timestamp", type=click.IntRange(min=0), metavar="MS",
              help="Like --to-datetime, with a time in milliseconds since the epoch.")
@click.option("--shift-by", type=int, metavar="N",
              help="Move each committed offset by N (negative: back).")
@click.option("--dry-run/--execute", "dry_run", default=True, show_default=True,
              help="Only show the new offsets, or commit them.")
@output_option
@client_options
def reset_offsets(group: str, topics: list[TopicSpec], all_topics: bool, to_earliest: bool,
                  to_latest: bool, to_offset: int | None, to_datetime: int | None,
                  to_timestamp: int | None, shift_by: int | None, dry_run: bool, output: str,
                  client: ClientOptions) -> None:
    """Move the committed offsets of GROUP (which must have no active members).

    New offsets are kept within each partition's [log start, log end]."""
    target = chosen_target({
        "--to-earliest": flag("earliest", to_earliest), "--to-latest": flag("latest", to_latest),
        "--to-offset": maybe("offset", to_offset), "--to-datetime": maybe("timestamp", to_datetime),
        "--to-timestamp": maybe("timestamp", to_timestamp), "--shift-by": maybe("shift", shift_by),
    })
    if bool(topics) == all_topics:
        raise click.UsageError("pass --topic TOPIC[:P,P...] (repeatable) or --all-topics")
    admin = admin_client(client)
    cluster_metadata(admin, client)  # a clear error when the cluster is unreachable
    check_inactive(admin, client, group, execute=not dry_run)
    committed = committed_offsets(admin, client, group)
    partitions = chosen_partitions(admin, client, topics, committed)
    if not partitions:
        raise CliError(f"group {group} has no committed offsets (name topics with --topic)")
    resets = plan(admin, client, target, partitions, committed)
    print_plan(group, resets, output, dry_run)
    if dry_run:
        click.echo("dry run: nothing was changed (pass --execute to commit these offsets)",
                   err=True)
        return
    commit(admin, client, group, resets)
    click.echo(f"committed {len(resets)} offset(s) for group {group}", err=True)
