"""A private PostgreSQL server for tests: `with PostgresServer() as pg: pg.url`.

It runs Debian's `postgresql` binaries (initdb, pg_ctl) on a data directory of its own in a
temporary directory, on a free loopback port, with no system service involved; `stop()` (or
leaving the `with`) shuts it down and removes everything. PostgreSQL refuses to run as root:
when the tests run as root the server runs as the `postgres` system user (which the Debian
package creates). `kill()` and `start()` let crash tests SIGKILL and restart it;
`standby()` makes a streaming standby of a running server and `promote()` promotes one
(`strom.testing.postgres_pair.PostgresPair` puts the two together, synchronously).

    from strom.testing.postgres import PostgresServer
    with PostgresServer() as pg:
        broker = EmbeddedBroker(storage=pg.url)
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Final

USER: Final = "strom"
PASSWORD: Final = "strom-test-password"
DATABASE: Final = "strom"
SEARCH_DIRS: Final = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin")


class PostgresCommandFailed(subprocess.CalledProcessError):
    """A PostgreSQL tool failed; the message includes what it printed."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr}"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server binaries are not installed (`apt-get install postgresql`)."""


def find_binaries() -> Path:
    """The directory holding initdb and pg_ctl (the newest Debian version first)."""
    on_path = shutil.which("pg_ctl")
    if on_path is not None and shutil.which("initdb") is not None:
        return Path(os.path.realpath(on_path)).parent
    for pattern in SEARCH_DIRS:
        for found in sorted(glob.glob(pattern), reverse=True):
            if (Path(found) / "pg_ctl").exists() and (Path(found) / "initdb").exists():
                return Path(found)
    raise PostgresUnavailable("PostgreSQL's server is not installed: apt-get install postgresql")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PostgresServer:
    """One private server; `url` reaches its database `strom` as user `strom`."""

    def __init__(self, *, fsync: bool = True, settings: dict[str, str] | None = None) -> None:
        self._prepare({"fsync": "on" if fsync else "off", "synchronous_commit": "on",
                       "max_connections": "100", **(settings or {})})
        self._initdb()

    def _prepare(self, settings: dict[str, str]) -> None:
        self.bin = find_binaries()
        self.port = free_port()
        self._tmp = Path(tempfile.mkdtemp(prefix="strom-pg-"))
        self.data_dir = self._tmp / "data"
        self.socket_dir = self._tmp / "sock"
        self.log_file = self._tmp / "server.log"
        self._run_as = _unprivileged_user()
        self._databases = 0
        self._settings = settings

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    def url_for(self, database: str, *, password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    # -- life cycle ------------------------------------------------------------------------

    def _initdb(self) -> None:
        for d in (self.data_dir, self.socket_dir):
            d.mkdir(mode=0o700)
        pwfile = self._tmp / "pw"
        pwfile.write_text(PASSWORD + "\n")
        self._chown(self._tmp, pwfile, self.data_dir, self.socket_dir)
        self._run([str(self.bin / "initdb"), "-D", str(self.data_dir), "-U", USER,
                   "--pwfile", str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256",
                   "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        pwfile.unlink()
        self._configure()

    def _configure(self) -> None:
        """Appends this server's own settings to postgresql.conf (the last line wins)."""
        options = "\n".join(f"{k} = '{v}'" for k, v in self._settings.items())
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.socket_dir}'\n{options}\n")

    def standby(self, name: str = "strom_standby") -> PostgresServer:
        """A new server that streams this (running) one's WAL: `pg_basebackup -R` through a
        replication slot `name` into a data directory of its own, with `cluster_name = name`
        (what the primary's `synchronous_standby_names` refers to) and no synchronous standby
        of its own (once promoted it runs alone). Start it with `start()`."""
        server = PostgresServer.__new__(PostgresServer)
        server._prepare({**self._settings, "cluster_name": name,
                         "synchronous_standby_names": ""})
        try:
            server._base_backup(self, name)
        except BaseException:
            server.close()
            raise
        return server

    def _base_backup(self, primary: PostgresServer, slot: str) -> None:
        for d in (self.data_dir, self.socket_dir):
            d.mkdir(mode=0o700)
        self._chown(self._tmp, self.data_dir, self.socket_dir)
        source = f"host=127.0.0.1 port={primary.port} user={USER} password={PASSWORD}"
        self._run([str(self.bin / "pg_basebackup"), "-D", str(self.data_dir), "-d", source,
                   "-R", "-X", "stream", "-C", "-S", slot, "-c", "fast", "--no-sync"])
        self._configure()

    def promote(self) -> None:
        """Promotes a standby (`pg_ctl promote`); returns once it accepts writes."""
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60",
                   "promote"])
        deadline = time.monotonic() + 60
        while self.psql("postgres", "SELECT pg_is_in_recovery()").strip() != "f":
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby on port {self.port} was not promoted")
            time.sleep(0.02)

    def start(self) -> None:
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-l",
                   str(self.log_file), "-w", "-t", "60", "start"])
        self._ensure_database()

    def new_database(self) -> str:
        """A new, empty database on the server; returns its URL (a test's own storage)."""
        self._databases += 1
        name = f"strom_{self._databases}"
        self.psql("postgres", f"CREATE DATABASE {name}")
        return self.url_for(name)

    def _ensure_database(self) -> None:
        exists = self.psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
        if exists.strip() != "1":
            self.psql("postgres", f"CREATE DATABASE {DATABASE}")

    def psql(self, database: str, sql: str) -> str:
        """Runs `sql` over the server's Unix socket; returns psql's unaligned output."""
        return self._run([str(self.bin / "psql"), "-h", str(self.socket_dir), "-p",
                          str(self.port), "-U", USER, "-d", database, "-XAtq", "-v",
                          "ON_ERROR_STOP=1", "-c", sql])

    def stop(self) -> None:
        if self.postmaster_pid() is not None:
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run([str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                           "-w", "stop"])

    def kill(self) -> None:
        """SIGKILL of the postmaster and its children, as a crash does; returns once they
        have all gone (pg_ctl start then recovers the server)."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        children = _children(pid)
        for p in [pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in [pid, *children]) and time.monotonic() < deadline:
            time.sleep(0.02)
        # A killed postmaster may linger as a zombie nobody reaps (PID 1 in a container),
        # which PostgreSQL would take for a live server: its lock files go too.
        for lock in [self.data_dir / "postmaster.pid", *self.socket_dir.glob("*.lock")]:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()

    def pause(self) -> None:
        """SIGSTOP of the postmaster and its children: the server freezes, as a hung machine
        or a network partition looks to clients (connections are taken by the kernel and never
        answered). `resume()` (SIGCONT) or `kill()` ends it."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: signal.Signals) -> None:
        pid = self.postmaster_pid()
        if pid is None:
            return
        for p in [pid, *_children(pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)

    def postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------------

    def _chown(self, *paths: Path) -> None:
        if self._run_as is None:
            return
        for p in paths:
            os.chown(p, self._run_as.pw_uid, self._run_as.pw_gid)

    def _run(self, argv: list[str]) -> str:
        if self._run_as is not None:
            argv = ["runuser", "-u", self._run_as.pw_name, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, cwd=self._tmp,
                              env={**os.environ, "LC_ALL": "C.UTF-8"})
        if done.returncode != 0:
            raise PostgresCommandFailed(done.returncode, argv, done.stdout,
                                        f"{done.stderr}\n{self._log_tail()}")
        return done.stdout

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text()[-2000:]
        except OSError:
            return ""


def _unprivileged_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root needs the `postgres` user that Debian's "
                                  "postgresql package creates") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().split(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry))
    return found
