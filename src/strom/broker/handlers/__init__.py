"""One module per API family; importing this package registers them all."""

from strom.broker.handlers import (  # noqa: F401
    api_versions,
    cluster,
    config_resources,
    configs,
    consumer_groups,
    describe_producers,
    fetch,
    groups,
    list_offsets,
    metadata,
    offset_for_leader_epoch,
    offsets,
    produce,
    producer_ids,
    quorum,
    records_admin,
    replica_placement,
    topics,
    transactions,
    txn_offset_commit,
)
