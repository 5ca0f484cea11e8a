"""DescribeUserScramCredentials (50) and AlterUserScramCredentials (51): the SCRAM users,
kept as `scram` metadata records by the storage engine (so every broker of a cluster
authenticates against the same), with Kafka's checks and error codes (KIP-554).

Describing needs DESCRIBE on the cluster, altering ALTER on the cluster; a principal without
it gets CLUSTER_AUTHORIZATION_FAILED (Kafka's getErrorResponse: at the top and for every user
named when describing, for every user named when altering) and nothing is read or written."""

from __future__ import annotations

from collections import Counter
from typing import Any

from strom.broker.authorize import cluster_allowed
from strom.broker.registry import api
from strom.broker.sasl import SCRAM_KIND, credential_key, read_credentials
from strom.broker.state import Broker, RequestContext
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import Operation
from strom.security.scram import (
    MAX_ITERATIONS,
    MECHANISM_TYPE_IDS,
    MECHANISM_TYPES,
    MIN_ITERATIONS,
    credential_from_salted_password,
)

CLUSTER_AUTHORIZATION_MESSAGE = "Cluster authorization failed."


@api(50, "DescribeUserScramCredentials", (0, 0), "the users' SCRAM mechanisms and iterations "
     "(never salts or keys); all users, or the ones named")
async def handle_describe_user_scram_credentials(broker: Broker, ctx: RequestContext,
                                                 request: Any, b: ResponseBuilder) -> Any:
    names = [str(u.name) for u in request.users or ()]
    if not cluster_allowed(ctx, Operation.DESCRIBE):
        refused = ErrorCode.cluster_authorization_failed
        return b.make("DescribeUserScramCredentialsResponse", throttle_time=NO_THROTTLE,
                      error_code=refused, error_message=CLUSTER_AUTHORIZATION_MESSAGE,
                      results=tuple(b.make(
                          "DescribeUserScramCredentialsResult", user=user, error_code=refused,
                          error_message=CLUSTER_AUTHORIZATION_MESSAGE, credential_infos=())
                          for user in names))
    stored = await read_credentials(broker.engine)
    wanted = names or sorted(stored)
    counts = Counter(names)
    results = []
    for user in dict.fromkeys(wanted):
        error, message, infos = ErrorCode.none, None, ()
        if counts[user] > 1:
            error = ErrorCode.duplicate_resource
            message = ("Cannot describe SCRAM credentials for the same user twice in a single "
                       f"request: {user}")
        elif user not in stored:
            error = ErrorCode.resource_not_found
            message = f"Attempt to describe a user credential that does not exist: {user}"
        else:
            infos = tuple(b.make("CredentialInfo", mechanism=MECHANISM_TYPE_IDS[mechanism],
                                 iterations=credential.iterations)
                          for mechanism, credential in sorted(stored[user].items())
                          if mechanism in MECHANISM_TYPE_IDS)
        results.append(b.make("DescribeUserScramCredentialsResult", user=user,
                              error_code=error, error_message=message, credential_infos=infos))
    return b.make("DescribeUserScramCredentialsResponse", throttle_time=NO_THROTTLE,
                  error_code=ErrorCode.none, error_message=None, results=tuple(results))


def _upsertion_error(u: Any) -> tuple[ErrorCode, str] | None:
    if not str(u.name):
        return ErrorCode.unacceptable_credential, "Username must not be empty"
    if int(u.mechanism) not in MECHANISM_TYPES:
        return ErrorCode.unsupported_sasl_mechanism, "Unknown SCRAM mechanism"
    if int(u.iterations) < MIN_ITERATIONS:
        return (ErrorCode.unacceptable_credential,
                f"Too few iterations: at least {MIN_ITERATIONS}")
    if int(u.iterations) > MAX_ITERATIONS:
        return (ErrorCode.unacceptable_credential,
                f"Too many iterations: at most {MAX_ITERATIONS}")
    if not bytes(u.salt) or not bytes(u.salted_password):
        return ErrorCode.unacceptable_credential, "Salt and salted password must not be empty"
    return None


def _deletion_error(user: str, mechanism: str | None,
                    stored: dict[str, dict[str, Any]]) -> tuple[ErrorCode, str] | None:
    if not user:
        return ErrorCode.unacceptable_credential, "Username must not be empty"
    if mechanism is None:
        return ErrorCode.unsupported_sasl_mechanism, "Unknown SCRAM mechanism"
    if mechanism not in stored.get(user, {}):
        return (ErrorCode.resource_not_found,
                "Attempt to delete a user credential that does not exist")
    return None


@api(51, "AlterUserScramCredentials", (0, 0), "upserts and deletions of SCRAM credentials, "
     "all valid ones written together; iterations 4096 to 16384")
async def handle_alter_user_scram_credentials(broker: Broker, ctx: RequestContext,
                                              request: Any, b: ResponseBuilder) -> Any:
    if not cluster_allowed(ctx, Operation.ALTER):
        users = sorted({str(d.name) for d in request.deletions}
                       | {str(u.name) for u in request.upsertions})
        return b.make("AlterUserScramCredentialsResponse", throttle_time=NO_THROTTLE,
                      results=tuple(b.make(
                          "AlterUserScramCredentialsResult", user=user,
                          error_code=ErrorCode.cluster_authorization_failed,
                          error_message=CLUSTER_AUTHORIZATION_MESSAGE) for user in users))
    stored: dict[str, dict[str, Any]] = dict(await read_credentials(broker.engine))
    counts = Counter([str(d.name) for d in request.deletions]
                     + [str(u.name) for u in request.upsertions])
    errors: dict[str, tuple[ErrorCode, str]] = {
        user: (ErrorCode.duplicate_resource,
               "A user credential cannot be altered twice in the same request")
        for user, count in counts.items() if count > 1}
    puts: dict[str, str] = {}
    deletes: list[str] = []
    for d in request.deletions:
        user, mechanism = str(d.name), MECHANISM_TYPES.get(int(d.mechanism))
        problem = errors.get(user) or _deletion_error(user, mechanism, stored)
        if problem is not None:
            errors[user] = problem
        elif mechanism is not None:
            deletes.append(credential_key(user, mechanism))
    for u in request.upsertions:
        user = str(u.name)
        problem = errors.get(user) or _upsertion_error(u)
        if problem is not None:
            errors[user] = problem
            continue
        mechanism = MECHANISM_TYPES[int(u.mechanism)]
        credential = credential_from_salted_password(mechanism, bytes(u.salt),
                                                     bytes(u.salted_password), int(u.iterations))
        puts[credential_key(user, mechanism)] = credential.to_kafka()
    if puts or deletes:
        await broker.engine.write_metadata(SCRAM_KIND, puts, deletes)
    none: tuple[ErrorCode, str | None] = (ErrorCode.none, None)
    results = tuple(b.make("AlterUserScramCredentialsResult", user=user,
                           error_code=errors.get(user, none)[0],
                           error_message=errors.get(user, none)[1])
                    for user in counts)
    return b.make("AlterUserScramCredentialsResponse", throttle_time=NO_THROTTLE,
                  results=results)
