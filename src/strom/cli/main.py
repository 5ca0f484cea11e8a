"""Entry point of the `strom` command."""

from __future__ import annotations

import sys

import click

from strom import __version__
from strom.cli.acl import acl
from strom.cli.certs import certs
from strom.cli.cluster import cluster
from strom.cli.completion import completion
from strom.cli.config import config
from strom.cli.connect import connect
from strom.cli.console import console
from strom.cli.consume import consume
from strom.cli.group import group
from strom.cli.produce import produce
from strom.cli.quota import quota
from strom.cli.registry import registry
from strom.cli.serve import serve
from strom.cli.topic import topic
from strom.cli.user import user


@click.group()
@click.version_option(__version__, prog_name="strom")
def cli() -> None:
    """strom: a Kafka-compatible event streaming platform."""


cli.add_command(serve)
cli.add_command(topic)
cli.add_command(produce)
cli.add_command(consume)
cli.add_command(group)
cli.add_command(cluster)
cli.add_command(user)
cli.add_command(certs)
cli.add_command(acl)
cli.add_command(quota)
cli.add_command(config)
cli.add_command(completion)
cli.add_command(console)
cli.add_command(registry)
cli.add_command(connect)


def main() -> None:
    # kio registers hypothesis strategies when hypothesis is importable, and hypothesis's first
    # import in a new working directory builds a cache there (about 1 s). The command line never
    # needs those strategies; tests that do import hypothesis before kio.
    sys.modules.setdefault("hypothesis", None)  # type: ignore[arg-type]
    cli(prog_name="strom")
