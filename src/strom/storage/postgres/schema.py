"""The PostgreSQL engine's tables, created and migrated by strom itself.

`strom_schema` holds one row: the schema version the tables follow. A database without it gets
every table at version SCHEMA_VERSION; an older version is migrated step by step (MIGRATIONS);
a newer one, written by a newer strom, refuses to start with a message saying so. Brokers that
start together take an advisory lock for the check, so exactly one creates or migrates.

One row per record batch, stored as received (its base offset and partition leader epoch
written at append); a partition's row holds its log start offset and its next offset (the high
watermark), moved by compare-and-set together with the batch rows' insert, and its lease: the
owning broker and that broker's session (`owner`, `owner_session`; the lease is valid while
that session is, see membership.py) and the leader epoch that fences every append, moved up by
one whenever the lease changes hands (leases.py); `assigned` pins the lease to chosen brokers
(a reassignment), NULL leaves it to the balanced placement. `strom_epoch_start` records where
each leader epoch began (Kafka's leader-epoch cache, for OffsetForLeaderEpoch);
`strom_cluster.topics_version` moves on every topic change, so other brokers know to re-read
the topics. `strom_broker.listeners` lists a broker's advertised listeners (NAME://HOST:PORT,
comma separated; host and port are its inter-broker listener's). `strom_metadata` holds the
security metadata as key-value records by kind (SCRAM credentials; ACLs and quotas).
"""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = 4
ADVISORY_LOCK_ID: Final = 0x5354524F4D  # "STROM": serialises schema creation and migration

TABLES: Final = """
CREATE TABLE strom_schema (
    version integer NOT NULL,
    written_by text NOT NULL,
    migrated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE strom_cluster (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    cluster_id text NOT NULL,
    next_producer_id bigint NOT NULL DEFAULT 0,
    topics_version bigint NOT NULL DEFAULT 0
);
CREATE TABLE strom_broker (
    node_id integer PRIMARY KEY,
    host text NOT NULL,
    port integer NOT NULL,
    rack text,
    registered_at timestamptz NOT NULL DEFAULT now(),
    session_epoch bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    listeners text NOT NULL DEFAULT ''
);
CREATE TABLE strom_topic (
    topic_id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    partitions integer NOT NULL,
    configs jsonb NOT NULL DEFAULT '{}'::jsonb,
    replication_factor integer NOT NULL DEFAULT 1
);
CREATE TABLE strom_partition (
    partition_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic_id uuid NOT NULL REFERENCES strom_topic ON DELETE CASCADE,
    index integer NOT NULL,
    leader_epoch integer NOT NULL DEFAULT 0,
    log_start bigint NOT NULL DEFAULT 0,
    next_offset bigint NOT NULL DEFAULT 0,
    owner integer,
    owner_session bigint,
    assigned integer[],
    UNIQUE (topic_id, index)
);
CREATE TABLE strom_epoch_start (
    partition_id bigint NOT NULL,
    leader_epoch integer NOT NULL,
    start_offset bigint NOT NULL,
    PRIMARY KEY (partition_id, leader_epoch)
);
CREATE TABLE strom_batch (
    partition_id bigint NOT NULL,
    base_offset bigint NOT NULL,
    last_offset bigint NOT NULL,
    max_timestamp bigint NOT NULL,
    size integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (partition_id, base_offset)
);
ALTER TABLE strom_batch ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE strom_producer_snapshot (
    partition_id bigint PRIMARY KEY,
    end_offset bigint NOT NULL,
    state bytea NOT NULL
);
CREATE TABLE strom_metadata (
    kind text NOT NULL,
    key text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (kind, key)
);
"""

# version -> the SQL taking the schema from version-1 to version.
MIGRATIONS: Final[dict[int, str]] = {
    # 2: broker sessions (membership judged by the database's clock).
    2: """
ALTER TABLE strom_broker ADD COLUMN session_epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE strom_broker ADD COLUMN expires_at timestamptz NOT NULL DEFAULT clock_timestamp();
""",
    # 3: partition leases, leader-epoch history, replication factors, the topics' version.
    3: """
ALTER TABLE strom_cluster ADD COLUMN topics_version bigint NOT NULL DEFAULT 0;
ALTER TABLE strom_topic ADD COLUMN replication_factor integer NOT NULL DEFAULT 1;
ALTER TABLE strom_partition ADD COLUMN owner integer;
ALTER TABLE strom_partition ADD COLUMN owner_session bigint;
ALTER TABLE strom_partition ADD COLUMN assigned integer[];
CREATE TABLE strom_epoch_start (
    partition_id bigint NOT NULL,
    leader_epoch integer NOT NULL,
    start_offset bigint NOT NULL,
    PRIMARY KEY (partition_id, leader_epoch)
);
""",
    # 4: every listener of a broker; security metadata (SCRAM credentials, ACLs, quotas).
    4: """
ALTER TABLE strom_broker ADD COLUMN listeners text NOT NULL DEFAULT '';
CREATE TABLE strom_metadata (
    kind text NOT NULL,
    key text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (kind, key)
);
""",
}
