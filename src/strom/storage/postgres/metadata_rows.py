"""The security metadata records (strom.storage.metadata_records) in `strom_metadata`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from strom.storage.metadata_records import check_kind

READ: Final = "SELECT key, value FROM strom_metadata WHERE kind = $1"
PUT: Final = """
INSERT INTO strom_metadata (kind, key, value) VALUES ($1, $2, $3)
ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value
"""
DELETE: Final = "DELETE FROM strom_metadata WHERE kind = $1 AND key = $2"


async def read_records(pool: Any, kind: str) -> dict[str, str]:
    check_kind(kind)
    rows = await pool.fetch(READ, kind)
    return {r["key"]: r["value"] for r in rows}


async def write_records(pool: Any, kind: str, puts: Mapping[str, str],
                        deletes: Sequence[str]) -> None:
    """Puts and deletes in one transaction."""
    check_kind(kind)
    async with pool.acquire() as conn, conn.transaction():
        if deletes:
            await conn.executemany(DELETE, [(kind, key) for key in deletes])
        if puts:
            await conn.executemany(PUT, [(kind, k, v) for k, v in puts.items()])
