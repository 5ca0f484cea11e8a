"""Kafka's `ssl.principal.mapping.rules`: from a certificate's distinguished name to a principal.

The setting is a comma-separated list of rules, applied in order to the client certificate's
subject in RFC 2253 form (``CN=alice,OU=ServiceUsers,O=Example``); the first rule that matches
names the principal:

- ``DEFAULT`` matches every name and keeps it as it is;
- ``RULE:pattern/replacement/`` matches when the regular expression matches the *whole* name
  and gives the name with the pattern replaced (``$1`` is the first group); ``/L`` or ``/U``
  after the last slash lowercase or uppercase the result. A ``/`` inside the pattern or the
  replacement is written ``\\/``.

Patterns may contain commas: the list is split the way Kafka's ``SslPrincipalMapper`` splits it
(a rule runs up to the first comma after its closing ``/[LU]``), so
``RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,DEFAULT`` is two rules.

Differences from Kafka, all at parse time where Kafka fails later or never:

- patterns are Python regular expressions (Java's ``(?<name>...)`` groups are accepted and
  ``${name}`` refers to them; ``\\p{...}`` classes, ``\\Q...\\E`` and other Java-only syntax
  are not) and a pattern that does not compile is a config error;
- a replacement with a malformed ``$`` reference, or one naming a group of a pattern without
  groups, is a config error (Java would throw on the first name the rule matches);
- an empty rule list is a config error (Kafka would refuse every client certificate).

As in Kafka, ``$N`` naming a group the pattern does not have is kept literally (``$1@$4`` with
three groups gives ``alice@$4``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from strom.config.topic import ConfigError

SETTING: Final = "ssl.principal.mapping.rules"

# One rule of the list: DEFAULT, or RULE:pattern/replacement/ and an optional L or U (where
# `\x` is any escaped character and a bare `/` ends the part), or anything up to the separator
# (which the parser then rejects). The lazy tails let a rule run up to the next comma, the way
# Kafka's splitter reads them, so a malformed rule is reported whole.
_PART: Final = r"(?:\\.|[^\\/])*"
_ONE_RULE: Final = rf"DEFAULT|RULE:{_PART}/{_PART}/[LU]?.*?|.*?"
_SPLITTER: Final = re.compile(rf"\s*({_ONE_RULE})\s*(?:,\s*|$)")
_PARSER: Final = re.compile(
    rf"(?P<default>DEFAULT)"
    rf"|RULE:(?P<pattern>{_PART})/(?P<replacement>{_PART})/(?P<case>[LU]?)"
)
_JAVA_NAMED_GROUP: Final = re.compile(r"(?<!\\)\(\?<(?=[A-Za-z])")
_DIGITS: Final = "0123456789"


class NoMatchingRule(LookupError):
    """No rule of the list matches a certificate's name: the client cannot be named."""


@dataclass(frozen=True, slots=True)
class _Group:
    """A `$N` reference of a replacement."""

    index: int


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: DEFAULT (pattern None) or RULE:pattern/replacement/[LU]."""

    pattern: re.Pattern[str] | None
    pattern_text: str = ""
    replacement_text: str = ""
    parts: tuple[str | _Group, ...] = ()
    case: str = ""

    @property
    def is_default(self) -> bool:
        return self.pattern is None

    def apply(self, name: str) -> str | None:
        """The principal this rule gives `name`, or None when the rule does not match it."""
        if self.pattern is None:
            return name
        if self.pattern.fullmatch(name) is None:
            return None
        result = self.pattern.sub(self._expand, name)
        if self.case == "L":
            return result.lower()
        if self.case == "U":
            return result.upper()
        return result

    def _expand(self, match: re.Match[str]) -> str:
        return "".join(
            part if isinstance(part, str) else match.group(part.index) or ""
            for part in self.parts
        )

    def __str__(self) -> str:
        """Kafka's spelling of the rule (its SslPrincipalMapper.Rule.toString)."""
        if self.pattern is None:
            return "DEFAULT"
        case = f"/{self.case}" if self.case else ""
        return f"RULE:{self.pattern_text}/{self.replacement_text}{case}"


