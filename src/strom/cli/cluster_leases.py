"""`strom cluster leases` and `strom cluster move`: who leads each partition, at which leader
epoch, and moving a partition's leadership with a reassignment.

On strom over PostgreSQL a partition's leader is the broker holding its lease, the leader
epoch moves up by one each time the lease changes hands, and a reassignment pins the lease to
the first live broker named (nothing is copied: the database holds the data), so a move is
done within a heartbeat; `move --balanced` cancels the pin. Against Kafka the same requests
start an ordinary reassignment, which `leases` shows as in progress until its replicas have
caught up. Both speak the Kafka protocol through cli/wire_admin.py (any listener: -X for
TLS and SASL).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from typing import Final

import click
from rich.table import Table

from strom.cli import wire_admin
from strom.cli.common import (
    ClientOptions,
    CliError,
    client_options,
    console,
    format_ids,
    output_option,
    print_json,
    records,
    row,
    unknown_topic_message,
)
from strom.cli.wire_admin import ClusterLeaders, PartitionLeader, Reassignment
from strom.config.text import plural
from strom.protocol.client import KafkaConnection
from strom.protocol.messages import ErrorCode

MOVE_WAIT_S: Final = 10.0  # how long `move` waits to see the new leader
POLL_S: Final = 0.2


def check_topics(view: ClusterLeaders, topics: Sequence[str]) -> None:
    for name in topics:
        error = view.topic_errors.get(name)
        if error in (ErrorCode.unknown_topic_or_partition, ErrorCode.unknown_topic_id):
            raise CliError(unknown_topic_message(name))
        if error is not None:
            raise CliError(f"topic {name} is not available: {error.name}")


def target_of(reassignment: Reassignment) -> tuple[int, ...]:
    return tuple(n for n in reassignment.replicas if n not in reassignment.removing)


@click.command()
@click.argument("topics", nargs=-1)
@output_option
@client_options
def leases(topics: tuple[str, ...], output: str, client: ClientOptions) -> None:
    """Who leads each partition (of TOPICS, or every topic), at which leader epoch, with its
    replicas and any move in progress; and how many of them each broker leads."""

    async def session(connection: KafkaConnection
                      ) -> tuple[ClusterLeaders, dict[tuple[str, int], Reassignment]]:
        view = await wire_admin.leaders(connection, list(topics) or None)
        check_topics(view, topics)
        if wire_admin.LIST_REASSIGNMENTS not in connection.api_versions:
            return view, {}  # a cluster older than Kafka 2.4: no reassignments to list

        async def listed(c: KafkaConnection) -> dict[tuple[str, int], Reassignment]:
            return await wire_admin.list_reassignments(c, client, view.partitions)

        return view, await wire_admin.to_controller(connection, client, listed)

    view, moving = wire_admin.run(client, session)
    led = Counter(p.leader for p in view.partitions)
    if output == "json":
        print_json({
            "brokers": records(["broker", "host", "port", "rack", "leads"], (
                [n.node_id, n.host, n.port, n.rack or None, led.get(n.node_id, 0)]
                for n in view.brokers)),
            "partitions": records(["topic", "partition", "leader", "epoch", "replicas",
                                   "in-sync", "moving to"], (
                [p.topic, p.partition, p.leader if p.leader >= 0 else None, p.epoch,
                 list(p.replicas), list(p.isr),
                 None if (r := moving.get((p.topic, p.partition))) is None
                 else list(target_of(r))] for p in view.partitions))})
        return
    brokers = Table("broker", "host:port", "rack", "leads")
    for node in view.brokers:
        brokers.add_row(*row(node.node_id, f"{node.host}:{node.port}", node.rack or "-",
                             led.get(node.node_id, 0)))
    console().print(brokers)
    partitions = Table("topic", "partition", "leader", "epoch", "replicas", "in-sync",
                       "moving to")
    for p in view.partitions:
        reassignment = moving.get((p.topic, p.partition))
        partitions.add_row(*row(p.topic, p.partition, p.leader if p.leader >= 0 else "none",
                                p.epoch, format_ids(p.replicas), format_ids(p.isr),
                                "" if reassignment is None
                                else format_ids(target_of(reassignment))))
    console().print(partitions)
    unled = led.get(-1, 0)
    click.echo(f"{plural(len(view.partitions), 'partition')}"
               + (f", {unled} without a leader" if unled else "")
               + (f", {len(moving)} being moved" if moving else ""))


def parse_brokers(text: str | None, balanced: bool) -> list[int] | None:
    if balanced:
        if text is not None:
            raise click.UsageError("give BROKER[,BROKER...] or --balanced, not both")
        return None
    if text is None:
        raise click.UsageError("give the brokers to move to (BROKER[,BROKER...]), or "
                               "--balanced to give the partition back to the balanced "
                               "placement")
    try:
        brokers = [int(item) for item in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a list of node ids such as 2 or 2,3",
                                 param_hint="BROKER[,BROKER...]") from None
    return brokers


def move_failure(topic: str, partition: int, error: ErrorCode, message: str | None) -> str:
    """What went wrong and what to do about it."""
    where = f"{topic}-{partition}"
    if error == ErrorCode.no_reassignment_in_progress:
        return (f"{where} has no reassignment to cancel: it already follows the balanced "
                "placement")
    if error == ErrorCode.invalid_replica_assignment:
        return (f"cannot move {where}: {message or 'invalid replica assignment'} "
                "(`strom cluster brokers` lists the live brokers)")
    if error == ErrorCode.unknown_topic_or_partition:
        return f"cannot move {where}: {message or 'no such topic or partition'}"
    if error in (ErrorCode.cluster_authorization_failed, ErrorCode.topic_authorization_failed):
        return f"not allowed to move {where}: it needs ALTER on the cluster"
    return f"moving {where} failed: {error.name}" + (f" ({message})" if message else "")


async def partition_leader(connection: KafkaConnection, topic: str, partition: int
                           ) -> tuple[ClusterLeaders, PartitionLeader]:
    view = await wire_admin.leaders(connection, [topic])
    check_topics(view, [topic])
    found = [p for p in view.partitions if p.partition == partition]
    if not found:
        count = sum(1 for p in view.partitions if p.topic == topic)
        raise CliError(f"topic {topic} has no partition {partition} (it has "
                       f"{plural(count, 'partition')})")
    return view, found[0]


async def wait_for_leader(connection: KafkaConnection, topic: str, partition: int,
                          brokers: Sequence[int]) -> PartitionLeader:
    """The partition once the first of `brokers` that is live leads it, or as it is after
    MOVE_WAIT_S."""
    deadline = time.monotonic() + MOVE_WAIT_S
    while True:
        view, found = await partition_leader(connection, topic, partition)
        live = {n.node_id for n in view.brokers}
        wanted = next((n for n in brokers if n in live), None)
        if found.leader == wanted or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(POLL_S)


@click.command()
@click.argument("topic")
@click.argument("partition", type=click.IntRange(min=0))
@click.argument("brokers", required=False, metavar="BROKER[,BROKER...]")
@click.option("--balanced", is_flag=True,
              help="Cancel the move: give the partition back to the balanced placement.")
@client_options
def move(topic: str, partition: int, brokers: str | None, balanced: bool,
         client: ClientOptions) -> None:
    """Move PARTITION of TOPIC to the first live broker of BROKER[,BROKER...] (a partition
    reassignment: on strom its lease moves there and stays pinned; nothing is copied), or
    with --balanced give it back to the balanced placement."""
    targets = parse_brokers(brokers, balanced)
    where = f"{topic}-{partition}"

    async def session(connection: KafkaConnection) -> PartitionLeader:
        await partition_leader(connection, topic, partition)

        async def alter(c: KafkaConnection) -> tuple[ErrorCode, str | None]:
            return await wire_admin.alter_reassignment(c, client, topic, partition, targets)

        error, message = await wire_admin.to_controller(connection, client, alter)
        if error != ErrorCode.none:
            raise CliError(move_failure(topic, partition, error, message))
        if targets is None:
            return (await partition_leader(connection, topic, partition))[1]
        return await wait_for_leader(connection, topic, partition, targets)

    found = wire_admin.run(client, session)
    now = (f"led by broker {found.leader} (leader epoch {found.epoch})" if found.leader >= 0
           else "without a leader")
    if targets is None:
        click.echo(f"{where} follows the balanced placement again; {now} (if its lease "
                   "belongs elsewhere, it moves within a heartbeat)")
    elif found.leader in targets:
        click.echo(f"{where} moved: {now}")
    else:
        click.echo(f"{where} is being moved to {format_ids(targets)}; still {now} "
                   f"(`strom cluster leases {topic}` shows when it is done)")
