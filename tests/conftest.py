"""Suite-wide hooks: the slow tests run first, and the unit and property tests do not fsync.

Slow first: CI runs the suite on two pytest-xdist workers, and a run lasts as long as its
busiest worker. A test of a minute or more that starts last keeps one worker busy on its own
at the end; started first, it overlaps with the thousands of short tests. The modules that hold
a test marked `slow` (about 10 s or more) go first, each kept whole (its module-scoped broker
starts once), in collection order; the rest follow in collection order.

No fsync in tests/unit and tests/property: an fsync only matters if the machine loses its page
cache (power loss, a kernel crash), which no in-process test can cause or observe, yet it was
most of the time of the storage tests (the log compaction property: 18.6 s, 6.3 s without).
A test about fsync (failing, slow, counted) patches os.fsync itself and still does; the
integration tests, with brokers in subprocesses and crashes by SIGKILL, keep the real one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
NO_FSYNC_DIRS = frozenset({"unit", "property"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slow_modules = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_modules)  # stable: collection order kept


def _no_fsync(fd: int) -> None:
    os.fstat(fd)  # a bad descriptor still fails, as os.fsync would


@pytest.fixture(autouse=True)
def _page_cache_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.fsync and os.fdatasync do nothing in the unit and property tests (see above)."""
    parts = request.node.path.relative_to(TESTS).parts
    if parts[0] in NO_FSYNC_DIRS:
        monkeypatch.setattr(os, "fsync", _no_fsync)
        monkeypatch.setattr(os, "fdatasync", _no_fsync)
