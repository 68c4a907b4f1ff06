"""A throw-away PostgreSQL server for tests and benches: Debian's PostgreSQL (15) binaries (``initdb``,
``pg_ctl``) run in a temporary folder, trust authentication, listening on a free loopback port with its
unix socket in that folder. As root the server runs as the ``postgres`` user (it refuses root).

``conftest.py`` starts one per test session (:func:`session_server`) and gives each test a database of
its own; where the binaries are absent those tests skip, saying what to install.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INSTALL_HINT = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql (Debian's 15)"
DEBIAN_DIR = Path("/usr/lib/postgresql")  # <major>/bin/ per installed version


class PgUnavailable(RuntimeError):
    """No PostgreSQL server can be started here (the message says why)."""


def find_bin_dir() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: on PATH (symlinks followed), else Debian's, 15 first, then the
    newest installed."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    versions = sorted((p for p in DEBIAN_DIR.glob("*/bin") if p.parent.name.isdigit()),
                      key=lambda p: (p.parent.name != "15", -int(p.parent.name)))
    candidates += versions
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise PgUnavailable(INSTALL_HINT)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalPostgres:
    """A running server; :meth:`create_database` makes a fresh database and returns its URL."""

    def __init__(self, bin_dir: Path, root: Path, port: int) -> None:
        self.bin_dir, self.root, self.port = bin_dir, root, port
        self._names = itertools.count(1)

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")  # FILE_COPY: fast for a small template
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(_as_postgres(argv), capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise PgUnavailable(f"{what} failed ({result.returncode}): {(result.stderr or result.stdout).strip()[-800:]}")


@contextmanager
def local_postgres(durable: bool = False) -> Iterator[LocalPostgres]:
    """Start a server in a new temporary folder; stop it and remove the folder on leaving. Tests run it without
    fsync (their data is thrown away); ``durable``: PostgreSQL's own defaults, flushed at every commit (benches)."""
    bin_dir = find_bin_dir()
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        raise PgUnavailable("running as root without runuser: cannot start PostgreSQL as the postgres user")
    root = Path(tempfile.mkdtemp(prefix="netgpt-pg-"))  # under /tmp: the postgres user can reach it
    data, port = root / "data", free_port()
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
              "--no-sync", "--locale=C"], "initdb")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=50"
        if not durable:
            options += " -c fsync=off -c full_page_writes=off -c shared_buffers=32MB"
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w",
              "-t", "60", "start"], "pg_ctl start")
        server = LocalPostgres(bin_dir, root, port)
        try:
            yield server
        finally:
            subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)
