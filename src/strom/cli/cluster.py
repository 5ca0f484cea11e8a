"""`strom cluster ...`: the cluster's brokers and where its partitions live, as tables.

With the Admin API only, so it works against any Kafka cluster: `status` (cluster id,
controller, brokers and how many partition leaders each holds), `brokers`, and `placement`
(each partition's leader, replicas and in-sync replicas) through confluent-kafka; `leases`
(leaders with their leader epochs and reassignments in progress, per broker) and `move`
(AlterPartitionReassignments) through strom's own protocol client (cli/cluster_leases.py),
since confluent-kafka has no call for them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import click
from rich.table import Table

from strom.cli.cluster_leases import leases, move
from strom.cli.common import (
    ClientOptions,
    admin_client,
    client_options,
    cluster_metadata,
    console,
    output_option,
    print_json,
    records,
    render,
    row,
    timeouts,
    topic_partitions,
    wait,
)
from strom.config.text import plural


@click.group()
def cluster() -> None:
    """Show the cluster's brokers and where its partitions live; move a partition's
    leadership."""


def _description(client: ClientOptions) -> Any:
    admin = admin_client(client)
    return admin, wait(admin.describe_cluster(**timeouts(client)), client, None,
                       "describing the cluster")


def _leaders(metadata: Any) -> Counter[int]:
    return Counter(p.leader for t in metadata.topics.values() for p in t.partitions.values())


@cluster.command()
@output_option
@client_options
def status(output: str, client: ClientOptions) -> None:
    """The cluster id, its controller and its brokers with the leaders each holds."""
    admin, described = _description(client)
    metadata = cluster_metadata(admin, client)
    leaders = _leaders(metadata)
    partitions = sum(leaders.values())
    controller = described.controller.id if described.controller is not None else None
    nodes = sorted(described.nodes, key=lambda n: n.id)
    unled = sum(count for leader, count in leaders.items() if leader < 0)
    if output == "json":
        print_json({"cluster_id": described.cluster_id, "controller": controller,
                    "topics": len(metadata.topics), "partitions": partitions,
                    "partitions_without_leader": unled,
                    "brokers": records(["broker", "host", "port", "rack", "leaders", "controller"],
                                       ([n.id, n.host, n.port, n.rack or None,
                                         leaders.get(n.id, 0), n.id == controller]
                                        for n in nodes))})
        return
    click.echo(f"cluster {described.cluster_id}: {plural(len(described.nodes), 'broker')}, "
               f"{plural(len(metadata.topics), 'topic')}, {plural(partitions, 'partition')}; "
               f"controller {controller if controller is not None else 'unknown'}")
    table = Table("broker", "host:port", "rack", "leaders", "controller")
    for node in nodes:
        table.add_row(*row(node.id, f"{node.host}:{node.port}", node.rack or "-",
                           leaders.get(node.id, 0), "yes" if node.id == controller else ""))
    console().print(table)
    if unled:
        click.echo(f"{plural(unled, 'partition')} without a leader", err=True)


@cluster.command()
@output_option
@client_options
def brokers(output: str, client: ClientOptions) -> None:
    """The live brokers."""
    _, described = _description(client)
    render(output, ["broker", "host", "port", "rack"],
           ([n.id, n.host, n.port, n.rack or None]
            for n in sorted(described.nodes, key=lambda n: n.id)), key="brokers")


@cluster.command()
@click.argument("topics", nargs=-1)
@output_option
@client_options
def placement(topics: tuple[str, ...], output: str, client: ClientOptions) -> None:
    """Each partition's leader, replicas and in-sync replicas (of TOPICS, or every topic)."""
    metadata = cluster_metadata(admin_client(client), client)
    names = list(topics) or sorted(metadata.topics)
    rows: list[list[object]] = []
    for name in names:
        indexes = topic_partitions(metadata, name)  # an unknown topic is an error
        for index in indexes:
            p = metadata.topics[name].partitions[index]
            rows.append([name, index, p.leader if p.leader >= 0 else None, list(p.replicas),
                         list(p.isrs)])
    render(output, ["topic", "partition", "leader", "replicas", "in-sync"], rows,
           key="partitions")


cluster.add_command(leases)
cluster.add_command(move)
