"""docs/protocol.md is exactly what the handler registry renders (regenerate with
`python -m strom.broker.protocol_doc --write`)."""

from pathlib import Path

from strom.broker.protocol_doc import render


def test_protocol_doc_is_current() -> None:
    path = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
    assert path.read_text() == render(), "run: python -m strom.broker.protocol_doc --write"
