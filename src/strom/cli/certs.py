"""`strom certs ...`: development certificates for TLS listeners and their clients."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Final

import click
from rich.table import Table

from strom.cli.common import CliError, console, row
from strom.security.certs import (
    CA_NAME,
    DEFAULT_DAYS,
    CertificateAuthority,
    CertsError,
    IssuedCertificate,
    check_name,
    create_certificate,
    load_or_create_ca,
)

DEFAULT_BROKER_HOSTS: Final = ("localhost", "127.0.0.1", "::1")
BROKER_NAME: Final = "broker"
SSL_PORT: Final = 9093


@click.group()
def certs() -> None:
    """Make development certificates: a CA, a broker certificate, client certificates."""


@certs.command()
@click.option("--dir", "directory", required=True, metavar="DIR",
              type=click.Path(path_type=Path, file_okay=False),
              help="Where the files go (made if missing; its ca.pem and ca-key.pem, if there, "
                   "are the CA that signs).")
@click.option("--broker-host", "broker_hosts", multiple=True, metavar="HOST",
              help="A name or IP address clients reach the broker by (repeatable) "
                   f"[default: {', '.join(DEFAULT_BROKER_HOSTS)}].")
@click.option("--client", "clients", multiple=True, metavar="NAME",
              help="Also make a client certificate with CN=NAME (repeatable).")
@click.option("--password", default=None, envvar="STROM_CERTS_PASSWORD", show_envvar=True,
              help="Encrypt the broker and client private keys with this password.")
@click.option("--days", type=click.IntRange(min=1), default=DEFAULT_DAYS, show_default=True,
              help="How long new certificates are valid.")
def create(directory: Path, broker_hosts: tuple[str, ...], clients: tuple[str, ...],
           password: str | None, days: int) -> None:
    """Make a CA (or reuse the one in DIR), a broker certificate and client certificates,
    and print the settings that use them. For development, not production."""
    hosts = broker_hosts or DEFAULT_BROKER_HOSTS
    names = list(dict.fromkeys(clients))
    if BROKER_NAME in names:
        raise CliError("--client broker would overwrite the broker's files: choose another "
                       "client name")
    directory = directory.absolute()
    try:
        for name in names:
            check_name(name)
        ca, made = load_or_create_ca(directory, CA_NAME, days)
        broker = create_certificate(directory, ca, hosts[0], hosts, client=False,
                                    password=password, days=days, name=BROKER_NAME)
        issued = [create_certificate(directory, ca, name, client=True, password=password,
                                     days=days) for name in names]
    except CertsError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write in {directory}: {exc.strerror or exc} (choose a "
                       "directory you can write to)") from None
    console().print(files_table(ca, made, [broker, *issued]))
    click.echo()
    click.echo(broker_settings(broker, ca, password, bool(issued)))
    clients_or_none: list[IssuedCertificate | None] = [*issued] or [None]
    for client in clients_or_none:
        click.echo()
        click.echo(client_settings(client, ca, password, hosts[0]))


def files_table(ca: CertificateAuthority, made: bool,
                issued: list[IssuedCertificate]) -> Table:
    """What each file holds."""
    table = Table("file", "holds", "mode")
    state = "new" if made else "existing"
    table.add_row(*row(ca.cert_path, f"CA certificate ({state}): the truststore", "0644"))
    table.add_row(*row(ca.key_path, f"CA private key ({state}): signs certificates", "0600"))
    for cert in issued:
        what = f"client {cert.name}" if cert.client else "broker"
        subject = f"CN={cert.common_name}"
        if cert.hosts:
            subject += f", hosts {', '.join(cert.hosts)}"
        until = cert.not_after.strftime("%Y-%m-%d")
        table.add_row(*row(cert.keystore,
                           f"{what} keystore: key and certificate ({subject}; until {until})",
                           "0600"))
        table.add_row(*row(cert.cert_path, f"{what} certificate", "0644"))
        table.add_row(*row(cert.key_path, f"{what} private key", "0600"))
    return table


def broker_settings(broker: IssuedCertificate, ca: CertificateAuthority,
                    password: str | None, mutual: bool) -> str:
    """The broker settings (as `strom serve --set` options) for the broker certificate."""
    settings = [f"listeners=SSL://:{SSL_PORT}", "ssl.keystore.type=PEM",
                f"ssl.keystore.location={broker.keystore}"]
    if password:
        settings.append(f"ssl.key.password={password}")
    if mutual:
        settings += ["ssl.truststore.type=PEM", f"ssl.truststore.location={ca.cert_path}",
                     "ssl.client.auth=required"]
    return "Broker settings:\n" + command("strom serve", "--set", settings)


def client_settings(client: IssuedCertificate | None, ca: CertificateAuthority,
                    password: str | None, host: str) -> str:
    """A librdkafka client's settings (and the same as -X options of strom's commands)."""
    settings = ["security.protocol=SSL", f"ssl.ca.location={ca.cert_path}"]
    title = "Client settings (librdkafka"
    if client is not None:
        title = f"Client {client.name} settings (librdkafka"
        settings += [f"ssl.certificate.location={client.cert_path}",
                     f"ssl.key.location={client.key_path}"]
        if password:
            settings.append(f"ssl.key.password={password}")
    bootstrap = f"[{host}]:{SSL_PORT}" if ":" in host else f"{host}:{SSL_PORT}"
    return "\n".join([f"{title} properties):", *(f"  {s}" for s in settings),
                      "With strom's commands, e.g.:",
                      command(f"strom topic list -b {bootstrap}", "-X", settings)])


def command(head: str, option: str, settings: list[str]) -> str:
    """A shell command line, one option per line."""
    lines = [f"  {head}", *(f"    {option} {shlex.quote(setting)}" for setting in settings)]
    return " \\\n".join(lines)
