"""Predicates for conditional transforms (KIP-585): TopicNameMatches, HasHeaderKey,
RecordIsTombstone. `negate` is the chain's business (TransformationChain)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from strom.connect.config import (
    ConfigDef,
    ConfigException,
    ConfigType,
    Importance,
    NonEmptyString,
    SimpleConfig,
)
from strom.connect.records import ConnectRecord


@runtime_checkable
class Predicate(Protocol):
    def configure(self, configs: Mapping[str, Any]) -> None: ...

    def test(self, record: ConnectRecord) -> bool: ...

    def config_def(self) -> ConfigDef: ...

    def close(self) -> None: ...


class _PredicateBase:
    CONFIG_DEF = ConfigDef()

    def config_def(self) -> ConfigDef:
        return self.CONFIG_DEF

    def configure(self, configs: Mapping[str, Any]) -> None:
        self.config = SimpleConfig(self.CONFIG_DEF, configs)

    def close(self) -> None:
        return None


class _RegexValidator:
    def ensure_valid(self, name: str, value: Any) -> None:
        NonEmptyString().ensure_valid(name, value)
        try:
            re.compile(value)
        except re.error as exc:
            raise ConfigException(name, value, f"Invalid regex: {exc}") from exc


class TopicNameMatches(_PredicateBase):
    """True for records whose topic matches all of `pattern`."""

    CONFIG_DEF = ConfigDef().define(
        "pattern", ConfigType.STRING, importance=Importance.MEDIUM,
        doc="A Java regular expression for matching against the name of a record's topic.",
        validator=_RegexValidator())

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        self.pattern = re.compile(self.config.get("pattern"))

    def test(self, record: ConnectRecord) -> bool:
        return record.topic is not None and self.pattern.fullmatch(record.topic) is not None


class HasHeaderKey(_PredicateBase):
    """True for records with at least one header called `name`."""

    CONFIG_DEF = ConfigDef().define(
        "name", ConfigType.STRING, importance=Importance.MEDIUM,
        doc="The header name.", validator=NonEmptyString())

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        self.name: str = self.config.get("name")

    def test(self, record: ConnectRecord) -> bool:
        return bool(record.headers.all_with_name(self.name))


class RecordIsTombstone(_PredicateBase):
    """True for records whose value is null."""

    def test(self, record: ConnectRecord) -> bool:
        return record.value is None
