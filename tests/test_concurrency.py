"""The migration lock and real faults, with real processes on both databases.

Every test here starts `python manage.py tbmigrate ...` as separate processes (as two
CI jobs or a laptop and a CI job would), so the lock, a SIGKILL and a dropped
connection are the real thing, not a simulation.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from migrator import history, locking
from tests.conftest import (
    PROJECT,
    cli,
    cli_env,
    pg_admin,
    rows,
    snapshot,
    tables_of,
    write_script,
)

pytestmark = pytest.mark.slow


def start(*args: str, database, scripts: Path, **extra: str) -> subprocess.Popen[str]:
    """Start ``tbmigrate ARGS`` as a process and return at once."""
    return subprocess.Popen(
        [sys.executable, str(PROJECT / "manage.py"), "tbmigrate", *args],
        cwd=PROJECT,
        env=cli_env(database, scripts, **extra),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 60) -> None:
    """Wait until a step announces (by creating ``path``) that it is in the middle."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the process ended before the step started:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def wait_until_unlocked(database, timeout: float = 30) -> dict | None:
    """Poll the lock until it is free; return the last holder seen (None when free)."""
    deadline = time.monotonic() + timeout
    holder = locking.is_locked(database.alias)
    while holder is not None and time.monotonic() < deadline:
        time.sleep(0.1)
        holder = locking.is_locked(database.alias)
    return holder


def sleep_code(vendor: str, seconds: float) -> str:
    """A statement that keeps the step busy: server-side on PostgreSQL, in Python on SQLite."""
    if vendor == "postgresql":
        return f'db.execute("SELECT pg_sleep({seconds})")'
    return f"import time\ntime.sleep({seconds})"


def ledger_scripts(
    folder: Path, vendor: str, ready: Path, slow_seconds: float, release: Path | None = None
) -> None:
    """1.0.0 makes a ledger; 1.0.1 (slow, announces itself) and 1.0.2 each add one row.

    With ``release``, 1.0.1 waits until that file exists (at most ``slow_seconds``)."""
    wait = (
        sleep_code(vendor, slow_seconds)
        if release is None
        else f"import os, time\nfor _ in range({int(slow_seconds * 20)}):\n"
        f"    if os.path.exists({str(release)!r}):\n        break\n    time.sleep(0.05)"
    )
    write_script(
        folder,
        "1.0.0",
        "ledger",
        up='db.execute("CREATE TABLE ledger (version VARCHAR(10) NOT NULL)")',
        down='db.execute("DROP TABLE ledger")',
    )
    write_script(
        folder,
        "1.0.1",
        "slow",
        up=f"""
        db.execute("INSERT INTO ledger (version) VALUES (%s)", ["1.0.1"])
        open({str(ready)!r}, "w").close()
        {{wait}}
        """.replace("\n        ", "\n")
        .strip()
        .replace("{wait}", wait),
        down='db.execute("DELETE FROM ledger WHERE version = %s", ["1.0.1"])',
    )
    write_script(
        folder,
        "1.0.2",
        "after",
        up='db.execute("INSERT INTO ledger (version) VALUES (%s)", ["1.0.2"])',
        down='db.execute("DELETE FROM ledger WHERE version = %s", ["1.0.2"])',
    )


def apply_events(database) -> list[tuple[str, str]]:
    return sorted(
        (e["version"], e["outcome"])
        for e in history.events(database.alias)
        if e["action"] == "apply"
    )


