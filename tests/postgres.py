"""A real PostgreSQL server for the tests: Debian's binaries, a free port, a temporary directory.

``postgres_server`` (session scope) runs ``initdb`` and ``pg_ctl start`` in a fresh
directory, listening on 127.0.0.1 only, with password (SCRAM) authentication over TCP,
and stops it with ``pg_ctl stop`` at the session's end (tests/leaks.py fails a run that
leaves it running). Both programs refuse to run as root: as root they run as the
``postgres`` user the package creates, and the directory is handed to it.

Missing binaries skip the tests on a developer machine and FAIL them when ``CI`` is set,
as tests/promtools.py does for Prometheus. ``GENOPS_TEST_WITHOUT=postgresql`` makes them
count as missing. Install: ``apt-get install postgresql`` (Debian/Ubuntu).
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.promtools import WITHOUT_VARIABLE
from tests.support import free_port

USER = "postgres"
_INSTALL_HINT = "apt-get install postgresql (Debian/Ubuntu)"
_TIMEOUT = 120   # seconds for initdb, start and stop each


def binaries() -> Path:
    """The newest installed PostgreSQL's bin directory, or skip/fail the calling test."""
    hidden = {part.strip() for part in os.environ.get(WITHOUT_VARIABLE, "").split(",")}
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(Path(path).parent.parent.name) if Path(path).parent.parent.name.isdigit()
                   else 0)
    if found and "postgresql" not in hidden:
        return Path(found[-1]).parent
    message = f"PostgreSQL's initdb and pg_ctl not found; install: {_INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(f"{message}. CI is set, so the PostgreSQL tests must run, not skip.", pytrace=False)
    pytest.skip(message)


@dataclass
class PostgresServer:
    bin: Path
    root: Path
    port: int
    password: str
    as_user: list[str]

    @property
    def data(self) -> Path:
        return self.root / "data"

    def dsn(self, database: str = "postgres", password: str | None = None) -> str:
        return (f"postgresql://{USER}:{self.password if password is None else password}"
                f"@127.0.0.1:{self.port}/{database}?sslmode=disable")

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.as_user + [str(self.bin / args[0]), *args[1:]], capture_output=True,
                              text=True, timeout=_TIMEOUT, check=False, cwd=self.root)

    def create_database(self) -> str:
        """A new, empty database; returns its DSN."""
        import asyncpg

        name = f"ledger_{secrets.token_hex(6)}"

        async def create():
            connection = await asyncpg.connect(self.dsn())
            try:
                await connection.execute(f"CREATE DATABASE {name}")
            finally:
                await connection.close()

        asyncio.run(create())
        return self.dsn(name)


def _check(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}): {result.stdout[-2000:]} {result.stderr[-2000:]}")


@pytest.fixture(scope="session")
def postgres_server():
    bin_dir = binaries()
    root = Path(tempfile.mkdtemp(prefix="genops-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        account = pwd.getpwnam(USER)
        os.chown(root, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", USER, "--"]
    password = secrets.token_urlsafe(18)
    server = PostgresServer(bin_dir, root, free_port(), password, as_user)
    password_file = root / "password"
    password_file.write_text(password + "\n", encoding="utf-8")
    if as_user:
        os.chown(password_file, account.pw_uid, account.pw_gid)
    started = False
    try:
        _check(server.run("initdb", "-D", str(server.data), "-U", USER, "--auth-local=trust",
                          "--auth-host=scram-sha-256", f"--pwfile={password_file}", "-E", "UTF8",
                          "--no-sync", "--no-instructions"), "initdb")
        options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -k {root} -c fsync=off "
                   "-c synchronous_commit=off -c max_connections=60")
        result = server.run("pg_ctl", "start", "-D", str(server.data), "-o", options,
                            "-l", str(root / "server.log"), "-w", "-t", str(_TIMEOUT))
        started = True
        _check(result, "pg_ctl start")
        yield server
    finally:
        if started:
            _check(server.run("pg_ctl", "stop", "-D", str(server.data), "-m", "fast", "-w",
                              "-t", str(_TIMEOUT)), "pg_ctl stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_dsn(postgres_server) -> str:
    """The DSN of a fresh database on the session's server, for one test."""
    return postgres_server.create_database()
