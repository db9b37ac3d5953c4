"""PostgreSQL lock_timeout / statement_timeout for steps, retries, and the blocking session named.

A real second connection holds ``LOCK TABLE trades IN ACCESS EXCLUSIVE MODE`` in an
open transaction, as a long report or a stuck trading job would.  These are
PostgreSQL features: SQLite has no lock_timeout, so there the flags are accepted and
do nothing (checked at the end).
"""

from __future__ import annotations

import threading

import psycopg
import pytest

from migrator import history
from tests.conftest import cli, table_script, tables_of, tbmigrate, write_script

pytestmark = pytest.mark.slow


@pytest.fixture
def trades(make_database, tmp_path):
    """A PostgreSQL database with a `trades` table, and a script that alters it."""
    target = make_database("postgresql")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    write_script(
        scripts,
        "1.0.0",
        "trades",
        up='db.execute("CREATE TABLE trades (id INTEGER PRIMARY KEY, price NUMERIC)")',
    )
    assert cli("run", database=target, scripts=scripts).returncode == 0
    write_script(
        scripts,
        "1.0.1",
        "add-fee",
        up='db.execute("ALTER TABLE trades ADD COLUMN fee NUMERIC")',
        down='db.execute("ALTER TABLE trades DROP COLUMN fee")',
    )
    return target, scripts


def columns_of(target, table: str) -> list[str]:
    from django.db import connections

    connection = connections[target.alias]
    with connection.cursor() as cursor:
        return [c.name for c in connection.introspection.get_table_description(cursor, table)]


def hold_trades(target) -> psycopg.Connection:
    """Another session, in an open transaction, holding the strongest lock on trades."""
    blocker = psycopg.connect(target.url, application_name="trading-engine")
    blocker.execute("LOCK TABLE trades IN ACCESS EXCLUSIVE MODE")
    return blocker


def apply_event(target, version):
    return next(
        e
        for e in history.events(target.alias)
        if e["action"] == "apply" and e["version"] == version
    )


def test_a_blocked_step_fails_fast_naming_the_blocking_session(trades):
    target, scripts = trades
    blocker = hold_trades(target)
    try:
        result = cli(
            "run",
            "--pg-lock-timeout",
            "0.5",
            "--pg-lock-retries",
            "2",
            "--pg-lock-retry-pause",
            "0.2",
            database=target,
            scripts=scripts,
        )
        blocker_pid = blocker.info.backend_pid
    finally:
        blocker.close()
    assert result.returncode == 1
    message = result.stderr.strip()
    assert message.count("\n") == 0 and "Traceback" not in message
    assert "1.0.1 add-fee failed to apply: gave up waiting for a lock" in message
    assert "lock_timeout (0.5 s) reached 3 time(s)" in message
    assert f"blocked by server process {blocker_pid} (application 'trading-engine'" in message
    assert "idle in transaction" in message
    assert "last query: LOCK TABLE trades IN ACCESS EXCLUSIVE MODE" in message
    assert f"SELECT pg_terminate_backend({blocker_pid})" in message
    assert "retry 1 of 2" in result.stdout and "retry 2 of 2" in result.stdout
    assert "fee" not in columns_of(target, "trades")
    assert [str(r.version) for r in history.load(target.alias)] == ["1.0.0"]
    event = apply_event(target, "1.0.1")
    assert event["outcome"] == "failure"
    assert event["details"]["lock_retries"] == 2
    assert event["details"]["blocked_by"][0]["pid"] == blocker_pid
    assert event["details"]["blocked_by"][0]["application_name"] == "trading-engine"


