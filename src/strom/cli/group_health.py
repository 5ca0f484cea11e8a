"""`strom group health [GROUP...]`: consumer-lag health of groups, evaluated from the client.

Works against any Kafka cluster: it samples each group's committed offsets (OffsetFetch) and
its partitions' log end offsets (ListOffsets, latest) `--samples` times, `--interval` seconds
apart, and feeds the samples to the rules the broker applies to its own commit windows
(strom.coordinator.group.lag_health; docs/operations.md, "Consumer-lag health"). Each sample
stands for a commit: OffsetFetch carries no commit time, so a consumer that stopped committing
shows STALL here, never STOP.
"""

from __future__ import annotations

import json
import time
from typing import Final

import click
from confluent_kafka.admin import AdminClient, ListConsumerGroupsResult, OffsetSpec
from rich.table import Table

from strom.cli.common import (
    ClientOptions,
    CliError,
    admin_client,
    client_options,
    cluster_metadata,
    console,
    dash,
    output_option,
    row,
    timeouts,
    wait,
    warn,
)
from strom.cli.group_offsets import Partition, committed_offsets, group_id, log_offsets
from strom.coordinator.group.lag_health import (
    DEFAULT_WINDOW,
    Commit,
    GroupHealth,
    evaluate_group,
)

DEFAULT_INTERVAL_S: Final = 5.0

Windows = dict[str, dict[Partition, list[Commit]]]


def all_groups(admin: AdminClient, client: ClientOptions) -> list[str]:
    result: ListConsumerGroupsResult = wait(
        admin.list_consumer_groups(**timeouts(client)), client, None, "listing groups")
    return sorted(str(g.group_id) for g in result.valid or [])


def sample(admin: AdminClient, client: ClientOptions, groups: list[str], now_ms: int,
           windows: Windows, ends: dict[Partition, int]) -> None:
    """One sample of every group: each committed offset joins its partition's window with
    the partition's log end offset now; `ends` keeps the newest log end offsets."""
    committed = {g: committed_offsets(admin, client, g) for g in groups}
    partitions = sorted({tp for offsets in committed.values() for tp in offsets})
    found, problems = log_offsets(admin, client, partitions,
                                  OffsetSpec.latest())  # type: ignore[no-untyped-call]
    for problem in problems:
        warn(problem)
    for tp in partitions:
        ends.pop(tp, None)
    ends.update(found)
    for g, offsets in committed.items():
        window = windows.setdefault(g, {})
        for tp, offset in offsets.items():
            commits = window.setdefault(tp, [])
            end = found.get(tp)
            if offset is not None and end is not None:
                commits.append(Commit(offset, now_ms, end))


def as_json(result: GroupHealth, windows: Windows, now_ms: int) -> dict[str, object]:
    """The group's evaluation; each partition's `last_commit_age_ms` is how long its offset
    has not moved over the samples (OffsetFetch carries no commit time)."""
    data = result.to_json(now_ms)
    for partition, p in zip(data["partitions"], result.partitions,  # type: ignore[call-overload]
                            strict=True):
        since = unchanged_since(windows.get(result.group, {}).get((p.topic, p.partition), []))
        partition["last_commit_age_ms"] = None if since is None else now_ms - since
    return data


def unchanged_since(commits: list[Commit]) -> int | None:
    """When the newest offset was first sampled (the offset has not moved since)."""
    if not commits:
        return None
    since = commits[-1].time_ms
    for c in reversed(commits):
        if c.offset != commits[-1].offset:
            break
        since = c.time_ms
    return since


def health_table(results: list[GroupHealth], windows: Windows, now_ms: int) -> Table:
    table = Table("group", "status", "topic", "partition", "partition status", "offset", "lag",
                  "offset unchanged for", "why")
    for result in results:
        if not result.partitions:
            table.add_row(*row(result.group, result.status, "-", "-", "-", "-", "-", "-",
                               "no committed offsets"))
        for p in result.partitions:
            since = unchanged_since(windows.get(result.group, {}).get((p.topic, p.partition), []))
            age = "-" if since is None else f"{(now_ms - since) / 1000:g}s"
            table.add_row(*row(result.group, result.status, p.topic, p.partition, p.status,
                               dash(p.offset), dash(p.lag), age, p.reason))
    return table


@click.command()
@click.argument("groups", nargs=-1, callback=group_id)
@click.option("--samples", type=click.IntRange(min=2), default=DEFAULT_WINDOW,
              show_default=True, help="How many times each group's offsets are read (the "
              "window: a partition is evaluated once it has this many samples).")
@click.option("--interval", type=click.FloatRange(min=0), default=DEFAULT_INTERVAL_S,
              show_default=True, help="Seconds between samples (at least the consumers' "
              "commit interval, or a consumer between commits looks STALL).")
@output_option
@client_options
def health(groups: tuple[str, ...], samples: int, interval: float, output: str,
           client: ClientOptions) -> None:
    """Consumer-lag health of GROUPS (all groups if none): OK, WARN or ERR per group, and
    OK, WARN, STALL or REWIND per partition, by the rules of docs/operations.md.

    Samples the committed offsets and log end offsets --samples times, --interval seconds
    apart (progress on stderr), then evaluates the samples as a window of commits."""
    admin = admin_client(client)
    cluster_metadata(admin, client)  # a clear error when the cluster is unreachable
    wanted = list(dict.fromkeys(groups)) or all_groups(admin, client)
    if not wanted:
        raise CliError("the cluster has no consumer groups")
    windows: Windows = {}
    ends: dict[Partition, int] = {}
    now_ms = 0
    for index in range(samples):
        if index:
            time.sleep(interval)
        now_ms = int(time.time() * 1000)
        sample(admin, client, wanted, now_ms, windows, ends)
        click.echo(f"sample {index + 1}/{samples}", err=True)
    results = [evaluate_group(g, windows.get(g, {}), ends, now_ms, samples) for g in wanted]
    if output == "json":
        click.echo(json.dumps({"samples": samples, "interval_s": interval, "groups": [
            as_json(r, windows, now_ms) for r in results]}, indent=2))
        return
    console().print(health_table(results, windows, now_ms))
