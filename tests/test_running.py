"""``migrator.running.now_running`` and the admin's "Now running" page, against REAL runs held
mid-step in another process, on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
import re
import socket
import time
from pathlib import Path

import psycopg
import pytest

from migrator import running
from tests.conftest import POSTGRES_URL, TestDatabase, table_script, tbmigrate, with_dbname
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
