"""``migrator.running.now_running`` and the admin's "Now running" page, against REAL runs held
mid-step in another process, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import getpass
import re
import socket
import time
from pathlib import Path

import psycopg
import pytest

from migrator import running
from tests.conftest import (
    POSTGRES_URL,
    TestDatabase,
    rows,
    table_script,
    tbmigrate,
    with_dbname,
)
from tests.running_support import held_run
from tests.test_admin import text_of

RUNNING = "/admin/migrator/appliedmigration/running/"

# A transactional test case on ``default`` (the admin's users): the target databases are
# made later and are left out of it, so a run in another process is never held up by a
# transaction of the test's own (SQLite would make it wait on our read lock).
pytestmark = pytest.mark.django_db(transaction=True)


def test_nothing_running_is_none_and_the_page_says_so(target, scripts_dir, settings, request):
    table_script(scripts_dir, "1.0.0", "a1")
    assert tbmigrate("run", database=target).code == 0
    assert running.now_running(target.alias) is None
    settings.TBMIGRATE_ADMIN_DATABASE = target.alias
    client = request.getfixturevalue("admin_client")
    html = client.get(RUNNING).content.decode()
    assert "Nothing is running:" in text_of(client.get(RUNNING))
    assert re.search(r'<meta http-equiv="refresh" content="\d+">', html)
    # No external asset: every script, stylesheet and image comes from this server.
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_a_held_atomic_step_shows_its_lock_holder(
    target: TestDatabase, scripts_dir: Path, tmp_path: Path, settings, request
):
    table_script(scripts_dir, "1.0.0", "accounts")
    with held_run(
        target, scripts_dir, tmp_path, work="db.execute(\"INSERT INTO accounts VALUES (1, 'x')\")"
    ) as held:
        now = running.now_running(target.alias)
        assert now is not None and now.running and not now.interrupted
        assert now.holder_pid == held.process.pid
        assert now.holder_host == socket.gethostname()
        if target.vendor == "postgresql":
            # The holder's own session, live: in its step's transaction, last statement ours.
            assert now.session is not None
            assert now.session.state == "idle in transaction"
            assert "INSERT INTO accounts" in now.session.query
            assert now.blocked_by == ()
        else:
            assert now.holder["user"] == getpass.getuser()
        settings.TBMIGRATE_ADMIN_DATABASE = target.alias
        client = request.getfixturevalue("admin_client")
        page = text_of(client.get(RUNNING))
        assert f"Process pid {held.process.pid} on {socket.gethostname()}" in page
        assert re.search(r"Holds the lock since 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC", page)
        assert "not journaled" in page  # an atomic step reports no progress
        assert "Migrating now: apply 1.0.1 held-step" in page  # the holder names its step
        finished = held.release()
    assert finished.returncode == 0, finished.stderr
    assert running.now_running(target.alias) is None


def test_a_step_waiting_on_a_lock_shows_who_blocks_it(
    make_database, scripts_dir: Path, tmp_path: Path, settings, request
):
    target = make_database("postgresql")
    table_script(scripts_dir, "1.0.0", "accounts")
    assert tbmigrate("run", database=target).code == 0

    blocker = psycopg.connect(
        with_dbname(POSTGRES_URL, target.name), application_name="risk-report"
    )
    try:
        blocker.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")  # opens a transaction
        blocker_pid = blocker.info.backend_pid
        with held_run(
            target,
            scripts_dir,
            tmp_path,
            work='db.execute("SELECT COUNT(*) FROM accounts")',
            args=("--pg-lock-timeout", "0"),
            wait_for_marker=False,
        ) as held:
            deadline = time.monotonic() + 60
            now = None
            while time.monotonic() < deadline:
                now = running.now_running(target.alias)
                if now is not None and now.blocked_by:
                    break
                time.sleep(0.1)
            assert now is not None and now.session is not None
            assert now.session.wait.startswith("Lock/")
            assert [s.pid for s in now.blocked_by] == [blocker_pid]
            assert now.blocked_by[0].application_name == "risk-report"
            assert "LOCK TABLE accounts" in now.blocked_by[0].query
            settings.TBMIGRATE_ADMIN_DATABASE = target.alias
            client = request.getfixturevalue("admin_client")
            page = text_of(client.get(RUNNING))
            assert "Blocked right now by" in page and "risk-report" in page
            assert re.search(r"waiting: Lock/\w+", page)
            blocker.rollback()
            finished = held.release()
        assert finished.returncode == 0, finished.stderr
    finally:
        blocker.close()


# -- a journaled step (the contract of the non-atomic journal: in_progress row + progress) ----
PROGRESS = {
    "updates": [
        {
            "table": "fills",
            "key": "id",
            "rows_done": 120000,
            "rows_total": 500000,
            "last_key": 120000,
            "rate": 8500.0,
            "batch_size": 10000,
            "updated_at": "2026-12-01T19:46:17Z",
        }
    ],
    "lock_waits": {"count": 2, "total_ms": 900.0, "longest_ms": 500.0},
    "blocked_by": [
        {
            "pid": 4242,
            "application_name": "risk-report",
            "user": "bob",
            "state": "idle in transaction",
            "xact_start": "2026-12-01T19:40:00Z",
            "query": "LOCK TABLE fills",
        }
    ],
    "attempt": 1,
}


def journal(database: TestDatabase, version: str = "1.0.1", name: str = "backfill-fills") -> None:
    """An ``in_progress`` row as the executor's journal writes it before a non-atomic step."""
    from datetime import UTC, datetime, timedelta

    from migrator.models import AppliedMigration
    from migrator.versions import Version

    now = datetime.now(UTC)
    AppliedMigration.objects.using(database.alias).create(
        version=version,
        sort_key=Version.parse(version).sort_key,
        name=name,
        checksum="0" * 64,
        status=AppliedMigration.IN_PROGRESS,
        applied_at=now,
        direction="up",
        started_at=now - timedelta(minutes=3),
        pid=31337,
        progress=PROGRESS,
        run_id="feedc0ffee123456",
    )


