"""pytest plugin (entry point `strom`): the `strom_broker` fixture, one broker per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from strom.testing.embedded import EmbeddedBroker


@pytest.fixture
def strom_broker() -> Iterator[EmbeddedBroker]:
    """A fresh in-process broker on a free loopback port, removed after the test."""
    from strom.testing.embedded import EmbeddedBroker  # imported late: plugins load early

    with EmbeddedBroker() as broker:
        yield broker
