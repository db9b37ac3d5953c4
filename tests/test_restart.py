"""A failure is audited across a real PostgreSQL restart, or kept until the server is back.

PostgreSQL only, on a second cluster this module creates on a port of its own (the shared
server is never stopped): a step is running when the server goes down.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import cli, write_script
from tests.test_concurrency import finish, start

pytestmark = pytest.mark.slow

BIN = Path("/usr/lib/postgresql") / sorted(os.listdir("/usr/lib/postgresql"))[-1] / "bin"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """A PostgreSQL cluster of this test's own, started and stopped at will."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="tbmigrate-pg-", dir="/tmp"))
        postgres = pwd.getpwnam("postgres")
        os.chown(self.base, postgres.pw_uid, postgres.pw_gid)
        self.data = self.base / "data"
        self.port = _free_port()
        self._as_postgres(
            str(BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"
        )
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        log = str(self.base / "server.log")
        self._as_postgres(
            str(BIN / "pg_ctl"), "-D", str(self.data), "-l", log, "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
        )
        shutil.rmtree(self.base, ignore_errors=True)

    def database(self, name: str) -> str:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def server():
    own = Server()
    own.start()
    try:
        yield own
    finally:
        own.remove()


def events(url: str) -> list[tuple[str, str, dict]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT action, outcome, details FROM tbmigrate_audit_event ORDER BY id"
        ).fetchall()


class _Database:
    """What ``tests.conftest.cli_env`` needs of a database."""

    def __init__(self, url: str) -> None:
        self.url = url


def sleeping_step(folder: Path, ready: Path) -> None:
    write_script(
        folder,
        "1.0.0",
        "long",
        up=f"""
        db.execute("CREATE TABLE half_made (id INTEGER)")
        open({str(ready)!r}, "w").close()
        db.execute("SELECT pg_sleep(60)")
        """,
    )


def test_a_failure_during_a_restart_is_audited_once_the_server_is_back(server, tmp_path):
    url = server.database("restart_within")
    folder = tmp_path / "scripts"
    folder.mkdir()
    ready = tmp_path / "ready"
    sleeping_step(folder, ready)
    process = start(
        "run",
        database=_Database(url),
        scripts=folder,
        TBMIGRATE_AUDIT_RETRY_SECONDS="60",
        TBMIGRATE_SPOOL_DIR=str(tmp_path / "spool"),
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    server.stop()
    time.sleep(3)  # the run is retrying its audit event now
    server.start()
    code, _out, err = finish(process)
    assert code == 1
    assert "the connection to the database was lost" in err
    assert "kept in" not in err
    found = [(action, outcome) for action, outcome, _ in events(url)]
    assert ("apply", "failure") in found and ("run", "failure") in found
    assert not (tmp_path / "spool").exists() or not list((tmp_path / "spool").iterdir())
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('half_made')").fetchone() == (None,)
        assert conn.execute("SELECT COUNT(*) FROM tbmigrate_applied_migration").fetchone() == (0,)


def test_a_failure_while_the_server_stays_down_is_kept_and_written_later(server, tmp_path):
    url = server.database("restart_later")
    folder = tmp_path / "scripts"
    folder.mkdir()
    ready = tmp_path / "ready"
    sleeping_step(folder, ready)
    spool = tmp_path / "spool"
    extra = {"TBMIGRATE_AUDIT_RETRY_SECONDS": "2", "TBMIGRATE_SPOOL_DIR": str(spool)}
    process = start("run", database=_Database(url), scripts=folder, **extra)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    server.stop()
    try:
        code, _out, err = finish(process)
    finally:
        server.start()
    assert code == 1
    assert "the database stayed unreachable for 2 s" in err and f"kept in {spool}" in err
    assert len(list(spool.iterdir())) == 1
    assert ("apply", "failure") not in [(a, o) for a, o, _ in events(url)]
    status = cli("status", database=_Database(url), scripts=folder, env=extra)  # type: ignore[arg-type]
    assert status.returncode == 0, status.stderr
    assert "Wrote 2 audit event(s) that an earlier run could not write" in status.stdout
    written = [(a, o, d) for a, o, d in events(url) if d.get("spooled")]
    assert {(a, o) for a, o, _ in written} == {("apply", "failure"), ("run", "failure")}
    assert not list(spool.iterdir())
