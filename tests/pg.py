"""A private PostgreSQL 15 server for tests, from Debian's binaries (nothing is installed here).

The server runs as the unprivileged user ``nobody`` when the tests run as root (PostgreSQL refuses root),
in a fresh temporary folder, listening only on a Unix socket in that folder; it is stopped (``-m fast``)
and removed after the session. Without the binaries the tests that need it skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def _pg_bin() -> Path:
    """Debian's PostgreSQL 15 binaries (or another installed major version; ``UME_MMA_PG_BIN`` overrides)."""
    if "UME_MMA_PG_BIN" in os.environ:
        return Path(os.environ["UME_MMA_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    preferred = Path("/usr/lib/postgresql/15/bin")
    return preferred if (preferred / "initdb").is_file() or not found else found[-1].parent


PG_BIN = _pg_bin()
PORT = 54329
USER = "ume"


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *cmd] if os.geteuid() == 0 else cmd


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return False


class PgServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@/{database}?host={self.root}&port={PORT}"

    def init(self) -> None:
        """initdb: a new cluster in ``root/data`` (trust authentication for the user ``ume``)."""
        cmd = [str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", USER]
        subprocess.run(_as_server_user(cmd), check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        """Start (and wait for) the server: Unix socket in ``root`` only, no TCP, fsync on."""
        opts = f"-k {self.root} -p {PORT} -c listen_addresses='' -c fsync=on"
        pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w"]
        subprocess.run(_as_server_user([*pg_ctl, "start"]), check=True, capture_output=True, text=True, timeout=120)

    def stop(self) -> None:
        subprocess.run(
            _as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "stop", "-m", "fast"]),
            capture_output=True,
            timeout=60,
        )

    def kill(self) -> None:
        """SIGKILL the postmaster and every server process (as a crash or power cut would end them)."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        for p in [pid, *map(int, children)]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        for p in [pid, *map(int, children)]:
            while _alive(p) and time.monotonic() < deadline:
                time.sleep(0.05)
        # A killed postmaster may stay a zombie here (nothing reaps it), which PostgreSQL would take for a
        # running server: remove its lock files, as an administrator does after a crash.
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        (self.root / f".s.PGSQL.{PORT}.lock").unlink(missing_ok=True)

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host=str(self.root), port=PORT, user=USER, dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A running private PostgreSQL 15 (skips when its binaries are not installed)."""
    yield from private_server()


def private_server() -> Iterator[PgServer]:
    """Init and start a server in a new temporary folder; stop and remove it when resumed."""
    if not (PG_BIN / "initdb").is_file():
        pytest.skip(f"PostgreSQL 15 is not installed ({PG_BIN}/initdb missing; scripts/setup.sh installs it)")
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed (pip install -r requirements.txt)")
    root = Path(tempfile.mkdtemp(prefix="ume-pg-"))  # short path: a Unix socket path must stay < 108 bytes
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
    server = PgServer(root)
    try:
        server.init()
        server.start()
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr or exc.stdout}")
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """The URL of a fresh, empty database on the private server."""
    return pg_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path | None]:
    """(database URL or path, media folder) for both back-ends: tests using it run on each."""
    if request.param == "sqlite":
        return str(tmp_path / "annotations.db"), None
    return request.getfixturevalue("pg_url"), tmp_path / "media"
