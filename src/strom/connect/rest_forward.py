"""Distributed mode's REST forwarding: every worker answers reads itself; a write to
/connectors (create, config, delete, restart, pause/resume/stop, offsets) received by a
follower is sent on to the leader and answered with the leader's answer, as Kafka Connect's
workers do. While no leader is known (a rebalance), or it cannot be reached, writes answer 409
with Kafka's messages."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from strom.connect.rest import HERDER_KEY, Handler, error_response

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Strom-Connect-Forwarded"
WRITE_METHODS = ("POST", "PUT", "DELETE", "PATCH")
NO_LEADER = ("Cannot complete request momentarily due to no known leader URL, likely because "
             "a rebalance was underway.")


def is_forwarded_write(request: web.Request) -> bool:
    path = request.path
    return (request.method in WRITE_METHODS and path.startswith("/connectors")
            and not path.endswith("/topics/reset"))


@web.middleware
async def forwarding_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    herder: Any = request.app[HERDER_KEY]
    if not is_forwarded_write(request) or herder.is_leader():
        return await handler(request)
    from strom.connect.distributed import REBALANCING
    leader = herder.leader_url()
    # `?forward=false` (Kafka's own forwarding marks its hops so) or our header: a request
    # already forwarded once is not forwarded again.
    if request.headers.get(FORWARDED_HEADER) \
            or request.query.get("forward", "").lower() == "false":
        return error_response(409, REBALANCING)
    if leader is None or leader == f"http://{herder.config.worker_id}":
        return error_response(409, NO_LEADER)
    body = await request.read()
    headers = {FORWARDED_HEADER: herder.config.worker_id}
    if request.content_type:
        headers["Content-Type"] = request.content_type
    try:
        async with ClientSession(timeout=ClientTimeout(total=60)) as session, \
                session.request(request.method, leader + request.path_qs, data=body,
                                headers=headers) as response:
            payload = await response.read()
            out_headers = {k: v for k, v in response.headers.items()
                           if k.lower() in ("location", "content-type")}
            for key, value in out_headers.items():
                if key.lower() == "location" and value.startswith(leader):
                    # As Kafka's: the created connector's URL on the worker asked.
                    out_headers[key] = f"{request.url.origin()}{value[len(leader):]}"
            return web.Response(status=response.status, body=payload, headers=out_headers)
    except (ClientError, TimeoutError) as error:
        log.warning("forwarding %s %s to the leader %s failed: %s", request.method,
                    request.path, leader, error)
        return error_response(409, REBALANCING)
