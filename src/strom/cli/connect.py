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
@click.option("--bootstrap-servers", default=None,
              help="Distributed mode: the Kafka cluster (bootstrap.servers).")
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="Distributed mode: the REST listener (listeners=http://HOST:PORT).")
@click.option("--group-id", default=None,
              help="Distributed mode: the cluster's group (group.id).")
@click.option("--log-level", default="INFO", show_default=True)
@click.argument("configs", nargs=-1, type=click.Path(path_type=Path, exists=True,
                                                     dir_okay=False))
def connect(standalone: bool, bootstrap_servers: str | None, listen: str | None,
            group_id: str | None, log_level: str, configs: tuple[Path, ...]) -> None:
    """Run a Kafka Connect worker with Kafka Connect's REST API (see docs/connect.md).

    \b
    strom connect --standalone WORKER.properties [CONNECTOR.properties ...]
    strom connect [WORKER.properties] [--bootstrap-servers HOST:PORT] [--listen HOST:PORT]
                  [--group-id ID]      (distributed, as Kafka's connect-distributed)
    """
    import asyncio

    from strom.connect.properties import load_properties

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if standalone:
        from strom.connect.standalone import run_standalone
        if not configs:
            raise click.UsageError("--standalone needs WORKER.properties")
        from strom.connect.errors import ConfigException
        try:
            asyncio.run(run_standalone(configs[0], configs[1:]))
        except ConfigException as error:
            raise click.ClickException(str(error)) from error
        return
    from strom.connect.distributed import run_distributed
    if len(configs) > 1:
        raise click.UsageError("distributed mode takes one WORKER.properties; create "
                               "connectors through the REST API")
    props = dict(load_properties(configs[0])) if configs else {}
    if bootstrap_servers:
        props["bootstrap.servers"] = bootstrap_servers
    if listen:
        props["listeners"] = listen if "://" in listen else f"http://{listen}"
    if group_id:
        props["group.id"] = group_id
    if "group.id" not in props:
        raise click.UsageError("distributed mode needs --group-id (or group.id in "
                               "WORKER.properties)")
    asyncio.run(run_distributed(props))
