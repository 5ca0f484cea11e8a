"""The liveness oracle: real clients doing real work, every N frames and at the end.

One round, each check with its own deadline:
1. admin calls (confluent-kafka AdminClient): create a topic, describe its configs, grow it to
   3 partitions, delete it;
2. a consumer GROUP (subscribe, not assign) reads what an idempotent producer wrote, commits,
   and a second member sees the committed offset; the group id is new each round, so rounds
   land on different `__consumer_offsets` partitions;
3. a transactional producer: init, begin, produce, send_offsets_to_transaction, commit; a
   read_committed consumer sees the records and the group the offsets (new transactional id
   each round, so different `__transaction_state` partitions);
4. two CreatePartitions for one topic at once, on two connections (8 and 2 partitions): each
   gets a result for the topic (0 or INVALID_PARTITIONS) and the topic ends with 8;
5. the internal topics still have their partition counts (narrows down when damage happened).

With `--security` (a `SecurityOracle`), four more:
6. a SASL_SSL client (user `liveness`, SCRAM-SHA-512, the run's CA trusted) produces to and
   consumes as a group from a new `live-sasl-` topic, and commits;
7. nothing the fuzz user asked for was done (sec_state.check);
8. the fuzz user still logs in, and its Produce is refused (the positive control);
9. the broker released the connections the attacks ended (sec_state.connections_released).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kio.schema.create_partitions.v0.response import CreatePartitionsResponse
from kio.schema.errors import ErrorCode

from bench.fuzz import calls, clients, state_checks, wire
from bench.fuzz.abuse import handshake
from bench.fuzz.clients import CheckFailed, Deadline
from bench.fuzz.findings import Check, pretty_hex, run_check
from bench.fuzz.wire import Client, Conn

if TYPE_CHECKING:
    from bench.fuzz.sec_state import Baseline
    from bench.fuzz.security import Listeners


@dataclass
class SecurityOracle:
    listeners: Listeners
    baseline: Baseline
    in_flight_max: int = 4  # connections the paused security workers may hold


@dataclass
class Round:
    index: int
    at_frames: int
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def create_partitions_race(address: tuple[str, int], topic: str) -> str:
    with Client(address) as client:
        errors = calls.create_topics(client, [topic], 1)
        if errors.get(topic) != ErrorCode.none:
            raise CheckFailed(f"CreateTopics {topic}: {errors}")
    counts = (8, 2)
    frames = [wire.encode_frame(calls.create_partitions_request(topic, count), i + 1)
              for i, count in enumerate(counts)]
    conns = [Conn(address), Conn(address)]
    try:
        for conn in conns:
            handshake(conn)
        for conn, frame in zip(conns, frames, strict=True):
            conn.send(frame)
        answers = [conn.recv_frame(15.0) for conn in conns]
    finally:
        for conn in conns:
            conn.close()
    problems = []
    for count, frame, answer in zip(counts, frames, answers, strict=True):
        body = wire.decode_response(37, 0, answer)
        assert isinstance(body, CreatePartitionsResponse)
        results = {r.name: r.error_code for r in body.results}
        if results.get(topic) not in (ErrorCode.none, ErrorCode.invalid_partitions):
            problems.append(f"count {count} answered {results or 'no result'}: "
                            f"{pretty_hex(frame)}")
    with Client(address) as client:
        shown = calls.metadata(client, [topic]).get(topic)
        partitions = None if shown is None else len(shown.partitions)
    if partitions != 8:
        problems.append(f"{topic} ends with {partitions} partitions, not 8")
    if problems:
        raise CheckFailed("; ".join(problems))
    return "both answered, 8 partitions"


def liveness_round(address: tuple[str, int], index: int, at_frames: int, tag: str,
                   deadline_s: float, expected: dict[str, int],
                   security: SecurityOracle | None = None) -> Round:
    bootstrap = f"{address[0]}:{address[1]}"
    name = f"live-{tag}-{index}"
    result = Round(index, at_frames)

    def admin() -> None:
        clients.admin_round_trip(bootstrap, f"{name}-admin", Deadline(deadline_s))

    def group() -> None:
        deadline = Deadline(deadline_s)
        clients.create_topic(clients.admin(bootstrap), name, 1, deadline)
        clients.group_round_trip(bootstrap, name, f"{name}-g", deadline,
                                 enable_idempotence=True)

    def transaction() -> None:
        deadline = Deadline(deadline_s)
        for topic in (f"{name}-src", f"{name}-t"):
            clients.create_topic(clients.admin(bootstrap), topic, 1, deadline)
        clients.txn_round_trip(bootstrap, f"{name}-t", f"{name}-src", f"{name}-tg",
                               f"{name}-tx", deadline)

    def internal() -> str:
        with Client(address) as client:
            return state_checks.internal_topics(client, expected)

    result.checks.append(run_check("admin calls", admin))
    result.checks.append(run_check("consumer group", group))
    result.checks.append(run_check("transactional producer", transaction))
    result.checks.append(run_check("concurrent CreatePartitions",
                                   lambda: create_partitions_race(address, f"{name}-cp")))
    result.checks.append(run_check("internal topics intact", internal))
    if security is not None:
        result.checks += security_checks(bootstrap, security, tag, index, deadline_s)
    return result


def security_checks(bootstrap: str, security: SecurityOracle, tag: str, index: int,
                    deadline_s: float) -> list[Check]:
    from bench.fuzz import sec_state
    from bench.fuzz.security import LIVE_PREFIX

    listeners = security.listeners
    address = listeners.address("PLAINTEXT")

    def sasl_ssl() -> str:
        deadline = Deadline(deadline_s)
        topic = f"{LIVE_PREFIX}{tag}-{index}"
        clients.create_topic(clients.admin(bootstrap), topic, 1, deadline)
        clients.group_round_trip(listeners.bootstrap("SASL_SSL"), topic, f"{topic}-g",
                                 deadline, listeners.client_conf())
        return f"produced and consumed {topic} over SASL_SSL"

    return [run_check("SASL_SSL client (liveness, SCRAM-SHA-512)", sasl_ssl),
            run_check("nothing done for the fuzz user",
                      lambda: sec_state.check(address, security.baseline)),
            run_check("the fuzz user's Produce refused",
                      lambda: sec_state.refused(listeners, tls=index % 2 == 1)),
            run_check("connections released after attacks", lambda: sec_state.
                      connections_released(address, security.in_flight_max))]
