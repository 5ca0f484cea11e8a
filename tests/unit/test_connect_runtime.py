"""strom.connect runtime pieces without a broker: properties files, plugin discovery by Kafka's
names, the offsets file, the file source's offsets and rotation, error context headers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from strom.connect.api import OffsetStorageReader, SourceTaskContext
from strom.connect.discovery import PluginNotFound, find_connector
from strom.connect.file import (
    FileStreamSinkConnector,
    FileStreamSourceConnector,
    FileStreamSourceTask,
)
from strom.connect.offsets import ConnectorOffsetReader, FileOffsetBackingStore, offset_key
from strom.connect.properties import parse_properties
from strom.connect.standalone import parse_listeners
from strom.connect.tolerance import ErrorSettings, ProcessingContext, Stage, error_headers


def test_properties() -> None:
    text = ("# comment\n! also a comment\n  a=1\nb = two words \nc:3\nd 4\n"
            "long=x\\\n    y\nesc=tab\\there\\u0041\nempty=\nkey\\=with=eq\n")
    assert parse_properties(text) == {"a": "1", "b": "two words ", "c": "3", "d": "4",
                                      "long": "xy", "esc": "tab\thereA", "empty": "",
                                      "key=with": "eq"}


@pytest.mark.parametrize("name", ["FileStreamSource", "FileStreamSourceConnector",
                                  "org.apache.kafka.connect.file.FileStreamSourceConnector",
                                  "strom.connect.file.FileStreamSourceConnector"])
def test_source_names(name: str) -> None:
    plugin = find_connector(name)
    assert plugin.cls is FileStreamSourceConnector and plugin.type == "source"
    assert plugin.class_name == "org.apache.kafka.connect.file.FileStreamSourceConnector"


def test_sink_names_and_unknown() -> None:
    assert find_connector("FileStreamSink").cls is FileStreamSinkConnector
    with pytest.raises(PluginNotFound):
        find_connector("NoSuchConnector")


def test_listeners() -> None:
    assert parse_listeners(None)[0].port == 8083
    assert parse_listeners("http://127.0.0.1:9000")[0] == parse_listeners("127.0.0.1:9000")[0]
    # port 0: a free port (the in-process test workers), not the default 8083
    assert parse_listeners("http://127.0.0.1:0")[0].port == 0
    assert parse_listeners("http://h")[0].port == 8083
    with pytest.raises(ValueError, match="http"):
        parse_listeners("https://h:1")


def test_offsets_file(tmp_path: Path) -> None:
    path = tmp_path / "offsets"
    store = FileOffsetBackingStore(path)
    key = offset_key("c", {"filename": "f"})
    assert json.loads(key) == ["c", {"filename": "f"}]  # Kafka's key format
    store.set({key: {"position": 10}})
    again = FileOffsetBackingStore(path)
    assert ConnectorOffsetReader(again, "c").offset({"filename": "f"}) == {"position": 10}
    assert ConnectorOffsetReader(again, "other").offset({"filename": "f"}) is None
    again.set({key: None})
    assert FileOffsetBackingStore(path).items() == []


class _Context(SourceTaskContext):
    def __init__(self, reader: OffsetStorageReader) -> None:
        self.reader = reader

    def offset_storage_reader(self) -> OffsetStorageReader:
        return self.reader


def _poll_all(task: FileStreamSourceTask) -> list[Any]:
    out: list[Any] = []
    while records := task.poll():
        out.extend(records)
    return out


def test_file_source_offsets_and_rotation(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("strom.connect.file.POLL_WAIT_S", 0)
    path = tmp_path / "in.txt"
    path.write_text("a\nbb\npartial")
    store = FileOffsetBackingStore(tmp_path / "offsets")
    task = FileStreamSourceTask()
    task.initialize(_Context(ConnectorOffsetReader(store, "src")))
    task.start({"file": str(path), "topic": "t", "batch.size": "1"})
    records = _poll_all(task)
    assert [r.value for r in records] == ["a", "bb"]
    assert records[0].source_partition == {"filename": str(path)}
    assert [r.source_offset for r in records] == [{"position": 2}, {"position": 5}]
    task.stop()
    # A new task resumes after the committed offset.
    store.set({offset_key("src", {"filename": str(path)}): {"position": 2}})
    task = FileStreamSourceTask()
    task.initialize(_Context(ConnectorOffsetReader(store, "src")))
    task.start({"file": str(path), "topic": "t"})
    with open(path, "a") as out:
        out.write(" line\n")
    assert [r.value for r in _poll_all(task)] == ["bb", "partial line"]
    # Replaced: the new file is read from its start.
    path.rename(tmp_path / "in.txt.1")
    path.write_text("new\n")
    assert [r.value for r in _poll_all(task)] == ["new"]
    # Truncated and rewritten.
    path.write_text("x\n")
    assert [r.value for r in _poll_all(task)] == ["x"]
    task.stop()


def test_error_settings_and_headers() -> None:
    settings = ErrorSettings.from_config({"errors.tolerance": "all",
                                          "errors.deadletterqueue.topic.name": " dlq ",
                                          "errors.deadletterqueue.context.headers.enable":
                                              "true"})
    assert settings.tolerance_all and settings.dlq_topic == "dlq"
    with pytest.raises(ValueError, match="none, all"):
        ErrorSettings.from_config({"errors.tolerance": "some"})
    try:
        raise KeyError("boom")
    except KeyError as error:
        context = ProcessingContext("c", 2, Stage.TRANSFORMATION, "x.Y", error, "t", 0, 7)
    headers = dict(error_headers(context))
    assert headers["__connect.errors.offset"] == b"7"
    assert headers["__connect.errors.task.id"] == b"2"
    assert headers["__connect.errors.stage"] == b"TRANSFORMATION"
    assert headers["__connect.errors.exception.class.name"] == b"builtins.KeyError"


def test_source_record_rendered_only_when_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A source task's context keeps the record; its repr is made only for the log line."""
    from strom.connect.tolerance import log_error

    class Record:
        renders = 0

        def __repr__(self) -> str:
            Record.renders += 1
            return "SourceRecord{line-7}"

    context = ProcessingContext("c", 0, Stage.VALUE_CONVERTER, "x.Y", ValueError("bad"),
                                source_record=Record())
    assert Record.renders == 0
    log_error(context, include_messages=False)
    assert Record.renders == 0
    with caplog.at_level("ERROR", logger="strom.connect.errors.log"):
        log_error(context, include_messages=True)
    assert Record.renders == 1
    assert "where source record is = SourceRecord{line-7}" in caplog.text
