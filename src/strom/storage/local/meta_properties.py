"""`meta.properties`: the cluster id of a data directory, as in a KRaft broker's log
directory (written once, when the directory is first opened)."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from strom.storage.local.files import write_atomic

META_PROPERTIES = "meta.properties"


def new_cluster_id() -> str:
    """Kafka's form: a random UUID in URL-safe base64 without padding (22 characters)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def load_or_create_cluster_id(data_dir: Path) -> str:
    """The directory's cluster id, created and saved durably if it has none (blocking)."""
    path = data_dir / META_PROPERTIES
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
    cluster_id = new_cluster_id()
    write_atomic(path, f"version=1\ncluster.id={cluster_id}\n".encode())
    return cluster_id
