"""At start, before anything is served: internal topics their coordinators could not use.

- Partition directories of `__consumer_offsets` or `__transaction_state` that no topic
  metadata accounts for (the metadata file was lost or damaged, or says fewer partitions):
  the coordinator would create its topic afresh, or ignore those partitions, and so lose
  committed offsets or transaction state. The broker refuses to start and says what to do.
- A partition count other than the setting's: fine, as in Kafka (the coordinator maps ids to
  the actual count); logged, since the setting no longer applies.
- A cleanup.policy other than `compact` (written by an older strom, whose Metadata could
  auto-create `__transaction_state` with the broker's defaults): set back to `compact`, logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from strom.config.broker import BrokerConfig
from strom.config.text import plural
from strom.coordinator.internal_topics import (
    OWNERS,
    PARTITION_SETTINGS,
    REQUIRED_CLEANUP_POLICY,
    config_refusal,
)
from strom.storage.api import StorageEngine

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The broker cannot start; the message says why and what to do."""


async def check_internal_topics(engine: StorageEngine, config: BrokerConfig) -> None:
    """Raises StartupError for an internal topic in a state its coordinator cannot use;
    repairs (and logs) what it can."""
    topics = engine.topics()
    orphans = engine.orphaned_partitions()
    for name, setting in PARTITION_SETTINGS.items():
        stray = orphans.get(name, ())
        if stray:
            raise StartupError(_stray_message(name, stray, config))
        info = topics.get(name)
        if info is None:
            continue
        wanted = config.get_int(setting)
        if info.partitions != wanted:
            log.warning("%s has %s, not %s=%d: ids map to its %s (the setting applies only "
                        "when the topic is created)", name, plural(info.partitions, "partition"),
                        setting, wanted, plural(info.partitions, "partition"))
        default_policy = config.topic_default("cleanup.policy")[0]
        problem = config_refusal(name, info.configs, default_policy)
        if problem is not None:
            log.warning("%s; setting cleanup.policy=%s again", problem, REQUIRED_CLEANUP_POLICY)
            await engine.set_topic_configs(
                name, {**info.configs, "cleanup.policy": REQUIRED_CLEANUP_POLICY})


def _stray_message(name: str, stray: Sequence[int], config: BrokerConfig) -> str:
    listed = ", ".join(map(str, stray[:10])) + (", ..." if len(stray) > 10 else "")
    what = (f"the directory of its partition {listed}" if len(stray) == 1
            else f"the directories of its partitions {listed}")
    return (f"cannot start: {name} has data in {what}, which its topic metadata does not "
            f"account for (the file {config.data_dir}/__topics/{name}.json is missing, "
            f"damaged or lists fewer partitions). Starting would make {OWNERS[name]} lose "
            f"the state kept there. Restore that file from a backup, or move the {name}-N "
            "directories out of the data directory to start without that state.")
