"""`strom console`: the web console (strom.console) for any Kafka cluster."""

from __future__ import annotations

import os

import click

from strom.cli.common import BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP, parse_pairs

PASSWORD_ENV = "STROM_CONSOLE_PASSWORD"


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{text!r} is not HOST:PORT (e.g. localhost:8080)")
    return host.strip("[]") or "0.0.0.0", int(port)


@click.command()
@click.option("-b", "--bootstrap-servers", "--bootstrap-server", "bootstrap",
              default=DEFAULT_BOOTSTRAP, show_default=True, envvar=BOOTSTRAP_ENV,
              show_envvar=True, metavar="HOST:PORT[,...]", help="Brokers to bootstrap from.")
@click.option("--listen", default="localhost:8080", show_default=True, metavar="HOST:PORT",
              help="Where the console serves HTTP.")
@click.option("--password", default=None, envvar=PASSWORD_ENV, show_envvar=True,
              help="Require a login with this password.")
@click.option("--sasl", is_flag=True,
              help="Log in with SASL credentials of the cluster: each user's username and "
                   "password become the SASL credentials of their Kafka clients (pass "
                   "-X security.protocol=SASL_PLAINTEXT -X sasl.mechanism=... too).")
@click.option("--read-only", is_flag=True,
              help="Hide and refuse every change (topics, configs, produce, offset resets).")
@click.option("-X", "--command-config", multiple=True, metavar="KEY=VALUE",
              help="A librdkafka client setting, e.g. -X security.protocol=SSL (repeatable).")
@click.option("--refresh", type=click.FloatRange(min=0.5), default=5.0, show_default=True,
              metavar="SECONDS", help="How often pages update and the poller samples lag.")
@click.option("--request-timeout", type=click.FloatRange(min=0.1), default=5.0,
              show_default=True, metavar="SECONDS",
              help="How long to wait for the cluster to answer a request.")
def console(bootstrap: str, listen: str, password: str | None, sasl: bool, read_only: bool,
            command_config: tuple[str, ...], refresh: float, request_timeout: float) -> None:
    """Serve the web console: topics, messages, consumer groups and the cluster."""
    from aiohttp import web

    from strom.console import ConsoleSettings, build_app

    host, port = parse_address(listen)
    if password is not None and sasl:
        raise click.UsageError("give --password or --sasl, not both")
    settings = ConsoleSettings(bootstrap, parse_pairs(command_config, "--command-config"),
                               password or None, sasl, read_only, refresh, request_timeout)
    shown = "localhost" if host == "0.0.0.0" else host
    click.echo(f"strom console on http://{shown}:{port}/ for {bootstrap}", err=True)
    if not settings.login_required and host not in ("localhost", "127.0.0.1", "::1"):
        click.echo("warning: no --password: anyone who can reach this address can use the "
                   "console", err=True)
    web.run_app(build_app(settings), host=host, port=port, print=None, access_log=None)


def console_password() -> str | None:
    return os.environ.get(PASSWORD_ENV) or None
