"""The oracle on answers to a client that is authenticated but authorized for nothing (the
fuzz user: no ACL, not a super user): nothing it asks may be done, and no data may come back.

Kafka refuses such a client per resource (TOPIC_, GROUP_, TRANSACTIONAL_ID_ or
CLUSTER_AUTHORIZATION_FAILED in each result), or for the whole request where the request is
about one resource. The answer is walked as kio decoded it:

* every per-resource result (an entity with an error code and no results below it) must carry
  a non-zero error code, itself or in an entity above it: a Produce partition, a CreateTopics
  topic, a Metadata topic (Metadata lists only topics the client may describe) answering 0 was
  done for the client;
* a request about one resource (JoinGroup, InitProducerId, DescribeAcls, ...) whose answer has
  no per-resource result must answer a non-zero top-level error code;
* ListGroups and ListTransactions list nothing (they list what the client may describe);
* no answer carries records.

ApiVersions, the SASL APIs and DescribeCluster are open to every client, as in Kafka.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from bench.fuzz import wire
from strom.protocol.safe_decoder import DecodeError

OPEN: Final = frozenset({17, 18, 36, 60})
LISTING: Final = {16: "groups", 66: "transaction_states"}
# Requests about one resource (or the cluster): the top-level error code is their result.
ONE_RESOURCE: Final = frozenset({9, 10, 11, 12, 13, 14, 22, 25, 26, 29, 35, 43, 45, 46, 47,
                                 48, 50, 55, 68, 74})
NAMES: Final = {0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit",
                9: "OffsetFetch", 10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat",
                13: "LeaveGroup", 14: "SyncGroup", 15: "DescribeGroups", 16: "ListGroups",
                19: "CreateTopics", 20: "DeleteTopics", 21: "DeleteRecords",
                22: "InitProducerId", 23: "OffsetForLeaderEpoch", 24: "AddPartitionsToTxn",
                25: "AddOffsetsToTxn", 26: "EndTxn", 28: "TxnOffsetCommit", 29: "DescribeAcls",
                30: "CreateAcls", 31: "DeleteAcls", 32: "DescribeConfigs", 33: "AlterConfigs",
                34: "AlterReplicaLogDirs", 35: "DescribeLogDirs", 37: "CreatePartitions",
                42: "DeleteGroups", 43: "ElectLeaders", 44: "IncrementalAlterConfigs",
                45: "AlterPartitionReassignments", 46: "ListPartitionReassignments",
                47: "OffsetDelete", 48: "DescribeClientQuotas", 49: "AlterClientQuotas",
                50: "DescribeUserScramCredentials", 51: "AlterUserScramCredentials",
                55: "DescribeQuorum", 61: "DescribeProducers", 65: "DescribeTransactions",
                66: "ListTransactions", 68: "ConsumerGroupHeartbeat",
                69: "ConsumerGroupDescribe", 74: "ListConfigResources",
                75: "DescribeTopicPartitions"}
SHOWN_MAX: Final = 3


def api_name(api_key: int) -> str:
    return NAMES.get(api_key, f"API key {api_key}")


def _error_codes(entity: Any) -> list[int]:
    return [int(getattr(entity, f.name)) for f in dataclasses.fields(entity)
            if f.metadata.get("kafka_type") == "error_code"]


def _children(entity: Any) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for f in dataclasses.fields(entity):
        value = getattr(entity, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            found.append((f.name, value))
        elif isinstance(value, tuple):
            found += [(f"{f.name}[{i}]", item) for i, item in enumerate(value)
                      if dataclasses.is_dataclass(item) and not isinstance(item, type)]
    return found


def _results_below(entity: Any) -> bool:
    return any(_error_codes(child) or _results_below(child) for _, child in _children(entity))


def _describe(entity: Any) -> str:
    """A short name of a result: its name-like fields."""
    shown = []
    for f in dataclasses.fields(entity):
        if f.name in ("name", "topic", "group_id", "transactional_id", "partition_index",
                      "resource_name", "user", "topic_id", "member_id", "index"):
            shown.append(f"{f.name}={str(getattr(entity, f.name))[:40]}")
    return f" ({', '.join(shown)})" if shown else ""


def _walk(entity: Any, path: str, refused_above: bool, root: bool, api_key: int,
          out: list[str]) -> None:
    errors = _error_codes(entity)
    refused = refused_above or any(code != 0 for code in errors)
    if errors and not _results_below(entity):
        if not refused and (not root or api_key in ONE_RESOURCE):
            out.append(f"{path}{_describe(entity)} answered error code 0")
        return
    for name, child in _children(entity):
        _walk(child, f"{path}.{name}", refused, False, api_key, out)


def _records(entity: Any, path: str, out: list[str]) -> None:
    for f in dataclasses.fields(entity):
        value = getattr(entity, f.name)
        if f.metadata.get("kafka_type") == "records" and value:
            out.append(f"{path}.{f.name}: {len(value)} bytes of records")
    for name, child in _children(entity):
        _records(child, f"{path}.{name}", out)


def violations(api_key: int, version: int, response: bytes) -> list[str] | None:
    """What the answer did for the unauthorized client (empty: nothing); None if the answer
    does not decode as the request's version."""
    if api_key in OPEN:
        return []
    try:
        body = wire.decode_response(api_key, version, response)
    except (DecodeError, ValueError, KeyError, TypeError, IndexError, LookupError):
        return None
    except Exception:  # kio's own (no schema for the version, ...): does not decode either
        return None
    out: list[str] = []
    name = type(body).__name__
    if api_key in LISTING:
        listed = getattr(body, LISTING[api_key], ())
        if listed:
            out.append(f"{name} lists {len(listed)}: " + ", ".join(
                str(getattr(e, "group_id", None) or getattr(e, "transactional_id", "?"))[:40]
                for e in listed[:SHOWN_MAX]))
    else:
        _walk(body, name, False, True, api_key, out)
    _records(body, name, out)
    return out
