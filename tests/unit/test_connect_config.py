"""strom.connect.config: Kafka's ConfigDef parsing, validators and their messages."""

from __future__ import annotations

from typing import Any

import pytest

from strom.connect import plugins
from strom.connect.config import (
    CaseInsensitiveValidString,
    CompositeValidator,
    ConfigDef,
    ConfigException,
    ConfigType,
    Importance,
    NonEmptyString,
    NonEmptyStringWithoutControlChars,
    Password,
    Range,
    SimpleConfig,
    ValidList,
    ValidString,
)


def definition() -> ConfigDef:
    return (ConfigDef()
            .define("name", ConfigType.STRING, importance=Importance.HIGH, doc="n",
                    validator=NonEmptyString())
            .define("tasks.max", ConfigType.INT, 1, Importance.HIGH, "t",
                    validator=Range.at_least(1))
            .define("ratio", ConfigType.DOUBLE, 0.5, Importance.LOW, "r",
                    validator=Range.between(0, 1))
            .define("enabled", ConfigType.BOOLEAN, False)
            .define("topics", ConfigType.LIST, "")
            .define("mode", ConfigType.STRING, "bulk", validator=ValidString.in_("bulk",
                                                                                "incrementing"))
            .define("secret", ConfigType.PASSWORD, None)
            .define("big", ConfigType.LONG, 0)
            .define("cls", ConfigType.CLASS, None))


def test_parse_types_and_defaults() -> None:
    parsed = definition().parse({"name": " c ", "tasks.max": "3", "ratio": "0.25",
                                 "enabled": "TRUE", "topics": " a , b,c ", "secret": "pw",
                                 "big": str(2**40), "cls": " x.Y "})
    assert parsed == {"name": "c", "tasks.max": 3, "ratio": 0.25, "enabled": True,
                      "topics": ["a", "b", "c"], "mode": "bulk", "secret": Password("pw"),
                      "big": 2**40, "cls": "x.Y"}
    assert str(parsed["secret"]) == "[hidden]"
    assert definition().parse({"name": "c"})["topics"] == []


@pytest.mark.parametrize(("props", "message"), [
    ({}, 'Missing required configuration "name" which has no default value.'),
    ({"name": ""}, "Invalid value  for configuration name: String must be non-empty"),
    ({"name": "c", "tasks.max": "0"},
     "Invalid value 0 for configuration tasks.max: Value must be at least 1"),
    ({"name": "c", "tasks.max": "x"},
     "Invalid value x for configuration tasks.max: Not a number of type INT"),
    ({"name": "c", "tasks.max": str(2**31)}, "Not a number of type INT"),
    ({"name": "c", "ratio": "2"}, "Value must be no more than 1"),
    ({"name": "c", "enabled": "yes"}, "Expected value to be either true or false"),
    ({"name": "c", "mode": "x"}, "String must be one of: bulk, incrementing"),
])
def test_parse_errors(props: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigException) as info:
        definition().parse(props)
    assert message in str(info.value)


def test_validate_reports_every_error() -> None:
    results = definition().validate_all({"tasks.max": "0", "mode": "x"})
    assert results["name"].errors == [
        'Missing required configuration "name" which has no default value.']
    assert results["tasks.max"].errors and results["mode"].errors
    assert results["ratio"].errors == [] and results["ratio"].value == 0.5
    assert len(definition().validate({})) == len(definition().names())


@pytest.mark.parametrize(("validator", "value", "ok"), [
    (CaseInsensitiveValidString.in_("A", "b"), "a", True),
    (CaseInsensitiveValidString.in_("A", "b"), "c", False),
    (ValidList.in_("x", "y"), ["x", "y"], True),
    (ValidList.in_("x", "y"), ["z"], False),
    (NonEmptyStringWithoutControlChars(), "ok", True),
    (NonEmptyStringWithoutControlChars(), "a\nb", False),
    (CompositeValidator.of(NonEmptyString(), ValidString.in_("a")), "a", True),
    (CompositeValidator.of(NonEmptyString(), ValidString.in_("a")), "", False),
])
def test_validators(validator: Any, value: Any, ok: bool) -> None:
    if ok:
        validator.ensure_valid("k", value)
    else:
        with pytest.raises(ConfigException):
            validator.ensure_valid("k", value)


def test_kafkas_nested_names() -> None:
    d = ConfigDef().define("a", ConfigDef.Type.INT, ConfigDef.NO_DEFAULT_VALUE,
                           ConfigDef.Importance.HIGH, "doc")
    assert d.parse({"a": "5"}) == {"a": 5}
    with pytest.raises(ConfigException, match="Missing required configuration"):
        d.parse({})


def test_define_twice_and_simple_config() -> None:
    with pytest.raises(ConfigException, match="defined twice"):
        ConfigDef().define("a", ConfigType.INT, 1).define("a", ConfigType.INT, 1)
    config = SimpleConfig(definition(), {"name": "c", "transforms.a.x": "1"})
    assert config.get_int("tasks.max") == 1 and config.get_list("topics") == []
    assert config.originals_with_prefix("transforms.a.") == {"x": "1"}
    with pytest.raises(ConfigException, match="Unknown configuration"):
        config.get("nope")


def test_plugin_names_list_kafkas_classes() -> None:
    names = plugins.full_names("transformation")
    assert "org.apache.kafka.connect.transforms.InsertField$Value" in names
    assert "org.apache.kafka.connect.transforms.ValueToKey" in names
    assert plugins.full_names("predicate") == sorted(
        "org.apache.kafka.connect.transforms.predicates." + n
        for n in ("HasHeaderKey", "RecordIsTombstone", "TopicNameMatches"))
