"""One `strom serve` subprocess of a LocalCluster: started on a fixed loopback port (a restart
comes back at the same address, which is how the cluster knows it for the same broker), its
stderr appended to a log file across restarts, and the signals the faults need: SIGKILL,
SIGTERM, SIGSTOP and SIGCONT.

    broker = BrokerProcess(node_id=1, port=free_port(), storage=url, log_path=Path("b1.log"))
    broker.start()          # returns once the log says "strom is ready on ..."
    broker.kill(); broker.start()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

READY_TEXT: Final = "strom is ready on "
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 20.0
LOG_TAIL_LINES: Final = 40


class BrokerFailed(RuntimeError):
    """A broker did not start or stop as asked; the message ends with its log's tail."""


class BrokerProcess:
    """`python -m strom serve --storage URL --node-id N --listen 127.0.0.1:PORT --set ...`."""

    def __init__(self, *, node_id: int, port: int, storage: str, log_path: Path,
                 settings: Mapping[str, str] | None = None) -> None:
        self.node_id = node_id
        self.port = port
        self.storage = storage
        self.log_path = log_path
        self.settings = dict(settings or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def argv(self) -> list[str]:
        args = [sys.executable, "-m", "strom", "serve", "--storage", self.storage,
                "--node-id", str(self.node_id), "--listen", self.address]
        for name, value in self.settings.items():
            args += ["--set", f"{name}={value}"]
        return args

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Starts the process and returns once its log says it is ready."""
        if self.alive:
            raise BrokerFailed(f"broker {self.node_id} is already running")
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1} of broker {self.node_id} ---\n".encode())
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.starts += 1
        self.paused = False
        deadline = time.monotonic() + timeout_s
        while READY_TEXT not in self._log_since(offset):
            if self.proc.poll() is not None:
                raise BrokerFailed(f"broker {self.node_id} exited with {self.proc.returncode} "
                                   f"at start\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BrokerFailed(f"broker {self.node_id} not ready in {timeout_s:.0f} s\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a crash; returns once the process is gone."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait(STOP_TIMEOUT_S)
        self.paused = False

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, a clean stop (a paused broker is resumed first so it can stop); returns
        the exit status. A broker that does not stop in time is killed and BrokerFailed
        raised."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc is not None else 0
        self.resume()
        self.proc.terminate()
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BrokerFailed(f"broker {self.node_id} did not stop in {timeout_s:.0f} s "
                               f"after SIGTERM\n{self.log_tail()}") from None

    def pause(self) -> None:
        """SIGSTOP: the process freezes with its sockets open (a long GC pause, a VM stall)."""
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            self._signal(signal.SIGCONT)
            self.paused = False

    def _signal(self, sig: signal.Signals) -> None:
        if not self.alive:
            raise BrokerFailed(f"broker {self.node_id} is not running\n{self.log_tail()}")
        assert self.proc is not None
        self.proc.send_signal(sig)

    def _log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the broker's log, headed by its name."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(broker {self.node_id}: no log: {exc})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- broker {self.node_id} log ({self.log_path}), last {lines} lines ---\n{tail}"
