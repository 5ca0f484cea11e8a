"""The --security mode's own parts judge correctly: the fuzzer's SCRAM client logs in against
strom's SCRAM server and each of its lies is refused by it; a changed client-final that still
says the same is told from one that does not; PLAIN tokens are judged as a server must; the
authorization oracle flags an answer that did something for the unauthorized client and not
one that refused it; the fuzz user's dictionary names carry its prefix; OpenSSL makes
ClientHellos into memory; an exception Python printed to the broker's log gets a traceback
signature of its own."""

from __future__ import annotations

import random
import time
from datetime import timedelta
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12.response import FetchableTopicResponse, FetchResponse, PartitionData
from kio.schema.join_group.v9.response import JoinGroupResponse
from kio.schema.list_groups.v4.response import ListedGroup, ListGroupsResponse
from kio.schema.produce.v9.response import (
    PartitionProduceResponse,
    ProduceResponse,
    TopicProduceResponse,
)

from bench.fuzz import authz_check, sasl_client, security, tls_attacks
from bench.fuzz.logscan import FrameHistory, LogWatch
from strom.protocol.messages import encode_response
from strom.security.principal import AuthenticationFailed
from strom.security.scram import ScramExchange, credential_from_password

PASSWORD = "pw-1"


def exchange(mechanism: str, client: sasl_client.ScramClient, first: bytes | None = None,
             **final: object) -> bytes:
    """Runs one exchange against strom's server side; its server-final message."""
    server = ScramExchange(mechanism, b"secret")
    server.client_first(first or client.first())
    server_first = sasl_client.parse_server_first(server.server_first(
        credential_from_password(mechanism, PASSWORD)))
    assert server_first is not None
    return server.client_final(client.final(server_first, **final))  # type: ignore[arg-type]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_the_scram_client_logs_in_and_checks_the_server(mechanism: str) -> None:
    client = sasl_client.ScramClient(mechanism, "u", PASSWORD, "abc")
    assert client.server_final_ok(exchange(mechanism, client))
    assert not client.server_final_ok(b"v=AAAA")


@pytest.mark.parametrize("lie", [{"combined_nonce": "abc"}, {"binding_gs2": "y,,"},
                                 {"password": "wrong"}, {"bare": "n=other,r=abc"}])
def test_each_lie_of_the_scram_client_is_refused(lie: dict[str, str]) -> None:
    client = sasl_client.ScramClient("SCRAM-SHA-256", "u", PASSWORD, "abc")
    with pytest.raises(AuthenticationFailed):
        exchange("SCRAM-SHA-256", client, **lie)


def test_a_changed_client_final_that_says_the_same_is_told_apart() -> None:
    proof = sasl_client.b64(bytes(32))
    final = f"c=biws,r=abc,p={proof}".encode()
    assert sasl_client.same_final(final, final) == "same"
    assert sasl_client.same_final(f"c=biws,r=abd,p={proof}".encode(), final) is None
    assert sasl_client.same_final(b"c=biws,r=abc,p=AAAA", final) is None
    assert sasl_client.same_final(f"c=biws,r=abc,p={proof}!".encode(), final) == "lenient"
    assert sasl_client.same_final(f"c=biws,r=abc,p={proof.rstrip('=')}".encode(),
                                  final) == "lenient"


def test_plain_tokens() -> None:
    passwords = {"u": "p"}
    assert sasl_client.plain_is_valid(b"\x00u\x00p", passwords)
    assert sasl_client.plain_is_valid(b"u\x00u\x00p", passwords)
    for token in (b"v\x00u\x00p", b"\x00u\x00q", b"\x00u\x00p\x00", b"u\x00p", b"\x00U\x00p",
                  b"\x00u\x00\xff"):
        assert not sasl_client.plain_is_valid(token, passwords), token


def produce_answer(code: ErrorCode) -> bytes:
    body = ProduceResponse(responses=(TopicProduceResponse(name="t", partition_responses=(
        PartitionProduceResponse(index=0, error_code=code, base_offset=-1,
                                 log_start_offset=-1, record_errors=(), error_message=None),
    )),), throttle_time=timedelta(0))
    return encode_response(0, 9, 1, body)[4:]


