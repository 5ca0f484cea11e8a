"""`strom acl add|list|remove`: ACLs with kafka-acls' options, through the Admin API (so any
Kafka cluster with an authorizer), shown as tables.

    strom acl add --allow-principal User:alice --operation Read --operation Describe \
        --topic orders --group billing
    strom acl add --deny-principal User:mallory --operation All --topic '*'
    strom acl add --allow-principal User:etl --operation Write --topic raw- \
        --resource-pattern-type prefixed
    strom acl list [--topic orders] [--principal User:alice]
    strom acl remove --allow-principal User:alice --operation Read --topic orders
"""

from __future__ import annotations

from typing import Any, Final

import click
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from strom.cli.common import (
    ClientOptions,
    CliError,
    admin_client,
    client_options,
    fail,
    output_option,
    render,
)
from strom.config.text import plural

CLUSTER: Final = "kafka-cluster"
OPERATIONS: Final = ("All", "Read", "Write", "Create", "Delete", "Alter", "Describe",
                     "ClusterAction", "DescribeConfigs", "AlterConfigs", "IdempotentWrite")


def _operation(name: str) -> AclOperation:
    upper = "".join("_" + c if c.isupper() and i else c for i, c in enumerate(name)).upper()
    return AclOperation[upper]


def _filter(*fields: Any) -> AclBindingFilter:
    """An AclBindingFilter; None fields match anything (its type hints say str)."""
    return AclBindingFilter(*fields)


def _resources(topic: tuple[str, ...], group: tuple[str, ...], cluster: bool,
               transactional_id: tuple[str, ...]) -> list[tuple[ResourceType, str]]:
    found = [(ResourceType.TOPIC, t) for t in topic]
    found += [(ResourceType.GROUP, g) for g in group]
    found += [(ResourceType.TRANSACTIONAL_ID, t) for t in transactional_id]
    if cluster:
        found.append((ResourceType.BROKER, CLUSTER))
    return found


def _resource_options(func: Any) -> Any:
    for option in reversed((
        click.option("--topic", multiple=True, help="A topic (or prefix; '*' for all)."),
        click.option("--group", multiple=True, help="A consumer group (or prefix)."),
        click.option("--transactional-id", multiple=True, help="A transactional id."),
        click.option("--cluster", is_flag=True, help="The cluster itself."),
        click.option("--resource-pattern-type", default=None,
                     type=click.Choice(["literal", "prefixed", "match", "any"],
                                       case_sensitive=False),
                     help="How the names match (add: literal or prefixed; default literal)."),
    )):
        func = option(func)
    return func


def _principal_options(func: Any) -> Any:
    for option in reversed((
        click.option("--allow-principal", multiple=True, metavar="TYPE:NAME"),
        click.option("--deny-principal", multiple=True, metavar="TYPE:NAME"),
        click.option("--allow-host", multiple=True, metavar="HOST",
                     help="Hosts the ALLOW applies to (default: every host)."),
        click.option("--deny-host", multiple=True, metavar="HOST",
                     help="Hosts the DENY applies to (default: every host)."),
        click.option("--operation", "operations", multiple=True,
                     type=click.Choice(OPERATIONS, case_sensitive=False),
                     help="Repeatable; default All."),
    )):
        func = option(func)
    return func


@click.group()
def acl() -> None:
    """Add, list and remove ACLs (needs an authorizer: authorizer.class.name)."""


def _bindings(resources: list[tuple[ResourceType, str]], pattern: ResourcePatternType,
              options: dict[str, Any]) -> list[tuple[Any, ...]]:
    operations = [_operation(o) for o in options["operations"]] or [AclOperation.ALL]
    wanted = []
    for permission, principals, hosts in (
            (AclPermissionType.ALLOW, options["allow_principal"], options["allow_host"]),
            (AclPermissionType.DENY, options["deny_principal"], options["deny_host"])):
        for principal in principals:
            for host in hosts or ("*",):
                for op in operations:
                    for rtype, name in resources:
                        wanted.append((rtype, name, pattern, principal, host, op, permission))
    return wanted


