"""A logged-in user's session: their Kafka client settings and their CSRF token."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from strom.cli.common import ClientOptions


@dataclass(slots=True)
class Session:
    user: str
    client: ClientOptions
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))


SESSION_KEY: Final = web.RequestKey("session", Session)
