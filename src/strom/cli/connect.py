"""`strom connect`: the Kafka Connect-compatible connector runtime (strom.connect)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click


@click.command(context_settings={"ignore_unknown_options": False})
@click.option("--standalone", is_flag=True,
              help="Run a standalone worker: WORKER.properties then CONNECTOR.properties "
                   "files, as Kafka's connect-standalone.")
@click.option("--log-level", default="INFO", show_default=True)
@click.argument("configs", nargs=-1, type=click.Path(path_type=Path, exists=True,
                                                     dir_okay=False))
def connect(standalone: bool, log_level: str, configs: tuple[Path, ...]) -> None:
    """Run a Kafka Connect worker with Kafka Connect's REST API (see docs/connect.md).

    strom connect --standalone WORKER.properties [CONNECTOR.properties ...]
    """
    import asyncio

    from strom.connect.standalone import run_standalone

    if not standalone:
        raise click.UsageError("only --standalone is available yet (distributed mode is next)")
    if not configs:
        raise click.UsageError("--standalone needs WORKER.properties")
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_standalone(configs[0], configs[1:]))