def test_two_runs_started_together_apply_every_step_exactly_once(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    ready = tmp_path / "in-the-slow-step"
    ledger_scripts(scripts, target.vendor, ready, slow_seconds=3)
    first = start("run", database=target, scripts=scripts)
    second = start("run", database=target, scripts=scripts)
    results = [finish(first), finish(second)]
    for code, out, err in results:
        assert code == 0, out + err
    outputs = [out + err for _code, out, err in results]
    assert sum(o.count("Applying 1.0.1 slow... OK") for o in outputs) == 1
    assert sorted(r[0] for r in rows(target, "SELECT version FROM ledger")) == ["1.0.1", "1.0.2"]
    assert [str(r.version) for r in history.load(target.alias)] == ["1.0.0", "1.0.1", "1.0.2"]
    assert apply_events(target) == [
        ("1.0.0", "success"),
        ("1.0.1", "success"),
        ("1.0.2", "success"),
    ]
    # The one that lost the race waited, said for whom, and then found nothing left to do.
    (loser,) = [o for o in outputs if "waiting for the migration lock held by" in o]
    winner = first if loser is outputs[1] else second
    assert f"pid {winner.pid}" in loser or f"pid={winner.pid}" in loser
    assert "No migrations to apply; the database is up to date." in loser
    assert wait_until_unlocked(target) is None


def test_a_second_run_gives_up_after_lock_timeout_naming_the_holder(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    ready = tmp_path / "in-the-slow-step"
    ledger_scripts(scripts, target.vendor, ready, slow_seconds=4)
    first = start("run", database=target, scripts=scripts)
    wait_for(ready, first)
    second = cli("run", "--lock-timeout", "0.5", database=target, scripts=scripts)
    assert second.returncode == 1
    message = second.stderr.strip()
    assert message.count("\n") == 0 and "Traceback" not in message
    assert "is being migrated by" in message and "gave up after 0.5 s" in message
    assert f"pid {first.pid}" in message or f"pid={first.pid}" in message
    code, out, err = finish(first)
    assert code == 0, out + err
    assert sorted(r[0] for r in rows(target, "SELECT version FROM ledger")) == ["1.0.1", "1.0.2"]
    assert apply_events(target) == [
        ("1.0.0", "success"),
        ("1.0.1", "success"),
        ("1.0.2", "success"),
    ]


def test_rollback_waits_for_the_lock_too(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    ready = tmp_path / "in-the-slow-step"
    release = tmp_path / "release"
    ledger_scripts(scripts, target.vendor, ready, slow_seconds=120, release=release)
    first = start("run", database=target, scripts=scripts)
    wait_for(ready, first)
    refused = cli(
        "rollback", "--no-input", "--lock-timeout", "0.3", database=target, scripts=scripts
    )
    release.touch()
    assert refused.returncode == 1 and "is being migrated by" in refused.stderr
    assert finish(first)[0] == 0
    # --force: the rollback validation rightly refuses to delete the ledger row otherwise.
    done = cli("rollback", "--no-input", "--force", database=target, scripts=scripts)
    assert done.returncode == 0, done.stderr
    assert [r[0] for r in rows(target, "SELECT version FROM ledger")] == ["1.0.1"]


def test_a_lock_held_by_another_postgresql_session_names_its_application(make_database, tmp_path):
    """Another client (not tbmigrate) holds the advisory lock: the message says who it is."""
    target = make_database("postgresql")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    write_script(scripts, "1.0.0", "never", up='db.execute("CREATE TABLE never_made (id INTEGER)")')
    with psycopg.connect(target.url, autocommit=True, application_name="deploy-job-42") as other:
        other.execute("SELECT pg_advisory_lock(%s)", [locking.PG_LOCK_KEY])
        holder_pid = other.info.backend_pid
        before = snapshot(target)
        result = cli("run", "--lock-timeout", "0.4", database=target, scripts=scripts)
        assert result.returncode == 1
        assert "is being migrated by deploy-job-42" in result.stderr
        assert f"server process {holder_pid}" in result.stderr
        assert snapshot(target) == before  # not even tbmigrate's own tables were created
    assert wait_until_unlocked(target) is None


def test_a_sqlite_lock_held_by_another_process_names_its_pid(make_database, tmp_path):
    """A real process holds ``flock`` on the lock file; tbmigrate reads who it is."""
    target = make_database("sqlite")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    write_script(scripts, "1.0.0", "never", up='db.execute("CREATE TABLE never_made (id INTEGER)")')
    holder_code = (
        "import fcntl, json, os, sys, time\n"
        f"f = open({target.name + '.tbmigrate.lock'!r}, 'a+')\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\n"
        "f.seek(0); f.truncate()\n"
        "f.write(json.dumps({'pid': os.getpid(), 'user': 'ci', 'host': 'runner-7'})); f.flush()\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = cli("run", "--lock-timeout", "0.4", database=target, scripts=scripts)
        assert result.returncode == 1
        assert f"is being migrated by ci, runner-7, pid {holder.pid}" in result.stderr
        assert tables_of(target) == set()
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the flock with the killed process: the next run just works.
    assert cli("run", "--lock-timeout", "5", database=target, scripts=scripts).returncode == 0


def test_sigkill_in_the_middle_of_an_atomic_step_leaves_nothing(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    ready = tmp_path / "in-the-middle"
    write_script(
        scripts,
        "1.0.0",
        "base",
        up='db.execute("CREATE TABLE base (id INTEGER PRIMARY KEY)")',
        down='db.execute("DROP TABLE base")',
    )
    killed_step = write_script(
        scripts,
        "1.0.1",
        "killed",
        up=f"""
        db.execute("CREATE TABLE half_made (id INTEGER PRIMARY KEY, v VARCHAR(10))")
        db.execute("INSERT INTO half_made (id, v) VALUES (1, 'x')")
        db.execute("INSERT INTO base (id) VALUES (1)")
        open({str(ready)!r}, "w").close()
        {sleep_code(target.vendor, 60)}
        """.replace("\n        ", "\n").strip(),
        down='db.execute("DROP TABLE half_made")',
    )
    process = start("run", database=target, scripts=scripts)
    wait_for(ready, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    # The lock died with the process (on PostgreSQL the server notices the dead client
    # even while its backend is inside pg_sleep, thanks to client_connection_check_interval).
    assert wait_until_unlocked(target, timeout=15) is None
    assert "half_made" not in tables_of(target)
    assert rows(target, "SELECT COUNT(*) FROM base") == [(0,)]
    assert [(str(r.version), r.status) for r in history.load(target.alias)] == [
        ("1.0.0", "applied")
    ]
    assert [e["version"] for e in history.events(target.alias) if e["action"] == "apply"] == [
        "1.0.0"
    ]
    # The user fixes nothing but the sleep; the next run applies the step cleanly.
    killed_step.write_text(killed_step.read_text().replace(sleep_code(target.vendor, 60), ""))
    again = cli("run", "--lock-timeout", "5", database=target, scripts=scripts)
    assert again.returncode == 0, again.stdout + again.stderr
    assert rows(target, "SELECT id, v FROM half_made") == [(1, "x")]
    assert [str(r.version) for r in history.load(target.alias)] == ["1.0.0", "1.0.1"]


def terminate(database, process: subprocess.Popen[str]) -> int:
    """``pg_terminate_backend`` the session of tbmigrate process ``process``."""
    with pg_admin() as admin:
        found = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name LIKE %s",
            [database.name, f"tbmigrate pid={process.pid} %"],
        ).fetchall()
        assert len(found) == 1, found
        (backend,) = found[0]
        assert admin.execute("SELECT pg_terminate_backend(%s)", [backend]).fetchone() == (True,)
    return backend


def test_a_terminated_session_fails_clearly_and_the_failure_is_audited(make_database, tmp_path):
    """PostgreSQL only: there is no server session to terminate on SQLite."""
    target = make_database("postgresql")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    ready = tmp_path / "in-the-middle"
    write_script(
        scripts,
        "1.0.0",
        "cut-off",
        up=f"""
        db.execute("CREATE TABLE half_made (id INTEGER)")
        open({str(ready)!r}, "w").close()
        db.execute("SELECT pg_sleep(60)")
        """.replace("\n        ", "\n").strip(),
    )
    process = start("run", database=target, scripts=scripts)
    wait_for(ready, process)
    terminate(target, process)
    code, _out, err = finish(process)
    assert code == 1
    message = err.strip()
    assert message.count("\n") == 0 and "Traceback" not in message
    assert "1.0.0 cut-off failed to apply" in message
    assert "the connection to the database was lost" in message
    assert "rolled back, nothing of it remains" in message
    assert "could not be written" not in message
    assert "half_made" not in tables_of(target)
    assert history.load(target.alias) == []
    (failure,) = [e for e in history.events(target.alias) if e["action"] == "apply"]
    assert failure["outcome"] == "failure" and failure["version"] == "1.0.0"
    assert "terminating connection due to administrator command" in failure["error"]
    assert wait_until_unlocked(target) is None


def test_a_terminated_session_whose_database_stays_unreachable_says_so(make_database, tmp_path):
    """PostgreSQL only.  The database refuses new connections before the session is cut,
    so the failure cannot be audited: the message says so plainly."""
    target = make_database("postgresql")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    ready = tmp_path / "in-the-middle"
    write_script(
        scripts,
        "1.0.0",
        "cut-off",
        up=f"""
        db.execute("CREATE TABLE half_made (id INTEGER)")
        open({str(ready)!r}, "w").close()
        db.execute("SELECT pg_sleep(60)")
        """.replace("\n        ", "\n").strip(),
    )
    spool = tmp_path / "spool"
    process = start(
        "run",
        database=target,
        scripts=scripts,
        TBMIGRATE_AUDIT_RETRY_SECONDS="2",
        TBMIGRATE_SPOOL_DIR=str(spool),
    )
    wait_for(ready, process)
    with pg_admin() as admin:
        admin.execute(f'ALTER DATABASE "{target.name}" WITH ALLOW_CONNECTIONS false')
    try:
        terminate(target, process)
        code, _out, err = finish(process)
    finally:
        with pg_admin() as admin:
            admin.execute(f'ALTER DATABASE "{target.name}" WITH ALLOW_CONNECTIONS true')
    assert code == 1
    message = err.strip()
    assert message.count("\n") == 0 and "Traceback" not in message
    assert "the connection to the database was lost" in message
    assert "the database stayed unreachable for 2 s" in message
    assert "event was kept in " in message and "will be written by the next" in message
    assert "half_made" not in tables_of(target)
    assert [e["action"] for e in history.events(target.alias) if e["action"] == "apply"] == []
    assert history.load(target.alias) == []
    # Reachable again: nothing is recorded as applied, the step is simply pending, and
    # the next command writes the kept failure into the audit log, saying so.
    status = cli(
        "status", database=target, scripts=scripts, env={"TBMIGRATE_SPOOL_DIR": str(spool)}
    )
    assert status.returncode == 0 and "1.0.0    cut-off  pending" in status.stdout
    # The step's failure and the run's own.
    assert "Wrote 2 audit event(s) that an earlier run could not write" in status.stdout
    (event,) = [e for e in history.events(target.alias) if e["action"] == "apply"]
    assert event["outcome"] == "failure" and event["details"]["spooled"] is True
    assert "connection" in event["error"].lower() or "terminat" in event["error"].lower()


def test_as_a_containers_pid_1_sigterm_still_ends_the_run(target, tmp_path):
    """In a container tbmigrate is PID 1, and the kernel ignores a signal PID 1 has no
    handler for: `docker stop` would wait, then SIGKILL.  A run waiting for the lock
    (outside any step) in a PID namespace of its own ends on SIGTERM with 143."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    ready, release = tmp_path / "in-the-slow-step", tmp_path / "release"
    ledger_scripts(scripts, target.vendor, ready, slow_seconds=60, release=release)
    first = start("run", database=target, scripts=scripts)
    try:
        wait_for(ready, first)
        namespaced = subprocess.Popen(
            [
                *("unshare", "--pid", "--fork", "--mount-proc", sys.executable),
                *(str(PROJECT / "manage.py"), "tbmigrate", "run", "--lock-timeout", "60"),
            ],
            cwd=PROJECT,
            env=cli_env(target, scripts),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        children = Path(f"/proc/{namespaced.pid}/task/{namespaced.pid}/children")
        deadline = time.monotonic() + 30
        while not children.read_text().split():
            assert time.monotonic() < deadline and namespaced.poll() is None
            time.sleep(0.02)
        init = int(children.read_text().split()[0])  # PID 1 inside its namespace
        (nspid,) = [
            line
            for line in Path(f"/proc/{init}/status").read_text().splitlines()
            if line.startswith("NSpid:")
        ]
        assert nspid.split()[-1] == "1", nspid  # PID 1 in its own namespace
        # Wait until it waits for the lock (it says so), then stop it as docker would.
        assert namespaced.stdout is not None
        for line in namespaced.stdout:
            if "waiting for the migration lock" in line:
                break
        os.kill(init, signal.SIGTERM)
        code, _out, err = finish(namespaced, timeout=20)
        assert code == 143, err
        assert "interrupted by SIGTERM before any step ran or between steps" in err
    finally:
        release.touch()
        assert finish(first)[0] == 0
    assert sorted(r[0] for r in rows(target, "SELECT version FROM ledger")) == ["1.0.1", "1.0.2"]
