"""The broker under test: a `strom serve` subprocess (or an address given), its memory and log.

The subprocess runs in its own process group on a free loopback port, logs to a file, and is
stopped with SIGTERM and, after a grace period, SIGKILL. RSS is sampled from /proc/PID/status
(VmRSS, and VmHWM: the kernel's own peak, which catches spikes between samples).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

READY: Final = re.compile(r"strom is ready on (\S+):(\d+) ")
START_TIMEOUT_S: Final = 30.0
STOP_GRACE_S: Final = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_status_kib(pid: int, key: str) -> int | None:
    """A `VmRSS`-style line of /proc/PID/status in KiB; None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


@dataclass
class RssFigures:
    """KiB; `peak_sampled` is the largest VmRSS seen, `hwm` the kernel's VmHWM at the end."""

    start: int = 0
    peak_sampled: int = 0
    end: int = 0
    hwm: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)


class Broker:
    """A broker to fuzz. `own=True`: started and stopped here; else only its address is known."""

    def __init__(self, work_dir: Path, settings: list[str], bootstrap: str | None = None,
                 python: str = sys.executable) -> None:
        self.work_dir = work_dir
        self.data_dir = work_dir / "data"
        self.log_path = work_dir / "broker.log"
        self.settings = settings
        self.python = python
        self.own = bootstrap is None
        self.proc: subprocess.Popen[bytes] | None = None
        self.rss = RssFigures()
        self.exits: list[int] = []  # return codes of unexpected exits
        self._sampler: threading.Thread | None = None
        self._sampling = threading.Event()
        if bootstrap is None:
            self.host, self.port = "127.0.0.1", free_port()
        else:
            host, _, port = bootstrap.rpartition(":")
            self.host, self.port = host, int(port)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def alive(self) -> bool:
        if not self.own:
            return self._connectable()
        return self.proc is not None and self.proc.poll() is None

    def _connectable(self) -> bool:
        try:
            socket.create_connection(self.address, timeout=5).close()
        except OSError:
            return False
        return True

    def start(self) -> None:
        if not self.own:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [self.python, "-m", "strom", "serve", "--data-dir", str(self.data_dir),
                "--listen", self.bootstrap]
        for setting in self.settings:
            args += ["--set", setting]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not READY.search(self._log_since(offset)):
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited at start: {self._log_since(offset)[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("broker not ready in time")
            time.sleep(0.05)

    def _log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM to the process group, SIGKILL after the grace period; the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(STOP_GRACE_S)
        self.proc = None
        return proc.returncode

    def restart(self) -> None:
        self.stop_sampling()
        self.stop()
        self.start()

    # -- memory

    def sample_rss(self) -> int | None:
        pid = self.pid
        if pid is None:
            return None
        rss = read_status_kib(pid, "VmRSS")
        if rss is not None:
            self.rss.peak_sampled = max(self.rss.peak_sampled, rss)
            self.rss.end = rss
            hwm = read_status_kib(pid, "VmHWM")
            self.rss.hwm = max(self.rss.hwm, hwm or 0)
        return rss

    def start_sampling(self, every_s: float, t0: float) -> None:
        if self.pid is None:
            return
        self.rss.start = self.sample_rss() or 0
        self._sampling.clear()

        def loop() -> None:
            while not self._sampling.wait(every_s):
                rss = self.sample_rss()
                if rss is not None:
                    self.rss.samples.append((round(time.monotonic() - t0, 1), rss))

        self._sampler = threading.Thread(target=loop, name="rss", daemon=True)
        self._sampler.start()

    def stop_sampling(self) -> None:
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join(5)
            self._sampler = None
        self.sample_rss()
