"""Kafka's `sasl.jaas.config` values: a login module, its flag and its options, e.g.

    org.apache.kafka.common.security.scram.ScramLoginModule required
        username="broker" password="secret";

A broker takes its own user name and password for the inter-broker listener from the option
`username` and `password` (Kafka's PlainLoginModule and ScramLoginModule); the `user_NAME`
options of Kafka's PLAIN server side are ignored (strom's PLAIN checks the SCRAM store).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from strom.config.topic import ConfigError

_ENTRY: Final = re.compile(r"\s*([A-Za-z_$][\w$.]*)\s+(required|requisite|sufficient|optional)"
                           r"\s*(.*?)\s*;\s*$", re.DOTALL)
_OPTION: Final = re.compile(r'\s*([^\s=]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^\s";]+)')
MODULES: Final = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


@dataclass(frozen=True, slots=True)
class JaasEntry:
    login_module: str
    flag: str
    options: dict[str, str] = field(repr=False)


def parse(text: str, setting: str = "sasl.jaas.config") -> JaasEntry:
    """One login module entry; ConfigError saying what is wrong (never the values)."""
    match = _ENTRY.fullmatch(text)
    if match is None:
        raise ConfigError(f"{setting}: expected 'LoginModule required key=\"value\" ...;' "
                          "(one login module, ending with ';')")
    module, flag, rest = match.groups()
    options: dict[str, str] = {}
    position = 0
    while position < len(rest):
        option = _OPTION.match(rest, position)
        if option is None:
            if rest[position:].strip():
                raise ConfigError(f"{setting}: cannot read the options of {module} after "
                                  f"{len(options)} option(s): write key=\"value\" pairs")
            break
        key, raw, quoted = option.group(1), option.group(2), option.group(3)
        options[key] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else raw
        position = option.end()
    return JaasEntry(module, flag, options)


def credentials(text: str, mechanism: str, setting: str) -> tuple[str, str]:
    """(username, password) of a PlainLoginModule / ScramLoginModule entry for `mechanism`."""
    entry = parse(text, setting)
    expected = MODULES.get(mechanism)
    if expected is not None and entry.login_module.rsplit(".", 1)[-1] != \
            expected.rsplit(".", 1)[-1]:
        raise ConfigError(f"{setting}: {mechanism} logs in with {expected}, not "
                          f"{entry.login_module}")
    username, password = entry.options.get("username"), entry.options.get("password")
    if not username or password is None:
        raise ConfigError(f"{setting}: the login module needs username=\"...\" and "
                          "password=\"...\" (the broker's own user)")
    return username, password
