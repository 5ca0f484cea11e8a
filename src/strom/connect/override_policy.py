"""Kafka's `connector.client.config.override.policy` (KIP-458): which `producer.override.*`,
`consumer.override.*` and `admin.override.*` settings a connector's config may carry.

- `All` (Kafka's default since 3.0): any client setting.
- `None`: no override at all.
- `Principal`: only the client's identity, `security.protocol`, `sasl.jaas.config` and
  `sasl.mechanism`.

The worker names the policy by its short name or by Kafka's class name
(`org.apache.kafka.connect.connector.policy.NoneConnectorClientConfigOverridePolicy` …); a
connector config that overrides what the policy does not allow is invalid, with Kafka's
message for each setting (config validation and create/update answer 400).
"""

from __future__ import annotations

from collections.abc import Mapping

from strom.connect.errors import ConfigException

POLICY = "connector.client.config.override.policy"
PREFIXES = ("producer.override.", "consumer.override.", "admin.override.")
PRINCIPAL_SETTINGS = frozenset({"security.protocol", "sasl.jaas.config", "sasl.mechanism"})
_CLASS_PACKAGE = "org.apache.kafka.connect.connector.policy."
_NAMES = {"all": "All", "none": "None", "principal": "Principal"}


def policy_name(props: Mapping[str, str]) -> str:
    """The worker's policy: All, None or Principal (ConfigException for anything else)."""
    raw = props.get(POLICY, "All").strip()
    short = raw.removeprefix(_CLASS_PACKAGE).removesuffix("ConnectorClientConfigOverridePolicy")
    name = _NAMES.get(short.lower())
    if name is None:
        raise ConfigException(f"Invalid value {raw} for configuration {POLICY}: expected All, "
                              f"None or Principal (or Kafka's class name of one)")
    return name


def override_errors(policy: str, config: Mapping[str, str]) -> dict[str, list[str]]:
    """The connector config's client overrides the policy forbids: setting -> messages."""
    if policy == "All":
        return {}
    errors: dict[str, list[str]] = {}
    for key in config:
        prefix = next((p for p in PREFIXES if key.startswith(p)), None)
        if prefix is None:
            continue
        setting = key[len(prefix):]
        if policy == "Principal" and setting in PRINCIPAL_SETTINGS:
            continue
        errors[key] = [f"The '{policy}' policy does not allow '{setting}' to be overridden in "
                       "the connector configuration."]
    return errors
