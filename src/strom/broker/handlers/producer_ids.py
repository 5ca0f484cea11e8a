"""InitProducerId (22): producer ids for idempotent producers.

Without a transactional id Kafka's TransactionCoordinator "blindly accepts the request and
returns a new producerId": a fresh id with epoch 0, whatever producer id and epoch (KIP-360,
v3+) the request carries; so does strom. (Kafka clients bump an idempotent producer's epoch
themselves after a sequence error; the partitions then accept the new epoch from sequence 0.)

A transactional id gets COORDINATOR_NOT_AVAILABLE: there is no transaction coordinator yet
(FindCoordinator answers the same for key type 1). It is the answer of a cluster whose
transaction coordinator is not up: clients retry it until their timeout and then fail with a
clear "coordinator not available" error, rather than with an authorization error (Kafka sends
TRANSACTIONAL_ID_AUTHORIZATION_FAILED only when ACLs deny the id).
"""

from __future__ import annotations

import logging
from typing import Any

from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.storage.api import StorageError

log = logging.getLogger(__name__)

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1


@api(22, "InitProducerId", (0, 5),
     "idempotent producers: a new producer id, epoch 0 (ids reserved durably in blocks of "
     "1000); a transactional id gets COORDINATOR_NOT_AVAILABLE (no transactions yet)")
async def handle_init_producer_id(broker: Broker, ctx: RequestContext, request: Any,
                                  b: ResponseBuilder) -> Any:
    def answer(error: ErrorCode, producer_id: int = NO_PRODUCER_ID,
               epoch: int = NO_PRODUCER_EPOCH) -> Any:
        return b.make("InitProducerIdResponse", throttle_time=NO_THROTTLE, error_code=error,
                      producer_id=producer_id, producer_epoch=epoch)

    if request.transactional_id is not None:
        return answer(ErrorCode.coordinator_not_available)
    try:
        producer_id = await broker.producer_ids.allocate()
    except StorageError as exc:
        log.error("cannot allocate a producer id: %s", exc)
        return answer(ErrorCode.unknown_server_error)
    return answer(ErrorCode.none, producer_id, 0)
