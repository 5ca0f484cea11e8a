"""Wording shared by log lines, error messages and the CLI."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """'1 partition', '2 partitions', '0 partitions'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
