"""Creating, checking and migrating the schema at open (see schema.py)."""

from __future__ import annotations

import logging
from typing import Any

from strom.storage.local.meta_properties import new_cluster_id
from strom.storage.postgres.connect import StartupError, redact
from strom.storage.postgres.schema import (
    ADVISORY_LOCK_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    TABLES,
)

log = logging.getLogger(__name__)


async def ensure_schema(pool: Any, url: str) -> str:
    """Creates the tables in an empty database, migrates an older schema, refuses a newer
    one (StartupError); returns the cluster id."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK_ID)
        exists = await conn.fetchval("SELECT to_regclass('strom_schema') IS NOT NULL")
        if not exists:
            await conn.execute(TABLES)
            await conn.execute("INSERT INTO strom_schema (version, written_by) "
                               "VALUES ($1, $2)", SCHEMA_VERSION, _code_version())
            cluster_id = new_cluster_id()
            await conn.execute("INSERT INTO strom_cluster (cluster_id) VALUES ($1)",
                               cluster_id)
            log.info("created strom's tables (schema version %d) in %s; cluster id %s",
                     SCHEMA_VERSION, redact(url), cluster_id)
            return cluster_id
        version = await conn.fetchval("SELECT max(version) FROM strom_schema")
        if version is None or version > SCHEMA_VERSION:
            raise StartupError(
                f"the database at {redact(url)} holds strom's tables in schema version "
                f"{version}, newer than this strom understands ({SCHEMA_VERSION}): upgrade "
                "strom, or point --storage at another database")
        for step in range(version + 1, SCHEMA_VERSION + 1):
            await conn.execute(MIGRATIONS[step])
            await conn.execute("INSERT INTO strom_schema (version, written_by) "
                               "VALUES ($1, $2)", step, _code_version())
            log.info("migrated strom's tables in %s to schema version %d", redact(url), step)
        cluster_id = await conn.fetchval("SELECT cluster_id FROM strom_cluster")
        if cluster_id is None:
            raise StartupError(f"the database at {redact(url)} has strom's tables but no "
                               "cluster row: it was damaged; restore it or use another one")
        return str(cluster_id)


def _code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"strom {version('strom')}"
    except PackageNotFoundError:
        return "strom"
