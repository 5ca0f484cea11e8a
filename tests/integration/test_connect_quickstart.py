# ruff: noqa: E501  (Kafka's properties files are quoted verbatim, long lines included)
"""Kafka's Connect quickstart, unchanged, against strom connect: the three properties files as
Kafka ships them (config/connect-standalone.properties, connect-file-source.properties,
connect-file-sink.properties), `strom connect --standalone` as a subprocess, lines appended to
test.txt showing up in test.sink.txt; a graceful restart duplicates nothing, a SIGKILL only
redelivers what came after the last offset flush (at-least-once), and rotation of test.txt is
followed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from strom.testing import EmbeddedBroker
from tests.integration.connect_worker import http, wait_for
from tests.integration.group_clients import GROUP_BROKER_SETTINGS

pytestmark = pytest.mark.slow

# Kafka 3.9's config/connect-standalone.properties, verbatim.
CONNECT_STANDALONE = """\
# Licensed to the Apache Software Foundation (ASF) under one or more
# contributor license agreements.  See the NOTICE file distributed with
# this work for additional information regarding copyright ownership.
# The ASF licenses this file to You under the Apache License, Version 2.0
# (the "License"); you may not use this file except in compliance with
# the License.  You may obtain a copy of the License at
#
#    http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

# These are defaults. This file just demonstrates how to override some settings.
bootstrap.servers=localhost:9092

# The converters specify the format of data in Kafka and how to translate it into Connect data. Every Connect user will
# need to configure these based on the format they want their data in when loaded from or stored into Kafka
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
# Converter-specific settings can be passed in by prefixing the Converter's setting with the converter we want to apply
# it to
key.converter.schemas.enable=true
value.converter.schemas.enable=true

offset.storage.file.filename=/tmp/connect.offsets
# Flush much faster than normal, which is useful for testing/debugging
offset.flush.interval.ms=10000

# Set to a list of filesystem paths separated by commas (,) to enable class loading isolation for plugins
# (connectors, converters, transformations). The list should consist of top level directories that include
# any combination of:
# a) directories immediately containing jars with plugins and their dependencies
# b) uber-jars with plugins and their dependencies
# c) directories immediately containing the package directory structure of classes of plugins and their dependencies
# Note: symlinks will be followed to discover dependencies or plugins.
# Examples:
# plugin.path=/usr/local/share/java,/usr/local/share/kafka/plugins,/opt/connectors,
#plugin.path=
"""

# Kafka's config/connect-file-source.properties, verbatim (license header included).
CONNECT_FILE_SOURCE = """\
# Licensed to the Apache Software Foundation (ASF) under one or more
# contributor license agreements.  See the NOTICE file distributed with
# this work for additional information regarding copyright ownership.
# The ASF licenses this file to You under the Apache License, Version 2.0
# (the "License"); you may not use this file except in compliance with
# the License.  You may obtain a copy of the License at
#
#    http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

name=local-file-source
connector.class=FileStreamSource
tasks.max=1
file=test.txt
topic=connect-test
"""

# Kafka's config/connect-file-sink.properties, verbatim.
CONNECT_FILE_SINK = """\
# Licensed to the Apache Software Foundation (ASF) under one or more
# contributor license agreements.  See the NOTICE file distributed with
# this work for additional information regarding copyright ownership.
# The ASF licenses this file to You under the Apache License, Version 2.0
# (the "License"); you may not use this file except in compliance with
# the License.  You may obtain a copy of the License at
#
#    http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

