"""kcat, the Kafka command-line client, lists strom's metadata, produces keyed lines from stdin and
consumes them back exactly."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable

import pytest

from strom.testing import EmbeddedBroker
from tests.integration.conftest import ALL_ENGINES

STORAGE_ENGINES = ALL_ENGINES  # every test here runs on each storage engine

KCAT = shutil.which("kcat")

# Skipped only outside CI: .ci/run installs kcat, so under CI a missing kcat fails every test.
pytestmark = pytest.mark.skipif(
    KCAT is None and not os.environ.get("CI"),
    reason="kcat is not installed (apt-get install kcat); CI installs it")


def kcat(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert KCAT is not None, "kcat is not installed (CI is set, so the kcat tests cannot skip)"
    result = subprocess.run([KCAT, *args], input=stdin, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, f"kcat {' '.join(args)} failed: {result.stderr}"
    return result


def test_list_metadata(broker: EmbeddedBroker, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=3)
    out = kcat("-L", "-b", broker.bootstrap_servers).stdout

    assert re.search(r"^ 1 brokers:$", out, re.M), out
    broker_line = rf"^  broker 1 at 127\.0\.0\.1:{broker.port}( \(controller\))?$"
    assert re.search(broker_line, out, re.M), out
    assert f'  topic "{topic}" with 3 partitions:' in out
    for p in range(3):
        assert re.search(rf"^    partition {p}, leader 1, replicas: 1, isrs: 1$", out, re.M), out


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_keyed_lines_and_consume_them_back(broker: EmbeddedBroker, topic: str,
                                                   codec: str) -> None:
    lines = [f"key-{i}:value {i} with spaces, = signs and :colons" for i in range(100)]
    kcat("-P", "-b", broker.bootstrap_servers, "-t", topic, "-K:", "-z", codec,
         stdin="".join(f"{line}\n" for line in lines))

    out = kcat("-C", "-b", broker.bootstrap_servers, "-t", topic, "-e", "-q", "-o", "beginning",
               "-f", "%k=%s\n").stdout

    assert out.splitlines() == [line.replace(":", "=", 1) for line in lines]


def test_consume_shows_offsets_partitions_and_headers(broker: EmbeddedBroker,
                                                      topic: str) -> None:
    kcat("-P", "-b", broker.bootstrap_servers, "-t", topic, "-H", "source=kcat", "-K:",
         stdin="a:1\nb:2\nc:3\n")

    out = kcat("-C", "-b", broker.bootstrap_servers, "-t", topic, "-e", "-q", "-o", "beginning",
               "-f", "%p %o %k %s %h\n").stdout

    assert out.splitlines() == ["0 0 a 1 source=kcat", "0 1 b 2 source=kcat",
                                "0 2 c 3 source=kcat"]
