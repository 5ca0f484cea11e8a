"""Entry point of the `strom` command."""

from __future__ import annotations

import click

from strom import __version__
from strom.cli.serve import serve


@click.group()
@click.version_option(__version__, prog_name="strom")
def cli() -> None:
    """strom: a Kafka-compatible event streaming platform."""


cli.add_command(serve)


def main() -> None:
    cli()