name=local-file-sink
connector.class=FileStreamSink
tasks.max=1
file=test.sink.txt
topics=connect-test
"""


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return dict(GROUP_BROKER_SETTINGS)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Worker:
    def __init__(self, cwd: Path, port: int) -> None:
        self.cwd = cwd
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = cwd / "worker.log"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "strom", "connect", "--standalone",
                 "config/connect-standalone.properties", "config/connect-file-source.properties",
                 "config/connect-file-sink.properties"],
                cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        wait_for(self.running, 30, "the worker's connectors running")

    def running(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited {self.proc.returncode}: "
                                 + self.log.read_text()[-3000:])
        try:
            code, body = http("GET", f"http://127.0.0.1:{self.port}/connectors?expand=status")
        except OSError:
            return False
        states = [t["state"] for name in ("local-file-source", "local-file-sink")
                  for t in body.get(name, {}).get("status", {}).get("tasks", [])]
        return code == 200 and states == ["RUNNING", "RUNNING"]

    def stop(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(30)

    def kill_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def quickstart(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Worker]:
    config = tmp_path / "config"
    config.mkdir()
    port = free_port()
    # What the quickstart has its user change: where the brokers are, the plugin.path line it
    # adds (ignored here), and for this test a free REST port and a private offsets file.
    worker_props = (CONNECT_STANDALONE
                    .replace("bootstrap.servers=localhost:9092",
                             f"bootstrap.servers={broker.bootstrap_servers}")
                    .replace("/tmp/connect.offsets", str(tmp_path / "connect.offsets"))
                    + "plugin.path=libs/connect-file-3.9.0.jar\n"
                    + f"listeners=http://127.0.0.1:{port}\n")
    (config / "connect-standalone.properties").write_text(worker_props)
    (config / "connect-file-source.properties").write_text(CONNECT_FILE_SOURCE)
    (config / "connect-file-sink.properties").write_text(CONNECT_FILE_SINK)
    worker = Worker(tmp_path, port)
    try:
        yield worker
    finally:
        worker.kill_quietly()


def append(path: Path, lines: list[str]) -> None:
    with open(path, "a") as out:
        out.writelines(line + "\n" for line in lines)


def sink_lines(cwd: Path) -> list[str]:
    path = cwd / "test.sink.txt"
    return path.read_text().splitlines() if path.exists() else []


def wait_sink(cwd: Path, expected: set[str]) -> list[str]:
    wait_for(lambda: expected <= set(sink_lines(cwd)), 30, f"{sorted(expected)} in the sink")
    return sink_lines(cwd)


def test_quickstart_unchanged(quickstart: Worker) -> None:
    cwd = quickstart.cwd
    source = cwd / "test.txt"
    append(source, ["foo", "bar"])
    quickstart.start()
    lines = wait_sink(cwd, {"foo", "bar"})
    assert lines == ["foo", "bar"]
    append(source, [f"line-{i}" for i in range(1, 6)])
    wait_sink(cwd, {f"line-{i}" for i in range(1, 6)})

    # A graceful stop commits the source offsets and the sink's group offsets: no duplicates.
    quickstart.stop(signal.SIGTERM)
    assert quickstart.proc is not None and quickstart.proc.returncode == 0, \
        quickstart.log.read_text()[-3000:]
    quickstart.start()
    append(source, [f"line-{i}" for i in range(6, 11)])
    lines = wait_sink(cwd, {f"line-{i}" for i in range(1, 11)})
    time.sleep(1)
    lines = sink_lines(cwd)
    assert lines == ["foo", "bar"] + [f"line-{i}" for i in range(1, 11)]

    # SIGKILL: nothing is lost; what is redelivered came after the offsets of the graceful stop.
    quickstart.stop(signal.SIGKILL)
    quickstart.start()
    append(source, [f"line-{i}" for i in range(11, 14)])
    wait_sink(cwd, {f"line-{i}" for i in range(11, 14)})
    counts = Counter(sink_lines(cwd))
    assert set(counts) == {"foo", "bar"} | {f"line-{i}" for i in range(1, 14)}
    assert all(counts[x] == 1 for x in ["foo", "bar"] + [f"line-{i}" for i in range(1, 6)])

    # Rotation: test.txt replaced by a new file; its lines are read from its start.
    os.rename(source, cwd / "test.txt.1")
    append(source, ["rotated-1", "rotated-2"])
    wait_sink(cwd, {"rotated-1", "rotated-2"})
    # Truncation: the same file emptied and written again.
    with open(source, "w") as out:
        out.write("truncated-1\n")
    wait_sink(cwd, {"truncated-1"})
    quickstart.stop(signal.SIGTERM)
