"""A PostgreSQL partition's standing on this broker."""

from __future__ import annotations

import enum


class Status(enum.Enum):
    LOADED = "loaded"
    STALE = "stale"  # a commit failed (its outcome unknown): reload before answering
    FENCED = "fenced"  # a newer leader epoch took it over: no more appends here
