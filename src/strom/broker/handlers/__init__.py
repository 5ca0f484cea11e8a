"""One module per API family; importing this package registers them all."""

from strom.broker.handlers import (  # noqa: F401
    api_versions,
    cluster,
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
    records_admin,
    topics,
    transactions,
    txn_offset_commit,
)