@contextlib.contextmanager
def lock_held_elsewhere(database: TestDatabase):  # type: ignore[no-untyped-def]
    """The migration lock, held by another session (PostgreSQL) or open file (SQLite)."""
    from migrator import locking

    if database.vendor == "postgresql":
        with psycopg.connect(
            with_dbname(POSTGRES_URL, database.name),
            autocommit=True,
            application_name=f"tbmigrate pid=31337 host={socket.gethostname()}",
        ) as session:
            session.execute("SELECT pg_advisory_lock(%s)", [locking.PG_LOCK_KEY])
            yield
            # Unlocked before closing: a closed session's locks go a moment later.
            session.execute("SELECT pg_advisory_unlock(%s)", [locking.PG_LOCK_KEY])
    else:
        with locking.migration_lock(database.alias, timeout=0):
            yield


def test_a_journaled_step_without_a_lock_holder_is_interrupted_with_how_far_it_got(
    target, scripts_dir, settings, request
):
    table_script(scripts_dir, "1.0.0", "a1")
    assert tbmigrate("run", database=target).code == 0
    journal(target)
    now = running.now_running(target.alias, {"1.0.1": "contract"})
    assert now is not None and now.interrupted and not now.running
    (step,) = now.steps
    assert (step.label, step.action, step.phase, step.pid) == (
        "1.0.1 backfill-fills",
        "apply",
        "contract",
        31337,
    )
    (update,) = step.updates
    assert update.percent == 24.0 and round(update.seconds_left or 0) == 45
    assert step.lock_waits == running.LockWaits(2, 900.0, 500.0)
    assert [b.pid for b in step.blocked_by] == [4242]
    settings.TBMIGRATE_ADMIN_DATABASE = target.alias
    client = request.getfixturevalue("admin_client")
    page = text_of(client.get(RUNNING))
    assert "Interrupted" in page and "tbmigrate repair VERSION" in page
    assert "fills (by id) 120,000 500,000 24.0 % 8,500 rows/s 45 s 10,000 120000" in page
    assert "2026-12-01 19:46:17 UTC" in page  # the progress's own time, as every time
    assert "Lock waits so far: 2 , 900 ms in all, the longest 500 ms." in page
    assert "4242 risk-report bob idle in transaction 2026-12-01 19:40:00 UTC LOCK TABLE fills" in (
        page
    )
    # The history row's page shows the journal too, and links here.
    (pk,) = [
        r[0]
        for r in rows(target, "SELECT id FROM tbmigrate_applied_migration WHERE version = '1.0.1'")
    ]
    detail = text_of(client.get(f"/admin/migrator/appliedmigration/{pk}/change/"))
    assert "In progress" in detail and "rows of fills 120,000 of 500,000" in detail