def test_the_authorization_oracle_flags_what_was_done() -> None:
    assert authz_check.violations(0, 9, produce_answer(ErrorCode.none))
    assert authz_check.violations(0, 9, produce_answer(
        ErrorCode.topic_authorization_failed)) == []
    assert authz_check.violations(0, 9, b"\x00\x00\x00\x01garbage") is None
    join = JoinGroupResponse(throttle_time=timedelta(0), error_code=ErrorCode.none,
                             generation_id=1, protocol_type="consumer", protocol_name="range",
                             leader="m", skip_assignment=False, member_id="m", members=())
    assert authz_check.violations(11, 9, encode_response(11, 9, 1, join)[4:])
    refused = JoinGroupResponse(throttle_time=timedelta(0),
                                error_code=ErrorCode.group_authorization_failed,
                                generation_id=-1, protocol_type=None, protocol_name=None,
                                leader="", skip_assignment=False, member_id="", members=())
    assert authz_check.violations(11, 9, encode_response(11, 9, 1, refused)[4:]) == []


def test_listings_and_records_count_and_empty_answers_do_not() -> None:
    listed = ListGroupsResponse(throttle_time=timedelta(0), error_code=ErrorCode.none,
                                groups=(ListedGroup(group_id="g", protocol_type="consumer",
                                                    group_state="Empty"),))
    assert authz_check.violations(16, 4, encode_response(16, 4, 1, listed)[4:])
    empty = ListGroupsResponse(throttle_time=timedelta(0), error_code=ErrorCode.none,
                               groups=())
    assert authz_check.violations(16, 4, encode_response(16, 4, 1, empty)[4:]) == []

    def fetch(records: bytes | None, code: ErrorCode,
              partitions: bool = True) -> bytes:
        topic = FetchableTopicResponse(topic="t", partitions=(PartitionData(
            partition_index=0, error_code=code, high_watermark=0, last_stable_offset=0,
            log_start_offset=0, aborted_transactions=(), preferred_read_replica=-1,
            records=records),) if partitions else ())
        body = FetchResponse(throttle_time=timedelta(0), error_code=ErrorCode.none,
                             session_id=0, responses=(topic,))
        return encode_response(1, 12, 1, body)[4:]

    assert authz_check.violations(1, 12, fetch(None, ErrorCode.topic_authorization_failed)) \
        == []
    found = authz_check.violations(1, 12, fetch(b"x" * 61,
                                                 ErrorCode.topic_authorization_failed))
    assert found and "records" in found[0]
    assert authz_check.violations(1, 12, fetch(None, ErrorCode.none))
    assert authz_check.violations(1, 12, fetch(None, ErrorCode.none, partitions=False)) == []


def test_the_fuzz_users_names_carry_its_prefix() -> None:
    dictionary = security.fuzz_user_dictionary(random.Random(1), ["rec-g-1"])
    rng = random.Random(2)
    names = {dictionary.name(rng) for _ in range(2000)}
    internal = {"__consumer_offsets", "__transaction_state", "__cluster_metadata",
                "__share_group_state"}
    targets = {name for name, _ in security.TARGET_TOPICS} | {
        security.TARGET_GROUP, security.TARGET_TXN, security.FUZZ_USER,
        security.LIVENESS_USER}
    assert all(n.startswith(security.PREFIX) or n in internal | targets for n in names)
    assert "fzu-g-1" in names
    assert security.rewrite_recorded(b"\x00\x08rec-g-12") == b"\x00\x08fzu-g-12"


def test_client_hellos_and_records() -> None:
    hello = tls_attacks.client_hello(random.Random(1))
    assert tls_attacks.record_types(hello) == [tls_attacks.HANDSHAKE]
    assert hello != tls_attacks.client_hello(random.Random(1))  # OpenSSL's own randomness
    name, junk = tls_attacks.junk_records(random.Random(3))
    assert name and junk


def test_an_exception_python_printed_is_its_own_traceback(tmp_path: Path) -> None:
    """"Exception ignored in: ..." (an SNI callback that failed) is not the record before it,
    and one signature whatever the object's repr."""
    log = tmp_path / "broker.log"
    log.write_text("")
    watch = LogWatch(log, FrameHistory())
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()) + ",123"
    with log.open("a") as out:
        for name in ("loc\\xe5lhost", "loca\\xd8host"):
            out.write(f"{stamp} WARNING strom.server.connection: closing connection from "
                      f"127.0.0.2:4100: unexpected Metadata request\n"
                      f"Exception ignored in: b'{name}'\nTraceback (most recent call last):\n"
                      '  File "/x/ssl.py", line 979, in do_handshake\n'
                      "UnicodeDecodeError: 'ascii' codec can't decode byte 0xe5\n")
    watch.stop()
    assert watch.counts.tracebacks == 2 and watch.counts.warnings == 2
    [signature] = watch.counts.signatures.values()
    assert signature.key.startswith("Exception ignored in (printed by Python")
    assert "closing connection" not in signature.key