class PrincipalMapper:
    """The parsed rule list of `ssl.principal.mapping.rules`."""

    __slots__ = ("rules",)

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)

    @classmethod
    def parse(cls, text: str | None = "DEFAULT") -> PrincipalMapper:
        """The rules of the setting's value (None: the default, DEFAULT); ConfigError if one is
        malformed or there are none."""
        if text is None:
            text = "DEFAULT"
        rules = [rule for rule in (_parse_rule(item) for item in split_rules(text)) if rule]
        if not rules:
            raise ConfigError(f"{SETTING} {text!r} holds no rule, so no client certificate "
                              "could be named: use DEFAULT to keep the certificate's name")
        return cls(rules)

    def name(self, distinguished_name: str) -> str:
        """The principal name of a certificate subject; NoMatchingRule if no rule applies."""
        for rule in self.rules:
            principal = rule.apply(distinguished_name)
            if principal is not None:
                return principal
        listed = ", ".join(str(rule) for rule in self.rules)
        raise NoMatchingRule(f"No rules apply to {distinguished_name}, rules [{listed}]")

    def __repr__(self) -> str:
        return f"PrincipalMapper(rules = [{', '.join(str(rule) for rule in self.rules)}])"


def split_rules(text: str) -> list[str]:
    """The rule texts of the setting, as Kafka splits them (empty ones included)."""
    return [match.group(1) for match in _SPLITTER.finditer(text.strip())]


def _parse_rule(text: str) -> Rule | None:
    """One rule's text as a Rule; None for an empty one (Kafka ignores those)."""
    if not text:
        return None
    match = _PARSER.match(text)
    if match is None or match.end() != len(text):
        left = text if match is None else text[match.end():]
        raise ConfigError(f"{SETTING}: invalid rule {text!r} ({left!r} is not understood): "
                          "a rule is DEFAULT or RULE:pattern/replacement/ with an optional "
                          "L or U after the last slash")
    if match.group("default") is not None:
        return Rule(None)
    pattern_text = match.group("pattern")
    replacement_text = match.group("replacement")
    pattern = _compile(pattern_text, text)
    parts = _replacement_parts(replacement_text, pattern, text)
    return Rule(pattern, pattern_text, replacement_text, parts, match.group("case"))


def _compile(pattern_text: str, rule: str) -> re.Pattern[str]:
    try:
        return re.compile(_JAVA_NAMED_GROUP.sub("(?P<", pattern_text))
    except re.error as exc:
        raise ConfigError(f"{SETTING}: the pattern of rule {rule!r} is not a valid regular "
                          f"expression: {exc}") from None


def _replacement_parts(text: str, pattern: re.Pattern[str],
                       rule: str) -> tuple[str | _Group, ...]:
    """A Java replacement string (`$N`, `${name}`, `\\x` escapes) as literals and groups."""
    parts: list[str | _Group] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 == len(text):
                raise _bad_replacement(text, rule, "ends with a lone backslash "
                                       "(write \\\\ for a backslash)")
            literal.append(text[i + 1])
            i += 2
            continue
        if char != "$":
            literal.append(char)
            i += 1
            continue
        group, i = _reference(text, i + 1, pattern, rule)
        if group is None:  # a `$N` past the pattern's groups stays literal, as in Kafka
            literal.append("$")
            continue
        if literal:
            parts.append("".join(literal))
            literal.clear()
        parts.append(group)
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def _bad_replacement(text: str, rule: str, reason: str) -> ConfigError:
    return ConfigError(f"{SETTING}: the replacement {text!r} of rule {rule!r} {reason}")


def _reference(text: str, i: int, pattern: re.Pattern[str],
               rule: str) -> tuple[_Group | None, int]:
    """The group a `$` at text[i-1] refers to and where the text goes on; None when Kafka
    keeps it literally."""

    def bad(reason: str) -> ConfigError:
        return _bad_replacement(text, rule, reason)

    if i == len(text):
        raise bad("ends with a lone $ (write \\$ for a dollar sign)")
    if text[i] == "{":
        end = text.find("}", i)
        name = text[i + 1:end] if end > 0 else ""
        if end < 0 or name not in pattern.groupindex:
            raise bad(f"refers to a group {name or text[i:]!r} the pattern does not name")
        return _Group(pattern.groupindex[name]), end + 1
    if text[i] not in _DIGITS:
        raise bad(f"has a $ followed by {text[i]!r}: $ must be followed by a group number "
                  "(write \\$ for a dollar sign)")
    first = int(text[i])
    if first > pattern.groups:
        if pattern.groups == 0:
            raise bad(f"refers to group {first} but the pattern has no groups")
        return None, i
    index, i = first, i + 1
    # Java reads further digits while they still name a group: with 12 groups `$123` is
    # group 12 then a literal 3
    while i < len(text) and text[i] in _DIGITS and index * 10 + int(text[i]) <= pattern.groups:
        index, i = index * 10 + int(text[i]), i + 1
    return _Group(index), i
