"""The `--security` mode's broker and principals: listeners, certificates, users and ACLs, the
resources the fuzz user must not be able to touch, and the seeds its frames come from.

The broker serves PLAINTEXT (the oracle's admin path: `User:ANONYMOUS` is a super user),
SASL_PLAINTEXT, SASL_SSL and SSL (no client certificates: `User:ANONYMOUS` too) with the
standard authorizer. Two SCRAM users are made at the start over PLAINTEXT:

- `fuzz-user` (SCRAM-SHA-256 and SCRAM-SHA-512) has NO ACL: after it authenticated, nothing
  it sends may be executed;
- `liveness` (SCRAM-SHA-512) may do anything to topics and groups named `live-sasl-...`
  (prefixed ACLs): the liveness round's SASL_SSL client.

Every name in the fuzz user's frames starts with `fzu-` (its dictionary, and the recorded
client frames with `rec-` rewritten), so a topic, group, transactional id, user, quota or ACL
with that prefix is something it made. A few resources exist that only its frames name (topics
`fuzz-sec-t1`/`fuzz-sec-t3`, group `fuzz-sec-g` with a committed offset, transactional id
`fuzz-sec-x`): their state at the start is kept and compared later (see sec_state.py).
"""

from __future__ import annotations

import random
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from bench.fuzz import seeds_schema
from bench.fuzz.broker import free_port
from bench.fuzz.mutators import Seed
from strom.security.certs import create_ca, create_certificate

FUZZ_USER: Final = "fuzz-user"
FUZZ_PASSWORD: Final = "fuzz-pw-0"
LIVENESS_USER: Final = "liveness"
LIVENESS_PASSWORD: Final = "liveness-pw-0"
PASSWORDS: Final = {FUZZ_USER: FUZZ_PASSWORD, LIVENESS_USER: LIVENESS_PASSWORD}
FUZZ_MECHANISMS: Final = ("SCRAM-SHA-256", "SCRAM-SHA-512")
LIVENESS_MECHANISM: Final = "SCRAM-SHA-512"
ENABLED_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ITERATIONS: Final = 4096
PREFIX: Final = "fzu-"  # every name the fuzz user's frames carry
LIVE_PREFIX: Final = "live-sasl-"
TARGET_TOPICS: Final = (("fuzz-sec-t1", 1), ("fuzz-sec-t3", 3))
TARGET_GROUP: Final = "fuzz-sec-g"
TARGET_OFFSET: Final = 42
TARGET_TXN: Final = "fuzz-sec-x"
AUTHORIZER: Final = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
SASL_LISTENERS: Final = ("SASL_PLAINTEXT", "SASL_SSL")
TLS_LISTENERS: Final = ("SSL", "SASL_SSL")
# The API keys a SASL listener serves before authentication.
OPEN_KEYS: Final = frozenset({17, 18, 36})
EXCHANGES_KEPT: Final = 32
# The security workers connect from these addresses (the TLS attacks from their own, so a
# leak there does not starve the SASL scenarios), which the broker allows this many
# connections at once each (max.connections.per.ip.overrides): a connection the broker does
# not release after an attack uses one up for good, and the budget check counts what is left.
ATTACKER_IP: Final = "127.0.0.2"
TLS_ATTACKER_IP: Final = "127.0.0.3"
ATTACKER_IPS: Final = (ATTACKER_IP, TLS_ATTACKER_IP)
CONNECTION_BUDGET: Final = 128


