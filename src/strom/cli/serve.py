"""`strom serve`: run a broker in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click

from strom.config.broker import BrokerConfig
from strom.config.topic import ConfigError
from strom.storage.select import parse_storage_url


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{text!r} is not HOST:PORT (e.g. localhost:9092)")
    return host.strip("[]") or "0.0.0.0", int(port)


def read_config_file(path: Path) -> dict[str, str]:
    """Kafka's server.properties format: name=value lines, # comments."""
    settings: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise click.BadParameter(f"{path}:{number}: expected name=value, got {line!r}")
        settings[name.strip()] = value.strip()
    return settings


def build_config(data_dir: Path, listen: str, config_file: Path | None,
                 sets: tuple[str, ...], storage: str = "") -> BrokerConfig:
    host, port = parse_listen(listen)
    settings = read_config_file(config_file) if config_file else {}
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"--set {item!r}: expected name=value")
        settings[name.strip()] = value
    try:
        if storage:
            parse_storage_url(storage)  # a bad URL is a usage error, said before anything
        return BrokerConfig.build(data_dir, host, port, settings, storage)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


async def run_until_signalled(config: BrokerConfig, console: str | None = None,
                              registry: str | None = None) -> None:
    from strom.server.app import BrokerServer

    server = BrokerServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    url = server.storage_url
    where = ("in memory: nothing survives a restart" if not url.durable
             else f"data in {url.path}" if url.path is not None else f"data in {url}")
    click.echo(f"strom is ready on {config.host}:{server.port} ({where})", err=True)
    for (host, _), port in zip(config.http_listeners(), server.http_ports, strict=True):
        click.echo(f"metrics on http://{host or '0.0.0.0'}:{port}/metrics", err=True)
    running = start_console(console, config.host, server.port) if console else None
    schemas = None
    if registry:  # it reads _schemas from this broker before it listens: not on this loop
        schemas = await asyncio.get_running_loop().run_in_executor(
            None, start_registry, registry, config.host, server.port)
    try:
        await stop.wait()
    finally:
        if schemas is not None:
            await asyncio.get_running_loop().run_in_executor(None, schemas.stop)
        if running is not None:
            running.stop()
        await server.stop()


def start_console(listen: str, broker_host: str, broker_port: int) -> Any:
    """`--console`: the web console (strom.console) in a thread of its own, a Kafka client of
    this broker's listener like any other; STROM_CONSOLE_PASSWORD asks for a login."""
    from strom.cli.console import console_password
    from strom.console import ConsoleSettings, start_in_thread

    host, port = parse_listen(listen)
    target = "127.0.0.1" if broker_host in ("", "0.0.0.0", "::") else broker_host
    running = start_in_thread(ConsoleSettings(f"{target}:{broker_port}",
                                              password=console_password()), host, port)
    click.echo(f"console on http://{host}:{running.port}/", err=True)
    return running


def start_registry(listen: str, broker_host: str, broker_port: int) -> Any:
    """`--registry`: the schema registry (strom.registry) in a thread of its own, a Kafka
    client of this broker's listener; STROM_REGISTRY_USERS names a users file for HTTP basic
    authentication."""
    import os

    from strom.cli.registry import USERS_ENV
    from strom.registry.rest import start_in_thread
    from strom.registry.server import RegistrySettings, read_users

    host, port = parse_listen(listen)
    target = "127.0.0.1" if broker_host in ("", "0.0.0.0", "::") else broker_host
    users_file = os.environ.get(USERS_ENV)
    users = read_users(Path(users_file)) if users_file else None
    running = start_in_thread(RegistrySettings(f"{target}:{broker_port}", users=users),
                              host, port)
    click.echo(f"schema registry on {running.url}", err=True)
    return running


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where the log and metadata live (shorthand for --storage file:DIR). "
                   "[default: ./data]")
@click.option("--storage", default=None, metavar="URL",
              help="The storage engine: file:DIR (the local log, the default), memory: "
                   "(in memory, for tests and notebooks: nothing survives a restart) or "
                   "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB (PostgreSQL).")
@click.option("--listen", default="localhost:9092", show_default=True, help="HOST:PORT.")
@click.option("--config", "config_file", type=click.Path(path_type=Path, exists=True),
              help="A server.properties-style file of name=value settings.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="A broker setting by Kafka's dotted name, e.g. flush.messages=1.")
@click.option("--node-id", type=click.IntRange(0, 2**31 - 1), default=None,
              help="This broker's id (node.id; brokers sharing a PostgreSQL storage need "
                   "distinct ids). [default: 1]")
@click.option("--http", "http", default=None, metavar="HOST:PORT",
              help="Serve /metrics (Prometheus), /healthz and /readyz over HTTP here "
                   "(http.listeners; off unless given).")
@click.option("--console", "console", default=None, metavar="HOST:PORT",
              help="Also serve the web console here (in-process, a client of this broker; "
                   "STROM_CONSOLE_PASSWORD asks for a login). See docs/console.md.")
@click.option("--registry", "registry", default=None, metavar="HOST:PORT",
              help="Also serve the schema registry here (in-process, a client of this broker; "
                   "STROM_REGISTRY_USERS names a users file). See docs/registry.md.")
@click.option("--log-level", default="INFO", show_default=True)
def serve(data_dir: Path | None, storage: str | None, listen: str, config_file: Path | None,
          sets: tuple[str, ...], node_id: int | None, http: str | None,
          console: str | None, registry: str | None, log_level: str) -> None:
    """Run a broker (its log on local disk unless --storage says otherwise)."""
    if data_dir is not None and storage is not None:
        raise click.UsageError("give --data-dir DIR or --storage URL, not both "
                               "(--data-dir DIR is --storage file:DIR)")
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if node_id is not None:
        sets = (*sets, f"node.id={node_id}")
    if http is not None:
        parse_listen(http)  # a usage error before anything
        sets = (*sets, f"http.listeners={http}")
    if console is not None:
        parse_listen(console)
    if registry is not None:
        parse_listen(registry)
    config = build_config(data_dir or Path("./data"), listen, config_file, sets, storage or "")
    from strom.broker.internal_topic_check import StartupError
    from strom.storage.api import StorageError

    try:
        import uvloop

        uvloop.run(run_until_signalled(config, console, registry))
    except OSError as exc:
        raise click.ClickException(f"cannot start: {exc}") from None
    except (StartupError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    except ConfigError as exc:  # a setting only the component using it can judge
        raise click.ClickException(f"cannot start: {exc}") from None
