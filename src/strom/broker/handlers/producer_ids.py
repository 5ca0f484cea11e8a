"""InitProducerId (22): producer ids for idempotent producers.

Without a transactional id Kafka's TransactionCoordinator "blindly accepts the request and
returns a new producerId": a fresh id with epoch 0, whatever producer id and epoch (KIP-360,
v3+) the request carries; so does strom. (Kafka clients bump an idempotent producer's epoch
themselves after a sequence error; the partitions then accept the new epoch from sequence 0.)

A transactional id goes to the transaction coordinator (strom.coordinator.transaction): a
new epoch for the id (fencing older producers with it), after aborting a transaction the id
left ongoing (the client is told CONCURRENT_TRANSACTIONS and retries); v3+ may name the
producer id and epoch the client had (KIP-360). Clients before v4 get INVALID_PRODUCER_EPOCH
where newer ones get PRODUCER_FENCED.

Authorization, as Kafka's KafkaApis: a transactional id needs WRITE on it
(TRANSACTIONAL_ID_AUTHORIZATION_FAILED); an idempotent producer needs IDEMPOTENT_WRITE on the
cluster or WRITE on some topic (KIP-679: Kafka's authorizeByResourceType), else
CLUSTER_AUTHORIZATION_FAILED. A refused request takes no producer id and touches no
transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from strom.broker.authorize import cluster_allowed, transactional_id_allowed
from strom.broker.handlers.transactions import call, fenced_as
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.coordinator.transaction import InitProducerIdResult
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import Operation, ResourceType
from strom.storage.api import StorageError

log = logging.getLogger(__name__)

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1


def idempotence_allowed(ctx: RequestContext) -> bool:
    if cluster_allowed(ctx, Operation.IDEMPOTENT_WRITE):
        return True
    assert ctx.authorizer is not None  # cluster_allowed passes everything without one
    return ctx.authorizer.authorize_by_resource_type(
        str(ctx.session.principal), ctx.session.client_host, Operation.WRITE,
        ResourceType.TOPIC)


async def init_transactional(broker: Broker, request: Any, version: int,
                             answer: Callable[..., Any]) -> Any:
    timeout_ms = int(request.transaction_timeout.total_seconds() * 1000)
    result = await call(broker, request.transactional_id, lambda core, now_ms: (
        core.init_producer_id(request.transactional_id, timeout_ms,
                              int(getattr(request, "producer_id", -1)),
                              int(getattr(request, "producer_epoch", -1)), now_ms)),
        InitProducerIdResult)
    return answer(fenced_as(result.error, version, 4), result.producer_id, result.producer_epoch)


@api(22, "InitProducerId", (0, 5),
     "idempotent producers: a new producer id, epoch 0 (ids reserved durably in blocks of "
     "1000); transactional ids: epoch bump, zombie fencing, KIP-360 recovery")
async def handle_init_producer_id(broker: Broker, ctx: RequestContext, request: Any,
                                  b: ResponseBuilder) -> Any:
    def answer(error: ErrorCode, producer_id: int = NO_PRODUCER_ID,
               epoch: int = NO_PRODUCER_EPOCH) -> Any:
        return b.make("InitProducerIdResponse", throttle_time=NO_THROTTLE, error_code=error,
                      producer_id=producer_id, producer_epoch=epoch)

    if request.transactional_id is not None:
        if not transactional_id_allowed(ctx, Operation.WRITE, request.transactional_id):
            return answer(ErrorCode.transactional_id_authorization_failed)
        return await init_transactional(broker, request, b.version, answer)
    if not idempotence_allowed(ctx):
        return answer(ErrorCode.cluster_authorization_failed)
    try:
        producer_id = await broker.producer_ids.allocate()
    except StorageError as exc:
        log.error("cannot allocate a producer id: %s", exc)
        return answer(ErrorCode.unknown_server_error)
    return answer(ErrorCode.none, producer_id, 0)
