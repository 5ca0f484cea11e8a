"""The `local` storage engine: Kafka-style segmented log files in a data directory.

See docs/storage.md for the on-disk format and the recovery rules.
"""

from strom.storage.local.engine import LocalEngine
from strom.storage.local.files import read_region
from strom.storage.local.partition_log import LocalPartitionLog

__all__ = ["LocalEngine", "LocalPartitionLog", "read_region"]
