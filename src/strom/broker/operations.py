"""Kafka's authorized-operations bit sets, as a broker without an authorizer answers them."""

from __future__ import annotations

from typing import Final

from strom.security.acl import SUPPORTED_OPERATIONS, ResourceType

# "Authorized operations were not requested."
OPERATIONS_OMITTED: Final = -(2**31)
# Every operation Kafka's AclEntry.supportedOperations lists for the resource type, as bits
# (1 << AclOperation code): what authorizedOperations answers without an authorizer.
CLUSTER_OPERATIONS: Final = sum(1 << op for op in SUPPORTED_OPERATIONS[ResourceType.CLUSTER])
TOPIC_OPERATIONS: Final = sum(1 << op for op in SUPPORTED_OPERATIONS[ResourceType.TOPIC])
