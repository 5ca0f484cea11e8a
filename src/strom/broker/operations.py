"""Kafka's authorized-operations bit sets, as a broker without an authorizer answers them."""

from __future__ import annotations

from typing import Final

# "Authorized operations were not requested."
OPERATIONS_OMITTED: Final = -(2**31)
# AclOperation codes: READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8,
# CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12,
# CREATE_TOKENS 13, DESCRIBE_TOKENS 14 (AclEntry.supportedOperations per resource type).
CLUSTER_OPERATIONS: Final = sum(1 << op for op in (5, 7, 8, 9, 10, 11, 12, 13, 14))
TOPIC_OPERATIONS: Final = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))
