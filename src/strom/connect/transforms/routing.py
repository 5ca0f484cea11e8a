"""RegexRouter and Filter, as Kafka's."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from strom.connect.config import ConfigDef, ConfigException, ConfigType, Importance
from strom.connect.transforms.base import R, Transform, java_replacement


class RegexRouter(Transform):
    """Rename the topic when `regex` matches all of it, with `replacement` ($1 groups)."""

    CONFIG_DEF = (
        ConfigDef()
        .define("regex", ConfigType.STRING, importance=Importance.HIGH,
                doc="Regular expression to use for matching.")
        .define("replacement", ConfigType.STRING, importance=Importance.HIGH,
                doc="Replacement string."))

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        pattern: str = self.config.get("regex")
        try:
            self.regex = re.compile(pattern)
        except re.error as exc:
            raise ConfigException("regex", pattern, f"Invalid regex: {exc}") from exc
        replacement: str = self.config.get("replacement")
        try:
            self.template = java_replacement(replacement)
        except ValueError as exc:
            raise ConfigException("replacement", replacement, str(exc)) from exc

    def apply(self, record: R) -> R | None:
        match = self.regex.fullmatch(record.topic)
        if match is None:
            return record
        topic = match.expand(self.template)
        return record.new_record(topic, record.kafka_partition, record.key_schema, record.key,
                                 record.value_schema, record.value, record.timestamp)


class Filter(Transform):
    """Drop every record; with a predicate (and `negate`), those it selects."""

    def apply(self, record: R) -> R | None:
        return None
