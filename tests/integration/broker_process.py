"""Runs `strom serve` as a subprocess for tests that kill or restart the broker process."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.conftest import DEADLINE_S

READY = re.compile(r"strom is ready on (\S+):(\d+) ")


@contextmanager
def serve_process(data_dir: Path | None, log_path: Path, *settings: str,
                  listen: str = "127.0.0.1:0", storage: str | None = None,
                  ) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m strom serve` with `settings` (NAME=VALUE); yields (process, bootstrap) once
    it is ready, and stops it (SIGTERM, then SIGKILL) on the way out. The log file may be
    reused across starts: only what this start appends is searched. With `storage` (a
    storage URL) the broker gets --storage instead of --data-dir."""
    where = ["--storage", storage] if storage is not None else ["--data-dir", str(data_dir)]
    args = [sys.executable, "-m", "strom", "serve", *where, "--listen", listen]
    for setting in settings:
        args += ["--set", setting]
    start = log_path.read_text() if log_path.exists() else ""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            text = log_path.read_text(errors="replace")[len(start):]
            ready = READY.search(text)
            if ready:
                break
            assert proc.poll() is None, f"broker exited early:\n{text}"
            assert time.monotonic() < deadline, f"broker not ready:\n{text}"
            time.sleep(0.05)
        yield proc, f"{ready.group(1)}:{ready.group(2)}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