@dataclass(frozen=True)
class Listeners:
    """Where the security listeners are and what their TLS clients need."""

    host: str
    ports: dict[str, int]
    ca_path: Path

    def address(self, name: str) -> tuple[str, int]:
        return (self.host, self.ports[name])

    def bootstrap(self, name: str) -> str:
        return f"{self.host}:{self.ports[name]}"

    def client_context(self, verify: bool = True) -> ssl.SSLContext:
        """A TLS client context trusting the run's CA (host names checked), or trusting
        anything (`verify=False`: the attacks need no verification)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if verify:
            context.load_verify_locations(self.ca_path)
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def client_conf(self, user: str = LIVENESS_USER,
                    mechanism: str = LIVENESS_MECHANISM) -> dict[str, Any]:
        """librdkafka's settings for a SASL_SSL client (underscores: clients._conf's style)."""
        return {"security_protocol": "SASL_SSL", "sasl_mechanism": mechanism,
                "sasl_username": user, "sasl_password": PASSWORDS[user],
                "ssl_ca_location": str(self.ca_path)}


def make_listeners(host: str, plaintext_port: int, work_dir: Path) -> tuple[Listeners, Path]:
    """Free ports for the three security listeners and the run's certificates (a CA and a
    broker certificate for 127.0.0.1 and localhost); returns the listeners and the broker's
    PEM keystore."""
    directory = work_dir / "certs"
    ca = create_ca(directory)
    issued = create_certificate(directory, ca, "strom-fuzz-broker", (host, "localhost"),
                                name="broker")
    ports = {"PLAINTEXT": plaintext_port}
    for name in ("SASL_PLAINTEXT", "SASL_SSL", "SSL"):
        ports[name] = free_port()
    return Listeners(host, ports, directory / "ca.pem"), issued.keystore


def broker_settings(listeners: Listeners, keystore: Path) -> list[str]:
    names = ",".join(f"{name}://{listeners.host}:{port}"
                     for name, port in listeners.ports.items())
    return [f"listeners={names}", f"ssl.keystore.location={keystore}",
            f"authorizer.class.name={AUTHORIZER}", "super.users=User:ANONYMOUS",
            f"sasl.enabled.mechanisms={','.join(ENABLED_MECHANISMS)}",
            "max.connections.per.ip.overrides="
            + ",".join(f"{ip}:{CONNECTION_BUDGET}" for ip in ATTACKER_IPS)]


def create_principals(bootstrap: str, timeout_s: float = 30.0) -> None:
    """The two SCRAM users, and the liveness user's ALLOW ALL on `live-sasl-` topics and groups
    (confluent-kafka's AdminClient on the PLAINTEXT listener); raises on failure."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    upserts = [UserScramCredentialUpsertion(FUZZ_USER, ScramCredentialInfo(
        getattr(ScramMechanism, m.replace("-", "_")), ITERATIONS), FUZZ_PASSWORD.encode())
        for m in FUZZ_MECHANISMS]
    upserts.append(UserScramCredentialUpsertion(LIVENESS_USER, ScramCredentialInfo(
        ScramMechanism.SCRAM_SHA_512, ITERATIONS), LIVENESS_PASSWORD.encode()))
    for upsert in upserts:  # one request each: a user may appear once per request
        for future in admin.alter_user_scram_credentials([upsert]).values():
            future.result(timeout_s)
    bindings = [AclBinding(kind, LIVE_PREFIX, ResourcePatternType.PREFIXED,
                           f"User:{LIVENESS_USER}", "*", AclOperation.ALL,
                           AclPermissionType.ALLOW)
                for kind in (ResourceType.TOPIC, ResourceType.GROUP)]
    for future in admin.create_acls(bindings).values():
        future.result(timeout_s)


def fuzz_user_dictionary(rng: random.Random, recorded_names: list[str]) -> seeds_schema.Dictionary:
    """The fuzz user's names: the target resources, the internal topics, `fzu-` names (also
    at the file-name length limits), the two users' own names (for the SCRAM and quota
    APIs)."""
    dictionary = seeds_schema.Dictionary(rng, [name for name, _ in TARGET_TOPICS], PREFIX)
    ids = [TARGET_GROUP, TARGET_TXN, FUZZ_USER, LIVENESS_USER]
    ids += [f"{PREFIX}{kind}{i}" for kind in ("g", "x", "u", "c") for i in range(4)]
    ids += [rewrite_name(name) for name in recorded_names]
    dictionary.learn([f"{PREFIX}t{i}" for i in range(4)], ids)
    return dictionary


def rewrite_name(name: str) -> str:
    return PREFIX + name[4:] if name.startswith("rec-") else name


def rewrite_recorded(frame: bytes) -> bytes:
    """A recorded client frame with its `rec-` names made `fzu-` names (same length, so the
    framing stays valid)."""
    return frame.replace(b"rec-", PREFIX.encode())


def fuzz_user_seeds(rng: random.Random, versions: dict[int, tuple[int, int]],
                    recorded: list[bytes], recorded_names: list[str],
                    per_version: int) -> list[Seed]:
    """Schema seeds with the fuzz user's dictionary, and the recorded frames rewritten."""
    dictionary = fuzz_user_dictionary(rng, recorded_names)
    frames = seeds_schema.schema_frames(versions, rng, dictionary, per_version)
    seeds = [s for s in (Seed.of(f, "schema") for f in frames) if s is not None]
    seeds += [s for s in (Seed.of(rewrite_recorded(f), "recorded") for f in recorded)
              if s is not None]
    return seeds


@dataclass(frozen=True)
class ValidExchange:
    """A SCRAM exchange that succeeded: its client messages, for replays."""

    mechanism: str
    client_first: bytes
    client_final: bytes


@dataclass
class Exchanges:
    """Valid SCRAM exchanges the workers recorded (the latest few), shared between threads."""

    kept: deque[ValidExchange] = field(default_factory=lambda: deque(maxlen=EXCHANGES_KEPT))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, exchange: ValidExchange) -> None:
        with self._lock:
            self.kept.append(exchange)

    def pick(self, rng: random.Random, mechanism: str) -> ValidExchange | None:
        with self._lock:
            same = [e for e in self.kept if e.mechanism == mechanism]
        return rng.choice(same) if same else None
