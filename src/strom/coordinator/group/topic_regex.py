"""Subscription regular expressions (KIP-848) compiled with RE2, as Kafka uses RE2/J: matching
takes linear time, so a client's pattern cannot stall the broker (no catastrophic
backtracking), and lookarounds and backreferences are refused as Kafka refuses them."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Final

import re2

MAX_PATTERNS_CACHED: Final = 1024
_OPTIONS: Final = re2.Options()
_OPTIONS.log_errors = False


class RegexError(ValueError):
    """The pattern is not a valid RE2 expression (INVALID_REGULAR_EXPRESSION)."""


@lru_cache(maxsize=MAX_PATTERNS_CACHED)
def compile_topic_regex(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        message = exc.args[0] if exc.args else exc
        if isinstance(message, bytes):
            message = message.decode(errors="replace")
        raise RegexError(str(message)) from None


def matches(pattern: str, topic: str) -> bool:
    return compile_topic_regex(pattern).fullmatch(topic) is not None
