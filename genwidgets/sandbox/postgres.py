"""A throwaway PostgreSQL server on loopback, for the team backend's tests and benchmarks.

The team mode (a shared journal, leases and budgets in PostgreSQL) is tested against a real
server, not a mock: this runs Debian's `initdb` and `pg_ctl` in a temporary folder, on a free
loopback port, with password authentication, and removes everything on exit::

    from genwidgets.sandbox.postgres import LocalPostgres

    with LocalPostgres() as pg:
        os.environ["GENWIDGETS_JOURNAL"] = pg.url   # postgresql://genwidgets:...@127.0.0.1:PORT/genwidgets
        pg.stop(); pg.start()                       # the database going away mid-run, and back

PostgreSQL refuses to run as root, so under root the server runs as an unprivileged user
(``nobody`` unless ``user=`` says otherwise) and the folder is handed to it. The password is
random per server and only ever in `url` (and `password`); the repr leaves it out.

`pg_ctl` daemonizes the server, so it would outlive a test or benchmark killed with SIGKILL
(which never reaches `__exit__`). A small watcher process (this module run with ``--parent``)
waits for the starter to go, then stops the server (``pg_ctl stop -m immediate``) and removes
its folder; `__exit__` ends the watcher first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["LocalPostgres", "PostgresUnavailable", "find_binaries"]

#: How often the watcher looks whether its starter is still there (seconds).
_WATCH_SECONDS = 0.2
#: Where Debian's packages put the server binaries (`initdb` and `pg_ctl` are not on PATH there).
_DEBIAN_ROOT = Path("/usr/lib/postgresql")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine (install Debian's ``postgresql``)."""


def find_binaries() -> Path:
    """The folder holding `initdb`, `pg_ctl` and `postgres`: on PATH, else Debian's newest."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    if _DEBIAN_ROOT.is_dir():
        versions = sorted(
            (p for p in _DEBIAN_ROOT.iterdir() if (p / "bin" / "initdb").exists()),
            key=lambda p: int(p.name) if p.name.isdigit() else 0,
        )
        if versions:
            return versions[-1] / "bin"
    raise PostgresUnavailable(
        "no PostgreSQL server found: install Debian's 'postgresql' package (scripts/setup.sh does)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalPostgres:
    """One PostgreSQL cluster in a temporary folder, serving one database on 127.0.0.1."""

    def __init__(
        self, *, database: str = "genwidgets", user: str = "genwidgets", os_user: str = "nobody"
    ) -> None:
        self.database = database
        self.user = user
        self.password = secrets.token_urlsafe(16)
        self.port = _free_port()
        self.host = "127.0.0.1"
        self._bin = find_binaries()
        self._os_user = os_user if os.geteuid() == 0 else None
        self._root: Path | None = None
        self._watcher: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"LocalPostgres(postgresql://{self.user}@{self.host}:{self.port}/{self.database})"

    @property
    def url(self) -> str:
        """The connection URL, password included (keep it out of anything that is shown)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    @property
    def url_without_password(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def _data(self) -> Path:
        assert self._root is not None
        return self._root / "data"

    def _run(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self._bin / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            user=self._os_user,
            cwd=self._root,
            **kwargs,
        )

    def __enter__(self) -> LocalPostgres:
        self._root = Path(tempfile.mkdtemp(prefix="genwidgets-pg-"))
        try:
            self._watch()
            pwfile = self._root / "pw"
            pwfile.write_text(self.password + "\n")
            if self._os_user:
                shutil.chown(self._root, self._os_user)
                shutil.chown(pwfile, self._os_user)
            self._root.chmod(0o700)
            self._run(
                "initdb", "-D", str(self._data), "-U", self.user, f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--no-sync",
            )  # fmt: skip
            pwfile.unlink()
            with (self._data / "postgresql.conf").open("a") as conf:
                conf.write(
                    f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self._root}'\nfsync = off\n"
                    "max_connections = 200\n"
                )
            self.start()
            self._create_database()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _watch(self) -> None:
        """Start the watcher that stops this server if this process dies without `__exit__`
        (its own session: a Ctrl-C to the starter's process group does not end it first)."""
        assert self._root is not None
        command = [sys.executable, "-m", "genwidgets.sandbox.postgres", "--parent",
                   str(os.getpid()), "--bin", str(self._bin), "--root", str(self._root)]
        if self._os_user:
            command += ["--os-user", self._os_user]
        package = str(Path(__file__).resolve().parents[2])  # this genwidgets, whatever sys.path
        path = os.pathsep.join(p for p in (package, os.environ.get("PYTHONPATH")) if p)
        quiet = subprocess.DEVNULL
        self._watcher = subprocess.Popen(
            command, stdin=quiet, stdout=quiet, stderr=quiet, start_new_session=True,
            env={**os.environ, "PYTHONPATH": path},
        )

    def _create_database(self) -> None:
        env = {**os.environ, "PGPASSWORD": self.password}
        self._run(
            "createdb", "-h", self.host, "-p", str(self.port), "-U", self.user, self.database,
            env=env,
        )  # fmt: skip

    def start(self) -> None:
        """Start (or restart after `stop`) the server and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self._data), "-l", str(self._root / "log"), "-w", "start")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self!r} did not start: {self.log()[-2000:]}")

    def stop(self) -> None:
        """Stop the server at once (connections are cut), keeping its data for `start`."""
        self._run("pg_ctl", "-D", str(self._data), "-m", "immediate", "-w", "stop")

    def log(self) -> str:
        log = (self._root or Path(".")) / "log"
        return log.read_text(errors="replace") if log.exists() else ""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._root is None:
            return
        if self._watcher is not None:
            self._watcher.kill()
            self._watcher.wait()
            self._watcher = None
        if (self._data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop()
        shutil.rmtree(self._root, ignore_errors=True)
        self._root = None


def _stop_after(parent: int, bin_dir: Path, root: Path, os_user: str | None) -> None:
    """Wait until `parent` is gone (this process is reparented), then stop the server in `root`
    at once and remove the folder."""
    while os.getppid() == parent:
        time.sleep(_WATCH_SECONDS)
    data = root / "data"
    if (data / "postmaster.pid").exists():
        command = [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        subprocess.run(command, capture_output=True, user=os_user, cwd=root, check=False)
    shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="stop a LocalPostgres once its starter is gone")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--bin", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--os-user", default=None)
    args = parser.parse_args(argv)
    _stop_after(args.parent, args.bin, args.root, args.os_user)


if __name__ == "__main__":
    main()
