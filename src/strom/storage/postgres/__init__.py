"""The PostgreSQL storage engine (`--storage postgresql://USER[:PASSWORD]@HOST:PORT/DB`)."""

from strom.storage.postgres.engine import PostgresEngine

__all__ = ["PostgresEngine"]