@acl.command()
@_resource_options
@_principal_options
@output_option
@client_options
def add(client: ClientOptions, topic: tuple[str, ...], group: tuple[str, ...], cluster: bool,
        transactional_id: tuple[str, ...], resource_pattern_type: str | None, output: str,
        **options: Any) -> None:
    """Adds ALLOW or DENY ACLs for principals on resources."""
    resources = _resources(topic, group, cluster, transactional_id)
    if not resources:
        raise CliError("name a resource: --topic, --group, --transactional-id or --cluster")
    if not options["allow_principal"] and not options["deny_principal"]:
        raise CliError("name a principal: --allow-principal or --deny-principal User:NAME")
    pattern = ResourcePatternType[(resource_pattern_type or "literal").upper()]
    if pattern not in (ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED):
        raise CliError("ACLs are added with --resource-pattern-type literal or prefixed")
    bindings = [AclBinding(*b) for b in _bindings(resources, pattern, options)]
    admin = admin_client(client)
    futures = admin.create_acls(bindings, request_timeout=client.request_timeout)
    for future in futures.values():
        try:
            future.result()
        except Exception as exc:
            raise fail(exc, client, action="adding ACLs") from None
    click.echo(f"added {plural(len(bindings), 'ACL')}", err=output == "json")
    _print(bindings, output)


@acl.command("list")
@_resource_options
@click.option("--principal", default=None, metavar="TYPE:NAME")
@output_option
@client_options
def list_acls(client: ClientOptions, topic: tuple[str, ...], group: tuple[str, ...],
              cluster: bool, transactional_id: tuple[str, ...],
              resource_pattern_type: str | None, principal: str | None, output: str) -> None:
    """ACLs, all or those of the named resources (--resource-pattern-type match: every ACL
    that applies to the names, prefixes and '*' included)."""
    pattern = ResourcePatternType[(resource_pattern_type or "any").upper()]
    resources: list[tuple[ResourceType, str | None]] = [
        *_resources(topic, group, cluster, transactional_id)] or [(ResourceType.ANY, None)]
    admin = admin_client(client)
    found = []
    for rtype, name in resources:
        flt = _filter(rtype, name, pattern, principal, None, AclOperation.ANY,
                      AclPermissionType.ANY)
        try:
            found.extend(admin.describe_acls(flt, request_timeout=client.request_timeout)
                         .result())
        except Exception as exc:
            raise fail(exc, client, action="listing ACLs") from None
    _print(found, output)
    if not found:
        click.echo("no ACLs", err=True)


@acl.command()
@_resource_options
@_principal_options
@click.option("--force", is_flag=True, help="Accepted for kafka-acls compatibility.")
@output_option
@client_options
def remove(client: ClientOptions, topic: tuple[str, ...], group: tuple[str, ...],
           cluster: bool, transactional_id: tuple[str, ...], resource_pattern_type: str | None,
           force: bool, output: str, **options: Any) -> None:
    """Removes the ACLs matching the options (every principal's, without one)."""
    resources = _resources(topic, group, cluster, transactional_id)
    if not resources:
        raise CliError("name a resource: --topic, --group, --transactional-id or --cluster")
    pattern = ResourcePatternType[(resource_pattern_type or "literal").upper()]
    if options["allow_principal"] or options["deny_principal"]:
        filters = [AclBindingFilter(*b) for b in _bindings(resources, pattern, options)]
    else:
        operations = [_operation(o) for o in options["operations"]] or [AclOperation.ANY]
        filters = [_filter(rtype, name, pattern, None, None, op, AclPermissionType.ANY)
                   for rtype, name in resources for op in operations]
    admin = admin_client(client)
    removed = []
    for future in admin.delete_acls(filters, request_timeout=client.request_timeout).values():
        try:
            removed.extend(future.result())
        except Exception as exc:
            raise fail(exc, client, action="removing ACLs") from None
    click.echo(f"removed {plural(len(removed), 'ACL')}", err=output == "json")
    _print(removed, output)


def _print(bindings: list[Any], output: str) -> None:
    if not bindings and output == "table":
        return
    ordered = sorted(bindings, key=lambda b: (b.restype.name, b.name, b.principal,
                                              b.operation.name))
    render(output, ["resource", "name", "pattern", "principal", "host", "operation",
                    "permission"],
           (["CLUSTER" if b.restype is ResourceType.BROKER else b.restype.name, b.name,
             b.resource_pattern_type.name, b.principal, b.host, b.operation.name,
             b.permission_type.name] for b in ordered), key="acls")
