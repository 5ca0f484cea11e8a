"""The group coordinator on a full disk: an OffsetCommit whose `__consumer_offsets` write fails
for lack of space is answered NOT_COORDINATOR for its partitions (Kafka's mapping of
KAFKA_STORAGE_ERROR for the coordinator's writes: retriable, the client rediscovers the
coordinator and commits again), and the same commit succeeds once space is back (and the shard
has reloaded)."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode as E
from kio.schema.offset_commit.v8.request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from kio.static.primitive import i32, i64

from strom.broker.handlers.offsets import handle_offset_commit
from strom.broker.state import Broker, RequestContext
from strom.config.broker import BrokerConfig
from strom.protocol.messages import ResponseBuilder, encode_response
from strom.storage.local import log_segment, no_space
from strom.storage.local.engine import LocalEngine


def commit_request(offset: int) -> OffsetCommitRequest:
    return OffsetCommitRequest(
        group_id="g", generation_id_or_member_epoch=i32(-1), member_id="",
        group_instance_id=None,
        topics=(OffsetCommitRequestTopic(name="t", partitions=(OffsetCommitRequestPartition(
            partition_index=i32(0), committed_offset=i64(offset), committed_leader_epoch=i32(-1),
            committed_metadata=""),)),))


async def commit(broker: Broker, offset: int) -> list[int]:
    b = ResponseBuilder(8, 8)
    response = await handle_offset_commit(broker, RequestContext("c", "h", 8, 1),
                                          commit_request(offset), b)
    encode_response(8, 8, 1, response)
    return [int(p.error_code) for t in response.topics for p in t.partitions]


def test_offset_commit_on_a_full_disk_is_not_coordinator_then_succeeds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = log_segment._write_all
    full = [False]

    def write_all(fd: int, bufs: Sequence[bytearray]) -> None:
        if full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, bufs)

    monkeypatch.setattr(log_segment, "_write_all", write_all)
    monkeypatch.setattr(no_space, "RETRY_INTERVAL_S", 0.0)

    async def main() -> Any:
        config = BrokerConfig.build(tmp_path, "127.0.0.1", 0, {})
        engine = LocalEngine(tmp_path, config)
        await engine.open()
        broker = Broker(config, engine)
        await broker.groups.start()
        try:
            await engine.create_topic("t", 1, {})
            assert await commit(broker, 5) == [E.none]
            full[0] = True
            assert await commit(broker, 7) == [E.not_coordinator]
            full[0] = False
            # The failed write made the shard reload from its log (the coordinator runtime's
            # failure policy): COORDINATOR_LOAD_IN_PROGRESS, retriable, until it has.
            answer = await commit(broker, 7)
            for _ in range(100):
                if answer != [E.coordinator_load_in_progress]:
                    break
                await asyncio.sleep(0.01)
                answer = await commit(broker, 7)
            assert answer == [E.none]
            _, offsets = broker.groups.core("g").fetch_offsets("g", [("t", 0)])
            assert offsets[("t", 0)].offset == 7
        finally:
            await broker.groups.stop()
            await engine.close()

    asyncio.run(main())
