"""`strom quota set|list|delete`: client quotas (Kafka's entities: --user, --client-id, both,
their --default; --ip) through DescribeClientQuotas / AlterClientQuotas, so any Kafka cluster.

    strom quota set --user alice --producer-byte-rate 1048576
    strom quota set --user alice --client-id etl --consumer-byte-rate 2097152
    strom quota set --default client-id --request-percentage 50   # the default client id
    strom quota set --ip 10.0.0.7 --connection-creation-rate 10
    strom quota list [--user alice]
    strom quota delete --user alice [--producer-byte-rate]
"""

from __future__ import annotations

from typing import Any

import click

from strom.cli import wire_admin
from strom.cli.common import (
    ClientOptions,
    CliError,
    client_options,
    output_option,
    print_json,
    render,
)

KEYS = wire_admin.QUOTA_KEYS
EXACT, DEFAULT = wire_admin.EXACT, wire_admin.DEFAULT


def _entity_options(func: Any) -> Any:
    for option in reversed((
        click.option("--user", default=None, metavar="NAME", help="A user (principal name)."),
        click.option("--client-id", default=None, metavar="ID", help="A client id."),
        click.option("--ip", default=None, metavar="ADDRESS", help="A client IP address."),
        click.option("--default", "defaults", multiple=True,
                     type=click.Choice(["user", "client-id", "ip"]),
                     help="The default user, client id or IP (repeatable)."),
    )):
        func = option(func)
    return func


def _entity(user: str | None, client_id: str | None, ip: str | None,
            defaults: tuple[str, ...]) -> list[tuple[str, str | None]]:
    entity: list[tuple[str, str | None]] = []
    for kind, name in (("user", user), ("client-id", client_id), ("ip", ip)):
        if name is not None and kind in defaults:
            raise CliError(f"give --{kind} NAME or --default {kind}, not both")
        if name is not None:
            entity.append((kind, name))
        elif kind in defaults:
            entity.append((kind, None))
    if not entity:
        raise CliError("name an entity: --user, --client-id, --ip or --default TYPE")
    return entity


def _value_options(func: Any) -> Any:
    for key in reversed(KEYS):
        func = click.option(f"--{key.replace('_', '-')}", key, type=float, default=None)(func)
    return func


@click.group()
def quota() -> None:
    """Set, list and delete client quotas."""


@quota.command("set")
@_entity_options
@_value_options
@client_options
def set_quota(client: ClientOptions, user: str | None, client_id: str | None, ip: str | None,
              defaults: tuple[str, ...], **values: float | None) -> None:
    """Sets quota values of one entity."""
    entity = _entity(user, client_id, ip, defaults)
    ops: dict[str, float | None] = {k: v for k, v in values.items() if v is not None}
    if not ops:
        raise CliError("give a value, e.g. --producer-byte-rate 1048576")

    wire_admin.set_quotas(client, entity, ops)
    click.echo(f"quotas of {_label(entity)} set: "
               + ", ".join(f"{k}={v:g}" for k, v in ops.items() if v is not None))


@quota.command("delete")
@_entity_options
@click.option("--key", "keys", multiple=True, type=click.Choice(KEYS),
              help="Remove only these (default: every quota of the entity).")
@client_options
def delete_quota(client: ClientOptions, user: str | None, client_id: str | None,
                 ip: str | None, defaults: tuple[str, ...], keys: tuple[str, ...]) -> None:
    """Removes quota values of one entity."""
    entity = _entity(user, client_id, ip, defaults)

    removed = wire_admin.delete_quotas(client, entity, keys)
    if not removed:
        raise CliError(f"{_label(entity)} has no such quota")
    click.echo(f"quotas of {_label(entity)} removed: {', '.join(removed)}")


@quota.command("list")
@_entity_options
@output_option
@client_options
def list_quotas(client: ClientOptions, user: str | None, client_id: str | None,
                ip: str | None, defaults: tuple[str, ...], output: str) -> None:
    """Every quota, or those of entities matching the options."""
    components: list[tuple[str, int, str | None]] = []
    for kind, name in (("user", user), ("client-id", client_id), ("ip", ip)):
        if name is not None:
            components.append((kind, EXACT, name))
        elif kind in defaults:
            components.append((kind, DEFAULT, None))

    found = wire_admin.list_quotas(client, components)
    ordered = sorted(found.items(), key=lambda item: _label(item[0]))
    if output == "json":
        print_json({"quotas": [
            {"entity": {kind: name for kind, name in entity},
             "values": {k: number(values[k]) for k in KEYS if k in values}}
            for entity, values in ordered]})
    else:
        render(output, ["entity", *KEYS],
               ([_label(entity), *(f"{values[k]:g}" if k in values else None for k in KEYS)]
                for entity, values in ordered))
    if not found:
        click.echo("no quotas", err=True)


def number(value: float) -> int | float:
    """A whole quota as an int in JSON (1048576, not 1048576.0)."""
    return int(value) if float(value).is_integer() else value


def _label(entity: Any) -> str:
    return wire_admin.entity_label(entity)
