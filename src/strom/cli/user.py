"""`strom user list|set|delete`: SCRAM users (SASL PLAIN checks the same credentials).

Over the wire (-b, with -X for the client's own security settings) through the Admin API's
Describe/AlterUserScramCredentials, so it works against any Kafka cluster; or, before the
broker starts, straight into its storage (`--data-dir DIR` or `--storage URL`), as
`kafka-storage format --add-scram` creates the first admin.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Final

import click
from confluent_kafka.admin import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from strom.cli.common import (
    ClientOptions,
    CliError,
    admin_client,
    client_options,
    fail,
    kafka_error,
    output_option,
    render,
)
from strom.security.scram import MECHANISMS, MIN_ITERATIONS, credential_from_password

DEFAULT_MECHANISM: Final = "SCRAM-SHA-256"
_MECHANISM_CHOICE: Final = click.Choice(sorted(MECHANISMS), case_sensitive=False)
_ENUMS: Final = {"SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256,
                 "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512}


def _offline_options(func: Any) -> Any:
    func = click.option("--storage", metavar="URL", default=None,
                        help="Write into this PostgreSQL storage before the brokers start.")(func)
    return click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                        default=None,
                        help="Write into this data directory before the broker starts.")(func)


@click.group()
def user() -> None:
    """List, create or change, and delete SCRAM users (SASL/SCRAM and SASL/PLAIN logins)."""


@user.command("list")
@output_option
@client_options
def list_users(output: str, client: ClientOptions) -> None:
    """Every SCRAM user with its mechanisms and iterations (never a secret)."""
    admin = admin_client(client)
    try:
        every = admin.describe_user_scram_credentials(request_timeout=client.request_timeout)
        assert not isinstance(every, dict)
        described = every.result()
    except Exception as exc:
        raise fail(exc, client, action="listing the users") from None
    render(output, ["user", "mechanism", "iterations"],
           ([name, info.mechanism.name.replace("_", "-"), info.iterations]
            for name in sorted(described) for info in described[name].scram_credential_infos),
           key="users")
    if not described:
        click.echo("no SCRAM users", err=True)


@user.command("set")
@click.argument("name")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The password (asked for when not given).")
@click.option("--mechanism", type=_MECHANISM_CHOICE, default=DEFAULT_MECHANISM,
              show_default=True)
@click.option("--iterations", type=click.IntRange(MIN_ITERATIONS, 16384),
              default=MIN_ITERATIONS, show_default=True)
@_offline_options
@client_options
def set_user(client: ClientOptions, name: str, password: str, mechanism: str, iterations: int,
             data_dir: Path | None, storage: str | None) -> None:
    """Creates user NAME, or changes its password, for one SCRAM mechanism."""
    mechanism = mechanism.upper()
    if not name:
        raise CliError("the user name must not be empty")
    if data_dir is not None or storage is not None:
        credential = credential_from_password(mechanism, password, iterations)
        _write_offline(data_dir, storage, {f"{mechanism}/{name}": credential.to_kafka()}, [])
        click.echo(f"user {name} ({mechanism}) written to {data_dir or 'the storage'}")
        return
    upsertion = UserScramCredentialUpsertion(
        name, ScramCredentialInfo(_ENUMS[mechanism], iterations), password.encode())
    _alter(client, [upsertion], f"setting user {name}")
    click.echo(f"user {name} ({mechanism}) set")


@user.command("delete")
@click.argument("name")
@click.option("--mechanism", type=_MECHANISM_CHOICE, default=None,
              help="Delete only this mechanism's credential (default: all of the user's).")
@_offline_options
@client_options
def delete_user(client: ClientOptions, name: str, mechanism: str | None,
                data_dir: Path | None, storage: str | None) -> None:
    """Deletes user NAME's credentials."""
    mechanisms = [mechanism.upper()] if mechanism else sorted(MECHANISMS)
    if data_dir is not None or storage is not None:
        _write_offline(data_dir, storage, {}, [f"{m}/{name}" for m in mechanisms])
        click.echo(f"user {name} deleted from {data_dir or 'the storage'}")
        return
    if mechanism is None:
        admin = admin_client(client)
        try:
            futures = admin.describe_user_scram_credentials(
                [name], request_timeout=client.request_timeout)
            assert isinstance(futures, dict)
            described = futures[name].result()
        except Exception as exc:
            error = kafka_error(exc)
            if error is not None and error.name() == "RESOURCE_NOT_FOUND":
                raise CliError(f"deleting user {name} failed: no such user") from None
            raise fail(exc, client, action=f"looking up user {name}") from None
        mechanisms = [i.mechanism.name.replace("_", "-")
                      for i in described.scram_credential_infos]
    _alter(client, [UserScramCredentialDeletion(name, _ENUMS[m]) for m in mechanisms],
           f"deleting user {name}")
    click.echo(f"user {name} deleted ({', '.join(mechanisms)})")


def _alter(client: ClientOptions, alterations: list[Any], action: str) -> None:
    admin = admin_client(client)
    futures = admin.alter_user_scram_credentials(alterations,
                                                 request_timeout=client.request_timeout)
    for future in futures.values():
        try:
            future.result()
        except Exception as exc:
            error = kafka_error(exc)
            if error is not None and error.name() == "RESOURCE_NOT_FOUND":
                raise CliError(f"{action} failed: no such user") from None
            raise fail(exc, client, action=action) from None


def _write_offline(data_dir: Path | None, storage: str | None, puts: dict[str, str],
                   deletes: list[str]) -> None:
    if data_dir is not None and storage is not None:
        raise CliError("give --data-dir or --storage, not both")
    if data_dir is not None:
        from strom.storage.metadata_records import FileRecords, write_file

        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            write_file(FileRecords(data_dir).path("scram"), puts, deletes)
        except (OSError, ValueError) as exc:
            raise CliError(str(exc)) from None
        return
    assert storage is not None
    asyncio.run(_write_postgres(storage, puts, deletes))


async def _write_postgres(url: str, puts: dict[str, str], deletes: list[str]) -> None:
    from strom.storage.api import StorageError
    from strom.storage.postgres.connect import create_pool
    from strom.storage.postgres.metadata_rows import write_records
    from strom.storage.postgres.schema_setup import ensure_schema

    try:
        pool = await create_pool(url, "strom user", size=1)
    except StorageError as exc:
        raise CliError(str(exc)) from None
    try:
        await ensure_schema(pool, url)
        await write_records(pool, "scram", puts, deletes)
    finally:
        await pool.close()