def test_a_step_retried_after_the_blocker_lets_go_succeeds_and_counts_its_retries(trades, settings):
    """Settings instead of flags; the blocker commits while the step is between retries."""
    target, scripts = trades
    settings.TBMIGRATE_SCRIPTS_DIR = str(scripts)
    settings.TBMIGRATE_PG_LOCK_TIMEOUT = 0.3
    settings.TBMIGRATE_PG_LOCK_RETRIES = 20
    settings.TBMIGRATE_PG_LOCK_RETRY_PAUSE = 0.2
    blocker = hold_trades(target)

    def release_after_a_retry() -> None:
        """Commit once the step has waited, timed out and started waiting again."""
        seen: set[object] = set()
        with psycopg.connect(target.url, autocommit=True) as probe:
            for _ in range(600):
                row = probe.execute(
                    "SELECT query_start FROM pg_stat_activity WHERE datname = %s "
                    "AND application_name LIKE 'tbmigrate pid=%%' AND wait_event_type = 'Lock'",
                    [target.name],
                ).fetchone()
                if row:
                    seen.add(row[0])
                if len(seen) >= 2:
                    break
                threading.Event().wait(0.05)
        blocker.commit()

    releaser = threading.Thread(target=release_after_a_retry)
    releaser.start()
    try:
        result = tbmigrate("run", database=target)
    finally:
        releaser.join()
        blocker.close()
    assert result.code == 0, result.err
    assert "retry 1 of 20" in result.out
    assert "fee" in columns_of(target, "trades")
    event = apply_event(target, "1.0.1")
    assert event["outcome"] == "success"
    assert 1 <= event["details"]["lock_retries"] <= 20
    assert event["details"]["blocked_by"][0]["application_name"] == "trading-engine"
    assert event["statements"][-1]["sql"] == "ALTER TABLE trades ADD COLUMN fee NUMERIC"


def test_statement_timeout_cancels_a_long_statement_without_retrying(make_database, tmp_path):
    target = make_database("postgresql")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    write_script(
        scripts,
        "1.0.0",
        "slow",
        up='db.execute("CREATE TABLE never_kept (id INTEGER)")\ndb.execute("SELECT pg_sleep(30)")',
    )
    result = cli("run", "--pg-statement-timeout", "0.3", database=target, scripts=scripts)
    assert result.returncode == 1
    assert "1.0.0 slow failed to apply: statement_timeout (0.3 s) reached" in result.stderr
    assert "raise --pg-statement-timeout" in result.stderr
    assert "retry" not in result.stdout
    event = apply_event(target, "1.0.0")
    assert "lock_retries" not in event["details"]
    assert "never_kept" not in tables_of(target)


def test_timeout_flags_are_checked_and_do_nothing_on_sqlite(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "a1")
    bad = cli("run", "--pg-lock-timeout", "-1", database=target, scripts=scripts)
    assert bad.returncode == 2 and "--pg-lock-timeout must be 0 or more" in bad.stderr
    ok = cli(
        "run",
        "--pg-lock-timeout",
        "0",
        "--pg-statement-timeout",
        "60",
        database=target,
        scripts=scripts,
    )
    assert ok.returncode == 0, ok.stderr
    statements = apply_event(target, "1.0.0")["statements"]
    assert [s["sql"] for s in statements][-1].startswith("CREATE TABLE a1")


def test_a_blocked_non_atomic_step_is_not_retried_and_is_recorded_failed(trades):
    """Part of a non-atomic step may have run, so it is never retried: it fails, named."""
    target, scripts = trades
    next(scripts.glob("*-1.0.1-add-fee.py")).unlink()
    write_script(
        scripts,
        "1.0.1",
        "index-fee",
        atomic=False,
        up="""
        db.execute("CREATE TABLE fee_log (id INTEGER)")
        db.execute("ALTER TABLE trades ADD COLUMN fee NUMERIC")
        """,
    )
    blocker = hold_trades(target)
    try:
        result = cli(
            "run",
            "--pg-lock-timeout",
            "0.5",
            "--pg-lock-retries",
            "3",
            database=target,
            scripts=scripts,
        )
        blocker_pid = blocker.info.backend_pid
    finally:
        blocker.close()
    assert result.returncode == 1
    assert "lock_timeout (0.5 s) reached 1 time(s)" in result.stderr
    assert f"blocked by server process {blocker_pid} (application 'trading-engine'" in (
        result.stderr
    )
    assert "it ran outside a transaction" in result.stderr
    assert "recorded as failed" in result.stderr
    assert "retry" not in result.stdout
    assert "fee_log" in tables_of(target)  # the part that ran stays, hence `failed`
    assert [(str(r.version), r.status) for r in history.load(target.alias)] == [
        ("1.0.0", "applied"),
        ("1.0.1", "failed"),
    ]
