"""TransformationChain: a connector's `transforms` and `predicates` configs in Kafka's format,
applied in order.

    transforms=a,b
    transforms.a.type=org.apache.kafka.connect.transforms.InsertField$Value
    transforms.a.static.field=origin          (the rest of transforms.a.* configures it)
    transforms.a.predicate=p                  (apply a only where p holds ...)
    transforms.a.negate=true                  (... or, negated, where it does not)
    predicates=p
    predicates.p.type=org.apache.kafka.connect.transforms.predicates.TopicNameMatches
    predicates.p.pattern=orders-.*

A transformation returning None drops the record: the chain stops and returns None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from strom.connect import plugins
from strom.connect.config import ConfigException, ConfigType, parse_type
from strom.connect.transforms.base import R, Transformation
from strom.connect.transforms.predicates import Predicate

_STAGE_KEYS = ("type", "predicate", "negate")


def _aliases(props: Mapping[str, Any], key: str) -> list[str]:
    value = props.get(key)
    if value is None:
        return []
    aliases = [a for a in parse_type(key, value, ConfigType.LIST) if a]
    duplicates = {a for a in aliases if aliases.count(a) > 1}
    if duplicates:
        raise ConfigException(key, value, "Duplicate alias provided.")
    return aliases


def _sub_config(props: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in props.items()
            if k.startswith(prefix) and k[len(prefix):] not in _STAGE_KEYS}


def _instantiate(kind: str, props: Mapping[str, Any], prefix: str) -> Any:
    type_key = prefix + "type"
    class_name = props.get(type_key)
    if class_name is None or class_name == "":
        raise ConfigException(f'Missing required configuration "{type_key}" which has no '
                              "default value.")
    try:
        cls = plugins.lookup(kind, class_name)
    except ConfigException as exc:
        raise ConfigException(type_key, class_name, str(exc)) from exc
    instance = cls()
    try:
        instance.configure(_sub_config(props, prefix))
    except ConfigException as exc:
        raise ConfigException(f"Invalid value for configuration {prefix}*: {exc}") from exc
    return instance


@dataclass
class TransformationStage:
    """One transformation with its (optional) predicate, as Kafka's TransformationStage."""

    alias: str
    transformation: Transformation
    predicate: Predicate | None = None
    negate: bool = False

    def apply(self, record: R) -> R | None:
        if self.predicate is None or (self.predicate.test(record) != self.negate):
            return self.transformation.apply(record)
        return record

    def close(self) -> None:
        self.transformation.close()


class TransformationChain:
    """The transformations of a connector config, with their predicates, in order."""

    def __init__(self, stages: Sequence[TransformationStage] = (),
                 predicates: Mapping[str, Predicate] | None = None) -> None:
        self.stages = list(stages)
        self.predicates = dict(predicates or {})

    @classmethod
    def from_config(cls, props: Mapping[str, Any]) -> TransformationChain:
        predicates: dict[str, Predicate] = {}
        for alias in _aliases(props, "predicates"):
            predicates[alias] = _instantiate("predicate", props, f"predicates.{alias}.")
        stages = []
        for alias in _aliases(props, "transforms"):
            prefix = f"transforms.{alias}."
            transformation = _instantiate("transformation", props, prefix)
            predicate_alias = props.get(prefix + "predicate")
            negate_raw = props.get(prefix + "negate")
            negate = bool(parse_type(prefix + "negate", negate_raw, ConfigType.BOOLEAN)) \
                if negate_raw is not None else False
            predicate = None
            if predicate_alias:
                predicate = predicates.get(str(predicate_alias).strip())
                if predicate is None:
                    raise ConfigException(prefix + "predicate", predicate_alias,
                                          "Predicate is not defined in 'predicates'")
            elif negate_raw is not None:
                raise ConfigException(prefix + "negate", negate_raw,
                                      "negate can only be used with a predicate")
            stages.append(TransformationStage(alias, transformation, predicate, negate))
        return cls(stages, predicates)

    def apply(self, record: R) -> R | None:
        current: R | None = record
        for stage in self.stages:
            assert current is not None
            current = stage.apply(current)
            if current is None:
                return None
        return current

    def close(self) -> None:
        for stage in self.stages:
            stage.close()
        for predicate in self.predicates.values():
            predicate.close()

    def __len__(self) -> int:
        return len(self.stages)


