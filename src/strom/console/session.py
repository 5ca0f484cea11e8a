"""A logged-in user's session: their Kafka client settings and their CSRF token."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from strom.cli.common import ClientOptions


@dataclass(slots=True)
class Session:
    user: str
    client: ClientOptions
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    last_seen: float = field(default_factory=time.monotonic)

    def expired(self, idle_s: float) -> bool:
        """Unused for `idle_s`; otherwise marks it used now."""
        now = time.monotonic()
        if now - self.last_seen > idle_s:
            return True
        self.last_seen = now
        return False


SESSION_KEY: Final = web.RequestKey("session", Session)
