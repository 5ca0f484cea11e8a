"""The `--security` mode's state oracle, over the PLAINTEXT (super user) listener: nothing the
fuzz user asked for was done.

At the start (`prepare`), resources only the fuzz user's frames name are made and their state
kept: topics `fuzz-sec-t1` and `fuzz-sec-t3` (empty), group `fuzz-sec-g` with offset 42
committed, transactional id `fuzz-sec-x` initialized (its producer epoch kept). `check` (every
liveness round and at the end) then finds:

* no topic, group or transactional id named with the fuzz user's prefix (or its own names);
* the target topics still there, with their partition counts, no record in them and no
  topic-level config set; the group's offset still 42; the transactional id's epoch unchanged;
* no ACL for a `fzu-` resource or principal, or for `User:fuzz-user`, and none allowing
  `User:*` (which would void the unauthorized oracle); the liveness user's ACLs still there;
* no SCRAM user with the prefix; both users' credentials as made;
* no client quota for the prefix or the two users.

`refused` is the positive control: the fuzz user still logs in and a Produce from it is
refused.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass
from typing import Any, Final

from kio.schema.describe_acls.v2.request import DescribeAclsRequest
from kio.schema.describe_client_quotas.v1.request import DescribeClientQuotasRequest
from kio.schema.describe_configs.v4.request import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
)
from kio.schema.describe_user_scram_credentials.v0.request import (
    DescribeUserScramCredentialsRequest,
)
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.list_groups.v4.request import ListGroupsRequest
from kio.schema.list_offsets.v7.request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from kio.schema.list_transactions.v0.request import ListTransactionsRequest
from kio.schema.offset_fetch.v8.request import (
    OffsetFetchRequest,
    OffsetFetchRequestGroup,
    OffsetFetchRequestTopics,
)

from bench.fuzz import batches, calls, sasl_client, security, wire
from bench.fuzz.clients import CheckFailed
from bench.fuzz.security import (
    FUZZ_MECHANISMS,
    FUZZ_USER,
    ITERATIONS,
    LIVE_PREFIX,
    LIVENESS_MECHANISM,
    LIVENESS_USER,
    PREFIX,
    TARGET_GROUP,
    TARGET_OFFSET,
    TARGET_TOPICS,
    TARGET_TXN,
    Listeners,
)
from bench.fuzz.wire import Client, Conn

OWN_NAMES: Final = frozenset({FUZZ_USER, LIVENESS_USER, TARGET_GROUP, TARGET_TXN})
DYNAMIC_TOPIC_CONFIG: Final = 1
MECHANISM_IDS: Final = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
ANY: Final = 1
ALLOW: Final = 3
TOPIC_AUTHORIZATION_FAILED: Final = 29


def fuzz_name(name: str | None) -> bool:
    return name is not None and (name.startswith(PREFIX) or name in OWN_NAMES)


@dataclass
class Baseline:
    producer_id: int = -1
    producer_epoch: int = -1


def _init_producer(client: Client) -> tuple[int, int]:
    calls.find_coordinator(client, TARGET_TXN, 1)
    answer = client.call(InitProducerIdRequest(
        transactional_id=TARGET_TXN, transaction_timeout=datetime.timedelta(seconds=60),
        producer_id=-1, producer_epoch=-1))
    if answer.error_code != 0:
        raise CheckFailed(f"InitProducerId({TARGET_TXN}): {answer.error_code!r}")
    return int(answer.producer_id), int(answer.producer_epoch)


def prepare(address: tuple[str, int]) -> Baseline:
    """The target resources (raises CheckFailed if one cannot be made)."""
    with Client(address) as client:
        for name, partitions in TARGET_TOPICS:
            errors = calls.create_topics(client, [name], partitions)
            if errors.get(name) not in (0, 36):  # none, TOPIC_ALREADY_EXISTS
                raise CheckFailed(f"cannot create {name}: {errors}")
        calls.group_commit_and_fetch(client, TARGET_GROUP, TARGET_TOPICS[0][0], TARGET_OFFSET)
        producer_id, epoch = _init_producer(client)
    return Baseline(producer_id, epoch)


def _topics(client: Client, problems: list[str]) -> None:
    topics = calls.metadata(client, None)
    made = sorted(n for n in topics if fuzz_name(n))
    if made:
        problems.append(f"{len(made)} topics of the fuzz user exist: {_names(made)}")
    for name, partitions in TARGET_TOPICS:
        entry = topics.get(name)
        if entry is None:
            problems.append(f"topic {name} is gone")
        elif len(entry.partitions) != partitions:
            problems.append(f"topic {name} has {len(entry.partitions)} partitions, not "
                            f"{partitions}")
    answer = client.call(ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=tuple(
        ListOffsetsTopic(name=name, partitions=tuple(ListOffsetsPartition(
            partition_index=p, current_leader_epoch=-1, timestamp=-1)
            for p in range(count))) for name, count in TARGET_TOPICS)))
    for topic in answer.topics:
        for part in topic.partitions:
            if part.error_code == 0 and part.offset != 0:
                problems.append(f"{topic.name}-{part.partition_index} holds {part.offset} "
                                "records")
    configs = client.call(DescribeConfigsRequest(resources=tuple(DescribeConfigsResource(
        resource_type=calls.TOPIC_RESOURCE, resource_name=name, configuration_keys=None)
        for name, _ in TARGET_TOPICS), include_synonyms=False, include_documentation=False))
    for result in configs.results:
        dynamic = [f"{c.name}={c.value}" for c in result.configs
                   if c.config_source == DYNAMIC_TOPIC_CONFIG]
        if dynamic:
            problems.append(f"{result.resource_name} has topic configs set: {dynamic[:5]}")


def _groups(client: Client, problems: list[str]) -> None:
    listed = client.call(ListGroupsRequest(states_filter=()))
    made = sorted(g.group_id for g in listed.groups
                  if fuzz_name(g.group_id) and g.group_id != TARGET_GROUP)
    if made:
        problems.append(f"{len(made)} groups of the fuzz user exist: {_names(made)}")
    fetch = client.call(OffsetFetchRequest(groups=(OffsetFetchRequestGroup(
        group_id=TARGET_GROUP, topics=(OffsetFetchRequestTopics(
            name=TARGET_TOPICS[0][0], partition_indexes=(0,)),)),), require_stable=False))
    got = [(p.committed_offset, int(p.error_code)) for g in fetch.groups for t in g.topics
           for p in t.partitions]
    if got != [(TARGET_OFFSET, 0)]:
        problems.append(f"group {TARGET_GROUP} has {got}, not offset {TARGET_OFFSET}")


def _transactions(client: Client, baseline: Baseline, problems: list[str]) -> None:
    """No `fzu-` transactional id; the target's epoch moved only by our own InitProducerId
    (each check makes one, which bumps the epoch by one: a larger bump is someone else's)."""
    listed = client.call(ListTransactionsRequest(state_filters=(), producer_id_filters=()))
    made = sorted(t.transactional_id for t in listed.transaction_states
                  if fuzz_name(t.transactional_id) and t.transactional_id != TARGET_TXN)
    if made:
        problems.append(f"{len(made)} transactional ids of the fuzz user exist: "
                        f"{_names(made)}")
    # DescribeTransactions would say it without a bump, but kio cannot read the -1 start time
    # of a transactional id with no transaction.
    want = (baseline.producer_id, baseline.producer_epoch + 1)
    got = _init_producer(client)
    baseline.producer_id, baseline.producer_epoch = got
    if got != want:
        problems.append(f"transactional id {TARGET_TXN}: InitProducerId gave (producer id, "
                        f"epoch) {got}, {want} if no one else initialized it")


def accepted(address: tuple[str, int], source: str) -> int:
    """How many connections from `source` in a row are served (at most the budget)."""
    from bench.fuzz.abuse import api_versions_frame

    conns: list[Conn] = []
    answered = 0
    try:
        for i in range(security.CONNECTION_BUDGET):
            conn = Conn(address, 5.0, source=source)
            conns.append(conn)
            if conn.exchange(api_versions_frame(i), 5.0).outcome != wire.RESPONSE:
                break
            answered += 1
    finally:
        for conn in conns:
            conn.close()
    return answered


def connections_released(address: tuple[str, int], in_flight_max: int) -> str:
    """Connections from each attackers' address until one is refused (at most the budget the
    broker allows the address): fewer than the budget less those the workers may hold means
    the broker still counts connections the attacks ended."""
    problems, shown = [], []
    want = security.CONNECTION_BUDGET - in_flight_max
    for source in security.ATTACKER_IPS:
        answered = accepted(address, source)
        shown.append(f"{source}: {answered}")
        if answered < want:
            what = "TLS attacks" if source == security.TLS_ATTACKER_IP else "SASL attacks"
            problems.append(
                f"only {answered} new connections from {source} ({what}) accepted of the "
                f"{security.CONNECTION_BUDGET} allowed (max.connections.per.ip.overrides), "
                f"at most {in_flight_max} held by workers: about {want - answered}+ "
                "connections the attacks ended are still counted")
    if problems:
        raise CheckFailed("; ".join(problems))
    return f"accepted of {security.CONNECTION_BUDGET}: " + ", ".join(shown)


def _acls(client: Client, problems: list[str]) -> None:
    answer = client.call(DescribeAclsRequest(
        resource_type_filter=ANY, resource_name_filter=None, pattern_type_filter=ANY,
        principal_filter=None, host_filter=None, operation=ANY, permission_type=ANY))
    if answer.error_code != 0:
        problems.append(f"DescribeAcls answered {answer.error_code!r}")
        return
    bad, liveness = [], 0
    for resource in answer.resources:
        for acl in resource.acls:
            shown = f"{acl.principal} op {acl.operation} perm {acl.permission_type} on " \
                    f"{resource.resource_type}:{resource.resource_name}"
            principal = str(acl.principal)
            if (str(resource.resource_name).startswith(PREFIX) or PREFIX in principal
                    or principal == f"User:{FUZZ_USER}"
                    or (principal == "User:*" and acl.permission_type == ALLOW)):
                bad.append(shown)
            if principal == f"User:{LIVENESS_USER}" and resource.resource_name == LIVE_PREFIX:
                liveness += 1
    if bad:
        problems.append(f"{len(bad)} ACLs the fuzz user may have made or that allow it: "
                        f"{bad[:3]}")
    if liveness < 2:
        problems.append(f"the liveness user's ACLs are gone ({liveness} of 2 left)")


def _users(client: Client, problems: list[str]) -> None:
    answer = client.call(DescribeUserScramCredentialsRequest(users=None))
    found: dict[str, set[tuple[int, int]]] = {}
    for result in answer.results:
        found[str(result.user)] = {(int(c.mechanism), int(c.iterations))
                                   for c in result.credential_infos}
    made = sorted(u for u in found if u.startswith(PREFIX))
    if made:
        problems.append(f"{len(made)} SCRAM users of the fuzz user exist: {_names(made)}")
    want = {FUZZ_USER: {(MECHANISM_IDS[m], ITERATIONS) for m in FUZZ_MECHANISMS},
            LIVENESS_USER: {(MECHANISM_IDS[LIVENESS_MECHANISM], ITERATIONS)}}
    for user, credentials in want.items():
        if found.get(user) != credentials:
            problems.append(f"SCRAM credentials of {user}: {found.get(user)}, made "
                            f"{credentials}")


def _quotas(client: Client, problems: list[str]) -> None:
    answer = client.call(DescribeClientQuotasRequest(components=(), strict=False))
    bad = [[(e.entity_type, e.entity_name) for e in entry.entity] for entry in answer.entries
           if any(fuzz_name(e.entity_name) for e in entry.entity)]
    if bad:
        problems.append(f"{len(bad)} client quotas for the fuzz user's names: {bad[:3]}")


def check(address: tuple[str, int], baseline: Baseline) -> str:
    """Raises CheckFailed with everything the fuzz user changed."""
    problems: list[str] = []
    with Client(address) as client:
        for part in (_topics, _groups, _acls, _users, _quotas):
            part(client, problems)
        _transactions(client, baseline, problems)
    if problems:
        raise CheckFailed("; ".join(problems))
    return "no resource of the fuzz user, targets untouched"


def refused(listeners: Listeners, tls: bool) -> str:
    """The fuzz user logs in (SCRAM-SHA-256) and its Produce to a target topic is refused."""
    listener = "SASL_SSL" if tls else "SASL_PLAINTEXT"
    context = listeners.client_context() if tls else None
    with Conn(listeners.address(listener), 10.0, tls=context) as conn:
        try:
            sasl_client.login(conn, "SCRAM-SHA-256", FUZZ_USER, security.FUZZ_PASSWORD,
                              "positivecontrolnonce")
        except sasl_client.LoginFailed as exc:
            raise CheckFailed(f"the fuzz user cannot log in on {listener}: {exc}") from None
        batch = bytes(batches.valid_batch(random.Random(7), compression=0))
        frame = batches.produce_frame(9, TARGET_TOPICS[0][0], 0, batch, -1, 9)
        exchange = conn.exchange(frame, 15.0)
        if exchange.response is None:
            raise CheckFailed(f"Produce from the fuzz user: {exchange.outcome}, not an answer")
        body: Any = wire.decode_response(0, 9, exchange.response)
        codes = [int(p.error_code) for t in body.responses for p in t.partition_responses]
        if codes != [TOPIC_AUTHORIZATION_FAILED]:
            raise CheckFailed(f"Produce from the fuzz user to {TARGET_TOPICS[0][0]} answered "
                              f"{codes}, not TOPIC_AUTHORIZATION_FAILED")
    return f"logged in on {listener}, Produce refused"


def _names(names: list[str]) -> str:
    return ", ".join(n if len(n) <= 40 else n[:30] + "…" for n in names[:5])
