"""Kafka Connect's logger levels (KIP-495, KIP-976) over Python's logging: Kafka's level names,
each logger's `last_modified`, and setting a namespace (the logger and its descendants)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

TRACE = 5
_TO_KAFKA = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN",
             logging.ERROR: "ERROR", logging.CRITICAL: "FATAL", TRACE: "TRACE"}
LEVELS = {"TRACE": TRACE, "DEBUG": logging.DEBUG, "INFO": logging.INFO,
          "WARN": logging.WARNING, "ERROR": logging.ERROR, "FATAL": logging.CRITICAL,
          "OFF": logging.CRITICAL + 10}

# When each logger's level was last set through the API (ms since the epoch): one per process,
# as Kafka's Loggers of a worker.
_last_modified: dict[str, int] = {}
_lock = threading.Lock()


def level_name(level: int) -> str:
    if level > logging.CRITICAL:
        return "OFF"
    return _TO_KAFKA.get(level, logging.getLevelName(level))


def parse_level(name: str) -> int | None:
    """Python's level for one of Kafka's (log4j's) level names, case-insensitive; None if it is
    not one."""
    return LEVELS.get(name.upper())


def _logger(name: str) -> logging.Logger:
    return logging.getLogger() if name == "root" else logging.getLogger(name)


def logger_level(name: str) -> dict[str, Any] | None:
    """Kafka's LoggerLevel `{"level", "last_modified"}`; None for a logger that does not exist."""
    if name != "root" and name not in logging.Logger.manager.loggerDict:
        return None
    with _lock:
        modified = _last_modified.get(name)
    return {"level": level_name(_logger(name).getEffectiveLevel()), "last_modified": modified}


def all_logger_levels() -> dict[str, dict[str, Any]]:
    """`root` and every logger with a level of its own."""
    out: dict[str, dict[str, Any]] = {}
    root = logger_level("root")
    assert root is not None
    out["root"] = root
    for name, logger in sorted(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            level = logger_level(name)
            if level is not None:
                out[name] = level
    return out


def set_level(namespace: str, level: int) -> list[str]:
    """Set the namespace's logger and its descendants that have a level of their own; the names
    of those changed, sorted."""
    now = int(time.time() * 1000)
    _logger(namespace).setLevel(level)
    changed = [namespace]
    prefix = "" if namespace == "root" else namespace + "."
    for other, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and other.startswith(prefix) \
                and other != namespace and logger.level != logging.NOTSET:
            logger.setLevel(level)
            changed.append(other)
    with _lock:
        for name in changed:
            _last_modified[name] = now
    return sorted(changed)
