"""PostgreSQL source connectors: change data capture through logical replication
(`PostgresCdcSourceConnector`, answering to Debezium's class name) and query-based polling
(`PostgresQuerySourceConnector`, answering to the JDBC source connector's class name)."""

from strom.connect.postgres.cdc import PostgresCdcSourceConnector, PostgresCdcSourceTask
from strom.connect.postgres.query import PostgresQuerySourceConnector, PostgresQuerySourceTask

__all__ = ["PostgresCdcSourceConnector", "PostgresCdcSourceTask",
           "PostgresQuerySourceConnector", "PostgresQuerySourceTask"]
