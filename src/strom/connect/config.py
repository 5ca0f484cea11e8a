"""Kafka's ConfigDef (org.apache.kafka.common.config) for connectors, converters and
transforms: typed definitions, parsing of string properties, validators and the per-config
results of validation (ConfigValue) that the REST API's config validation returns."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from strom.connect.errors import ConfigException

__all__ = [
    "NO_DEFAULT", "CaseInsensitiveValidString", "CompositeValidator", "ConfigDef",
    "ConfigException", "ConfigKey", "ConfigType", "ConfigValue", "Importance", "LambdaValidator",
    "NonEmptyString", "NonEmptyStringWithoutControlChars", "NonNullValidator", "Password", "Range",
    "SimpleConfig", "ValidList", "ValidString", "Validator",
]


class ConfigType(enum.Enum):
    BOOLEAN = "BOOLEAN"
    STRING = "STRING"
    INT = "INT"
    SHORT = "SHORT"
    LONG = "LONG"
    DOUBLE = "DOUBLE"
    LIST = "LIST"
    CLASS = "CLASS"
    PASSWORD = "PASSWORD"


class Importance(enum.Enum):
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


class Width(enum.Enum):
    NONE = "NONE"
    SHORT = "SHORT"
    MEDIUM = "MEDIUM"
    LONG = "LONG"


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()


class Password:
    """A secret config value: printed as [hidden]."""

    HIDDEN = "[hidden]"

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return self.HIDDEN

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Password) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


class Validator(Protocol):
    def ensure_valid(self, name: str, value: Any) -> None: ...


class Range:
    """A numeric range, either end open (Kafka's ConfigDef.Range)."""

    def __init__(self, minimum: float | None, maximum: float | None) -> None:
        self.min = minimum
        self.max = maximum

    @staticmethod
    def at_least(minimum: float) -> Range:
        return Range(minimum, None)

    @staticmethod
    def between(minimum: float, maximum: float) -> Range:
        return Range(minimum, maximum)

    def ensure_valid(self, name: str, value: Any) -> None:
        if value is None:
            raise ConfigException(name, None, "Value must be non-null")
        if self.min is not None and value < self.min:
            raise ConfigException(name, value, f"Value must be at least {self.min}")
        if self.max is not None and value > self.max:
            raise ConfigException(name, value, f"Value must be no more than {self.max}")

    def __str__(self) -> str:
        if self.min is None:
            return f"[...,{self.max}]"
        if self.max is None:
            return f"[{self.min},...]"
        return f"[{self.min},...,{self.max}]"


class ValidString:
    """One of a fixed set of strings (case-sensitive)."""

    def __init__(self, valid: Sequence[str]) -> None:
        self.valid = list(valid)

    @staticmethod
    def in_(*valid: str) -> ValidString:
        return ValidString(valid)

    def ensure_valid(self, name: str, value: Any) -> None:
        if value not in self.valid:
            raise ConfigException(name, value, "String must be one of: " + ", ".join(self.valid))

    def __str__(self) -> str:
        return "[" + ", ".join(self.valid) + "]"


class CaseInsensitiveValidString:
    def __init__(self, valid: Sequence[str]) -> None:
        self.valid = list(valid)
        self._upper = {v.upper() for v in valid}

    @staticmethod
    def in_(*valid: str) -> CaseInsensitiveValidString:
        return CaseInsensitiveValidString(valid)

    def ensure_valid(self, name: str, value: Any) -> None:
        if not isinstance(value, str) or value.upper() not in self._upper:
            raise ConfigException(name, value, "String must be one of (case insensitive): "
                                  + ", ".join(self.valid))

    def __str__(self) -> str:
        return "(case insensitive) [" + ", ".join(self.valid) + "]"


class ValidList:
    """A list whose every item is one of a fixed set."""

    def __init__(self, valid: Sequence[str], allow_empty: bool = True) -> None:
        self.valid = ValidString(valid)
        self.allow_empty = allow_empty

    @staticmethod
    def in_(*valid: str) -> ValidList:
        return ValidList(valid)

    def ensure_valid(self, name: str, value: Any) -> None:
        if not value and not self.allow_empty:
            raise ConfigException(name, value, "Configuration must not be empty")
        for item in value or ():
            self.valid.ensure_valid(name, item)

    def __str__(self) -> str:
        return str(self.valid)


class NonEmptyString:
    def ensure_valid(self, name: str, value: Any) -> None:
        if value is not None and not isinstance(value, str):
            raise ConfigException(name, value, "Value must be a string")
        if value is None or value == "":
            raise ConfigException(name, value, "String must be non-empty")

    def __str__(self) -> str:
        return "non-empty string"


class NonEmptyStringWithoutControlChars:
    def ensure_valid(self, name: str, value: Any) -> None:
        NonEmptyString().ensure_valid(name, value)
        if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
            raise ConfigException(name, value, "String may not contain control sequences")

    def __str__(self) -> str:
        return "non-empty string without ISO control characters"


class NonNullValidator:
    def ensure_valid(self, name: str, value: Any) -> None:
        if value is None:
            raise ConfigException(name, None, "entry must be non null")

    def __str__(self) -> str:
        return "non-null string"


class CompositeValidator:
    def __init__(self, validators: Sequence[Validator]) -> None:
        self.validators = list(validators)

    @staticmethod
    def of(*validators: Validator) -> CompositeValidator:
        return CompositeValidator(validators)

    def ensure_valid(self, name: str, value: Any) -> None:
        for v in self.validators:
            v.ensure_valid(name, value)

    def __str__(self) -> str:
        return ", ".join(str(v) for v in self.validators)


class LambdaValidator:
    def __init__(self, check: Callable[[str, Any], None], description: str = "") -> None:
        self.check = check
        self.description = description

    @staticmethod
    def with_(check: Callable[[str, Any], None], description: str = "") -> LambdaValidator:
        return LambdaValidator(check, description)

    def ensure_valid(self, name: str, value: Any) -> None:
        self.check(name, value)

    def __str__(self) -> str:
        return self.description


@dataclass
class ConfigKey:
    name: str
    type: ConfigType
    default: Any
    validator: Validator | None
    importance: Importance
    doc: str
    group: str | None = None
    order_in_group: int = -1
    width: Width = Width.NONE
    display_name: str | None = None
    dependents: list[str] = field(default_factory=list)
    internal: bool = False

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT


@dataclass
class ConfigValue:
    """One config's outcome of ConfigDef.validate (the REST API's config validation)."""

    name: str
    value: Any = None
    recommended_values: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    visible: bool = True

    def add_error_message(self, message: str) -> None:
        self.errors.append(message)


_INT_BOUNDS = {ConfigType.SHORT: 2**15, ConfigType.INT: 2**31, ConfigType.LONG: 2**63}
_LIST_SPLIT = re.compile(r"\s*,\s*")


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        trimmed = value.strip().lower()
        if trimmed in ("true", "false"):
            return trimmed == "true"
    raise ConfigException(name, value, "Expected value to be either true or false")


def _parse_int(name: str, value: Any, kind: ConfigType) -> int:
    bound = _INT_BOUNDS[kind]
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            raise ConfigException(name, value, f"Not a number of type {kind.value}") from None
    else:
        raise ConfigException(name, value, f"Expected value to be a {_java_type(kind)} number, "
                              f"but it was a {type(value).__name__}")
    if not -bound <= number < bound:
        raise ConfigException(name, value, f"Not a number of type {kind.value}")
    return number


def _java_type(kind: ConfigType) -> str:
    return {ConfigType.SHORT: "16-bit", ConfigType.INT: "32-bit",
            ConfigType.LONG: "64-bit"}.get(kind, "")


def _parse_double(name: str, value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ConfigException(name, value, "Not a number of type DOUBLE") from None
    raise ConfigException(name, value, "Expected value to be a double, but it was a "
                          + type(value).__name__)


def _parse_list(name: str, value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str):
        trimmed = value.strip()
        return [] if not trimmed else _LIST_SPLIT.split(trimmed)
    raise ConfigException(name, value, "Expected a comma separated list.")


def _parse_password(name: str, value: Any) -> Password:
    if isinstance(value, Password):
        return value
    if isinstance(value, str):
        return Password(value)
    raise ConfigException(name, value, "Expected value to be a string, but it was a "
                          + type(value).__name__)


def _parse_class(name: str, value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, type):
        return value
    raise ConfigException(name, value, "Expected a Class instance or class name.")


def _parse_string(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    raise ConfigException(name, value, "Expected value to be a string, but it was a "
                          + type(value).__name__)


_PARSERS: dict[ConfigType, Callable[[str, Any], Any]] = {
    ConfigType.BOOLEAN: _parse_bool,
    ConfigType.SHORT: lambda n, v: _parse_int(n, v, ConfigType.SHORT),
    ConfigType.INT: lambda n, v: _parse_int(n, v, ConfigType.INT),
    ConfigType.LONG: lambda n, v: _parse_int(n, v, ConfigType.LONG),
    ConfigType.DOUBLE: _parse_double,
    ConfigType.LIST: _parse_list,
    ConfigType.PASSWORD: _parse_password,
    ConfigType.CLASS: _parse_class,
    ConfigType.STRING: _parse_string,
}


def parse_type(name: str, value: Any, kind: ConfigType) -> Any:
    """Kafka's ConfigDef.parseType: a property (usually a string) to the config's type."""
    if value is None:
        return None
    return _PARSERS[kind](name, value)


class ConfigDef:
    """Kafka's ConfigDef: `define` configs, then `parse` properties (defaults filled in,
    ConfigException on the first error) or `validate` them (every error, per config)."""

    def __init__(self, base: ConfigDef | None = None) -> None:
        self.config_keys: dict[str, ConfigKey] = dict(base.config_keys) if base else {}

    def define(self, name: str, type: ConfigType, default: Any = NO_DEFAULT,
               importance: Importance = Importance.MEDIUM, doc: str = "", *,
               validator: Validator | None = None, group: str | None = None,
               order_in_group: int = -1, width: Width = Width.NONE,
               display_name: str | None = None, dependents: Iterable[str] = (),
               internal: bool = False) -> ConfigDef:
        if name in self.config_keys:
            raise ConfigException(f"Configuration {name} is defined twice.")
        parsed = NO_DEFAULT if default is NO_DEFAULT else parse_type(name, default, type)
        if validator is not None and parsed is not NO_DEFAULT:
            validator.ensure_valid(name, parsed)
        self.config_keys[name] = ConfigKey(name, type, parsed, validator, importance, doc, group,
                                           order_in_group, width, display_name or name,
                                           list(dependents), internal)
        return self

    def define_internal(self, name: str, type: ConfigType,
                        default: Any = NO_DEFAULT) -> ConfigDef:
        return self.define(name, type, default, Importance.LOW, "", internal=True)

    def names(self) -> set[str]:
        return set(self.config_keys)

    def default_values(self) -> dict[str, Any]:
        return {k: v.default for k, v in self.config_keys.items() if v.has_default}

    def _parse_value(self, key: ConfigKey, props: Mapping[str, Any]) -> Any:
        if key.name in props:
            value = parse_type(key.name, props[key.name], key.type)
        elif not key.has_default:
            raise ConfigException(f'Missing required configuration "{key.name}" which has no '
                                  "default value.")
        else:
            value = key.default
        if key.validator is not None:
            key.validator.ensure_valid(key.name, value)
        return value

    def parse(self, props: Mapping[str, Any]) -> dict[str, Any]:
        """Every defined config's value (ConfigException on the first bad one)."""
        return {name: self._parse_value(key, props) for name, key in self.config_keys.items()}

    def validate(self, props: Mapping[str, Any]) -> list[ConfigValue]:
        """A ConfigValue per defined config, with its errors (none when it is fine)."""
        results = []
        for name, key in self.config_keys.items():
            result = ConfigValue(name, props.get(name, key.default if key.has_default
                                                 else None))
            try:
                result.value = self._parse_value(key, props)
            except ConfigException as exc:
                result.add_error_message(str(exc))
            results.append(result)
        return results

    def validate_all(self, props: Mapping[str, Any]) -> dict[str, ConfigValue]:
        return {v.name: v for v in self.validate(props)}


class SimpleConfig:
    """Kafka's AbstractConfig/SimpleConfig: the parsed values of a ConfigDef over properties,
    with the original properties kept."""

    def __init__(self, definition: ConfigDef, originals: Mapping[str, Any]) -> None:
        self.definition = definition
        self._originals = dict(originals)
        self.values = definition.parse(originals)

    def get(self, name: str) -> Any:
        if name not in self.values:
            raise ConfigException(f"Unknown configuration '{name}'")
        return self.values[name]

    def get_string(self, name: str) -> str | None:
        value = self.get(name)
        return None if value is None else str(value)

    def get_int(self, name: str) -> int:
        return int(self.get(name))

    get_long = get_int
    get_short = get_int

    def get_double(self, name: str) -> float:
        return float(self.get(name))

    def get_boolean(self, name: str) -> bool:
        return bool(self.get(name))

    def get_list(self, name: str) -> list[Any]:
        value = self.get(name)
        return [] if value is None else list(value)

    def get_password(self, name: str) -> Password | None:
        value = self.get(name)
        return value if value is None or isinstance(value, Password) else Password(str(value))

    def originals(self) -> dict[str, Any]:
        return dict(self._originals)

    def originals_with_prefix(self, prefix: str, strip: bool = True) -> dict[str, Any]:
        return {(k[len(prefix):] if strip else k): v for k, v in self._originals.items()
                if k.startswith(prefix)}
