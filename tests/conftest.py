"""Suite-wide hooks: the slow tests run first.

CI runs the suite on two pytest-xdist workers, and a run lasts as long as its busiest worker.
A test of a minute or more that starts last keeps one worker busy on its own at the end;
started first, it overlaps with the thousands of short tests. The modules that hold a test
marked `slow` (about 10 s or more) go first, each kept whole (its module-scoped broker starts
once), in collection order; the rest follow in collection order.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slow_modules = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_modules)  # stable: collection order kept
