"""A PostgreSQL partition's standing on this broker."""

from __future__ import annotations

import enum


class Status(enum.Enum):
    LOADED = "loaded"
    STALE = "stale"  # a commit failed (its outcome unknown): reload before answering
    FENCED = "fenced"  # not this broker's: its lease is elsewhere (or never was here)
    MOVING = "moving"  # being handed over: appends refused, reads served
