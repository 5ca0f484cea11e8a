"""Renders docs/protocol.md from the handler registry: `python -m strom.broker.protocol_doc`."""

from __future__ import annotations

import sys
from pathlib import Path

from kio.schema.index import api_key_map

from strom.broker.registry import load_handlers

HEADER = """# Protocol coverage

Generated from the handler registry by `python -m strom.broker.protocol_doc --write`; a unit
test fails when this file is stale. ApiVersions advertises exactly these versions. Any other
API key gets the connection closed with a logged reason (as Kafka does for unknown keys); a known
API at an unserved version gets an `UNSUPPORTED_VERSION` answer (ApiVersions answers with v0 and
its version list, per KIP-511).

| key | API | versions served | notes |
|---:|---|---|---|
"""


def render() -> str:
    registry = load_handlers()
    rows = []
    for spec in sorted(registry.values(), key=lambda s: s.key):
        versions = f"{spec.min_version}-{spec.max_version}"
        if spec.advertised_min != spec.min_version:
            versions += f" (advertised from {spec.advertised_min})"
        rows.append(f"| {spec.key} | {spec.name} | {versions} | {spec.notes} |")
    missing = sorted(set(api_key_map) - set(registry))
    names = ", ".join(f"{api_key_map[k]} ({k})" for k in missing)
    footer = f"\nNot served yet (kio knows them): {names}.\n"
    return HEADER + "\n".join(rows) + "\n" + footer


def main() -> None:
    text = render()
    if "--write" in sys.argv:
        Path("docs/protocol.md").write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
