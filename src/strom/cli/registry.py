"""`strom registry`: the schema registry (strom.registry) for any Kafka cluster."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from strom.cli.common import BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP, parse_pairs
from strom.cli.console import parse_address

USERS_ENV = "STROM_REGISTRY_USERS"


@click.command()
@click.option("-b", "--bootstrap-servers", "--bootstrap-server", "bootstrap",
              default=DEFAULT_BOOTSTRAP, show_default=True, envvar=BOOTSTRAP_ENV,
              show_envvar=True, metavar="HOST:PORT[,...]", help="Brokers to bootstrap from.")
@click.option("--listen", default="localhost:8081", show_default=True, metavar="HOST:PORT",
              help="Where the registry serves its REST API.")
@click.option("-X", "--command-config", multiple=True, metavar="KEY=VALUE",
              help="A librdkafka client setting, e.g. -X security.protocol=SSL (repeatable).")
@click.option("--topic", default="_schemas", show_default=True,
              help="The compacted topic holding the schemas (Confluent's kafkastore.topic).")
@click.option("--group-id", default="schema-registry", show_default=True,
              help="Instances with the same group id elect one primary among them.")
@click.option("--advertised-url", default=None, metavar="URL",
              help="The URL other instances forward writes to. [default: the listener's]")
@click.option("--users", "users_file", type=click.Path(path_type=Path, exists=True,
                                                       dir_okay=False),
              default=None, envvar=USERS_ENV, show_envvar=True,
              help="Require HTTP basic authentication: 'username: password' lines.")
@click.option("--sasl", "sasl_login", is_flag=True,
              help="Require HTTP basic authentication checked by the cluster: each user's "
                   "username and password must be SASL credentials it accepts (with the -X "
                   "security.protocol and sasl.mechanism given).")
@click.option("--tls-cert", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="Serve HTTPS with this PEM certificate (chain).")
@click.option("--tls-key", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="The PEM private key of --tls-cert.")
@click.option("--tls-ca", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="CA certificates trusted when forwarding to the primary.")
@click.option("--session-timeout-ms", type=click.IntRange(min=1), default=10000,
              show_default=True, help="The election group's session timeout.")
@click.option("--no-leader-eligibility", is_flag=True,
              help="Never become the primary (forward every write).")
@click.option("--log-level", default="INFO", show_default=True,
              help="Logging level on stderr (DEBUG, INFO, WARNING, ERROR).")
def registry(bootstrap: str, listen: str, command_config: tuple[str, ...], topic: str,
             group_id: str, advertised_url: str | None, users_file: Path | None,
             sasl_login: bool, tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None,
             session_timeout_ms: int, no_leader_eligibility: bool, log_level: str) -> None:
    """Serve a schema registry with Confluent Schema Registry's REST API, its schemas kept in
    the compacted topic --topic (see docs/registry.md)."""
    import asyncio

    from strom.registry.rest import serve
    from strom.registry.server import RegistrySettings, read_users

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = parse_address(listen)
    if users_file is not None and sasl_login:
        raise click.UsageError("give --users or --sasl, not both")
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("give --tls-cert and --tls-key together")
    try:
        users = read_users(users_file) if users_file is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--users") from None
    settings = RegistrySettings(bootstrap, parse_pairs(command_config, "--command-config"),
                                topic, group_id, advertised_url, users, sasl_login,
                                tls_cert, tls_key, tls_ca, session_timeout_ms,
                                not no_leader_eligibility)
    if not settings.auth_required and host not in ("localhost", "127.0.0.1", "::1"):
        click.echo("warning: no --users: anyone who can reach this address can change "
                   "schemas", err=True)

    async def run() -> None:
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runner, running, _ = await serve(settings, host, port)
        click.echo(f"strom registry on {running.url} for {bootstrap}", err=True)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(run())
    except OSError as exc:
        raise click.ClickException(f"cannot start: {exc}") from None