def test_a_journaled_step_while_the_lock_is_held_is_running(target, scripts_dir, settings, request):
    table_script(scripts_dir, "1.0.0", "a1")
    assert tbmigrate("run", database=target).code == 0
    journal(target)
    settings.TBMIGRATE_ADMIN_DATABASE = target.alias
    client = request.getfixturevalue("admin_client")
    with lock_held_elsewhere(target):
        now = running.now_running(target.alias)
        assert now is not None and now.running and not now.interrupted
        assert now.step_label == "1.0.1 backfill-fills" and now.action == "apply"
        page = text_of(client.get(RUNNING))
        assert "Migrating now: apply 1.0.1 backfill-fills" in page
        assert "1.0.1 backfill-fills: apply in progress" in page and "Interrupted" not in page
        runs = client.get("/admin/migrator/auditevent/runs/").content.decode()
        assert "feedc0ffee123456" not in runs  # the journal's run has no event yet
    assert running.now_running(target.alias).interrupted


# -- the real journal: a non-atomic batched_update, in another process ----------------------
BACKFILL = """
db.execute(
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000) "
    "INSERT INTO accounts (id, label) SELECT i, 'a' FROM n"
)
db.batched_update("accounts", "label = 'b'", batch_size=10000, pause=1.0, progress=False)
"""


def wait_for(what, timeout: float = 60):  # type: ignore[no-untyped-def]
    """Poll ``what()`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not seen within {timeout} s")


def mid_backfill(alias: str):  # type: ignore[no-untyped-def]
    now = running.now_running(alias)
    if now and now.steps and now.steps[0].updates:
        update = now.steps[0].updates[0]
        if 0 < update.rows_done < 50000:
            return now
    return None


def test_a_real_batched_update_reports_how_far_it_got_while_it_runs(
    target, scripts_dir, tmp_path, settings, request
):
    table_script(scripts_dir, "1.0.0", "accounts")
    assert tbmigrate("run", database=target).code == 0  # tbmigrate's tables made beforehand
    with held_run(
        target,
        scripts_dir,
        tmp_path,
        name="backfill-labels",
        work=BACKFILL,
        atomic=False,
        wait_for_marker=False,
    ) as held:
        now = wait_for(lambda: mid_backfill(target.alias))
        assert now.running and not now.interrupted
        (step,) = now.steps
        assert (step.label, step.action, step.phase, step.pid) == (
            "1.0.1 backfill-labels",
            "apply",
            "",  # no phases given: the history does not know the script's
            held.process.pid,
        )
        (update,) = step.updates
        assert (update.table, update.key, update.batch_size) == ("accounts", "id", 10000)
        assert update.rows_done % 10000 == 0 and update.last_key == update.rows_done
        assert update.rate and update.rate > 0 and update.updated_at is not None
        assert now.step_label == "1.0.1 backfill-labels"
        settings.TBMIGRATE_ADMIN_DATABASE = target.alias
        client = request.getfixturevalue("admin_client")
        page = text_of(client.get(RUNNING))
        assert "Migrating now: apply 1.0.1 backfill-labels" in page
        assert "1.0.1 backfill-labels: apply in progress" in page
        assert "Phase expand" in page  # from the scripts folder the admin reads
        assert re.search(r"accounts \(by id\) [1-4]0,000 unknown .* rows/s", page)
        assert "not journaled" not in page
        finished = held.release()
    assert finished.returncode == 0, finished.stderr
    assert running.now_running(target.alias) is None


def test_a_killed_batched_update_is_interrupted_with_how_far_it_got(
    target, scripts_dir, tmp_path, settings, request
):
    import signal

    table_script(scripts_dir, "1.0.0", "accounts")
    assert tbmigrate("run", database=target).code == 0  # tbmigrate's tables made beforehand
    with held_run(
        target,
        scripts_dir,
        tmp_path,
        name="backfill-labels",
        work=BACKFILL,
        atomic=False,
        wait_for_marker=False,
    ) as held:
        seen = wait_for(lambda: mid_backfill(target.alias))
        held.process.send_signal(signal.SIGKILL)  # no handler, no cleanup: the process is gone
        held.process.wait(timeout=30)
        now = wait_for(lambda: (n := running.now_running(target.alias)) and n.interrupted and n)
    (step,) = now.steps
    assert step.updates[0].rows_done >= seen.steps[0].updates[0].rows_done
    assert step.updates[0].rows_done < 50000
    settings.TBMIGRATE_ADMIN_DATABASE = target.alias
    client = request.getfixturevalue("admin_client")
    page = text_of(client.get(RUNNING))
    assert "Interrupted" in page and "1.0.1 backfill-labels: apply (interrupted)" in page
    assert f"{step.updates[0].rows_done:,}" in page
