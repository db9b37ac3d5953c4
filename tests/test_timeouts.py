"""PostgreSQL lock_timeout / statement_timeout for steps, retries, and the blocking session named.

A real second connection holds ``LOCK TABLE trades IN ACCESS EXCLUSIVE MODE`` in an
open transaction, as a long report or a stuck trading job would.  These are
PostgreSQL features: SQLite has no lock_timeout, so there the flags are accepted and
do nothing (checked at the end).
"""

from __future__ import annotations

import json
import threading

import psycopg
import pytest

from migrator import history
from tests.conftest import cli, rows, table_script, tables_of, tbmigrate, write_script

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
    # The step's line says what it cost: all of its wall time, its attempts and waits.
    assert "attempts," in result.out and "of it waiting for locks)" in result.out
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


def release_after_waits(target, blocker, waits: int = 2, after: float = 0.0) -> threading.Thread:
    """A thread that commits ``blocker`` once tbmigrate's session has started waiting
    for a lock ``waits`` times (each retry's wait is a new query_start), ``after``
    seconds later."""

    def run() -> None:
        seen: set[object] = set()
        with psycopg.connect(target.url, autocommit=True) as probe:
            for _ in range(1200):
                row = probe.execute(
                    "SELECT query_start FROM pg_stat_activity WHERE datname = %s "
                    "AND application_name LIKE 'tbmigrate pid=%%' AND wait_event_type = 'Lock'",
                    [target.name],
                ).fetchone()
                if row:
                    seen.add(row[0])
                if len(seen) >= waits:
                    break
                threading.Event().wait(0.02)
        threading.Event().wait(after)
        blocker.commit()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


NON_ATOMIC_FEE = """
db.execute("CREATE TABLE fee_log (id INTEGER)")
db.execute("INSERT INTO fee_log VALUES (1)")
db.execute("ALTER TABLE trades ADD COLUMN fee NUMERIC")
"""


def test_a_blocked_statement_of_a_non_atomic_step_is_retried_alone(trades):
    """In autocommit a timed-out statement did nothing: it alone is tried again, and the
    statements before it are not run twice."""
    target, scripts = trades
    next(scripts.glob("*-1.0.1-add-fee.py")).unlink()
    write_script(scripts, "1.0.1", "fee", atomic=False, up=NON_ATOMIC_FEE)
    blocker = hold_trades(target)
    releaser = release_after_waits(target, blocker)
    try:
        result = cli(
            "run",
            "--pg-lock-timeout",
            "0.2",
            "--pg-lock-retry-pause",
            "0.05",
            database=target,
            scripts=scripts,
        )
    finally:
        releaser.join()
        blocker.close()
    assert result.returncode == 0, result.stderr
    assert "retry 1 of 30" in result.stdout
    assert "fee" in columns_of(target, "trades")
    assert rows(target, "SELECT id FROM fee_log") == [(1,)]  # not inserted twice
    event = apply_event(target, "1.0.1")
    assert event["outcome"] == "success"
    assert event["details"]["lock_retries"] >= 1
    assert event["details"]["attempts"] == event["details"]["lock_retries"] + 1
    assert event["details"]["blocked_by"][0]["application_name"] == "trading-engine"
    waits = event["details"]["lock_waits"]
    assert waits["count"] == event["details"]["lock_retries"]
    # The step's duration is its whole wall time: the waits are inside it.
    assert event["duration_ms"] >= waits["total_ms"]
    assert [(str(r.version), r.status) for r in history.load(target.alias)][-1] == (
        "1.0.1",
        "applied",
    )


def test_a_non_atomic_step_whose_retries_run_out_is_recorded_failed(trades):
    """What ran before the blocked statement stays, so the step is `failed`, named."""
    target, scripts = trades
    next(scripts.glob("*-1.0.1-add-fee.py")).unlink()
    write_script(scripts, "1.0.1", "fee", atomic=False, up=NON_ATOMIC_FEE)
    blocker = hold_trades(target)
    try:
        result = cli(
            "run",
            "--pg-lock-timeout",
            "0.2",
            "--pg-lock-retries",
            "3",
            "--pg-lock-retry-pause",
            "0.05",
            database=target,
            scripts=scripts,
        )
        blocker_pid = blocker.info.backend_pid
    finally:
        blocker.close()
    assert result.returncode == 1
    assert "lock_timeout (0.2 s, growing to 0.5 s) reached 4 time(s)" in result.stderr
    assert f"blocked by server process {blocker_pid} (application 'trading-engine'" in (
        result.stderr
    )
    assert "it ran outside a transaction" in result.stderr
    assert "recorded as failed" in result.stderr
    assert "retry 3 of 3" in result.stdout and "retry 4" not in result.stdout
    assert "fee_log" in tables_of(target)  # the part that ran stays, hence `failed`
    assert rows(target, "SELECT id FROM fee_log") == [(1,)]
    assert [(str(r.version), r.status) for r in history.load(target.alias)] == [
        ("1.0.0", "applied"),
        ("1.0.1", "failed"),
    ]
    failure = apply_event(target, "1.0.1")
    assert failure["details"]["lock_waits"]["count"] == 4


def invalid_indexes(target) -> list[tuple]:
    return rows(
        target,
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE NOT i.indisvalid",
    )


def hold_a_write(target) -> psycopg.Connection:
    """A writer in an open transaction: CREATE INDEX CONCURRENTLY gets its table lock,
    enters the index in the catalog (INVALID), then waits for this writer to finish."""
    writer = psycopg.connect(target.url, application_name="order-writer")
    writer.execute("INSERT INTO trades VALUES (1, 10)")
    return writer


CONCURRENT_INDEX = 'db.execute("CREATE INDEX CONCURRENTLY trades_price ON trades (price)")'


def hold_a_snapshot(target) -> psycopg.Connection:
    """A long reader of another table: it holds no lock on trades, but CREATE INDEX
    CONCURRENTLY, its index built and still INVALID, waits for its old snapshot."""
    reader = psycopg.connect(target.url, application_name="report-reader")
    reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    reader.execute("SELECT count(*) FROM tbmigrate_applied_migration")
    return reader


def test_a_concurrent_index_that_gives_up_leaves_nothing_invalid(trades):
    """CREATE INDEX CONCURRENTLY blocks nobody while it waits, so it waits patiently, as
    long as the step's retry budget (here 1 s); when it gives up all the same, the INVALID
    index it built is dropped."""
    target, scripts = trades
    next(scripts.glob("*-1.0.1-add-fee.py")).unlink()
    write_script(scripts, "1.0.1", "index-price", atomic=False, up=CONCURRENT_INDEX)
    reader = hold_a_snapshot(target)
    try:
        result = cli(
            "run",
            "--pg-lock-timeout",
            "0.2",
            database=target,
            scripts=scripts,
            env={"TBMIGRATE_PG_LOCK_RETRY_BUDGET": "1"},
        )
        reader_pid = reader.info.backend_pid
    finally:
        reader.close()
    assert result.returncode == 1
    assert "gave up waiting for a lock" in result.stderr
    assert "1.0 s of waiting" in result.stderr  # the budget, not the 0.2 s short wait
    assert f"blocked by server process {reader_pid} (application 'report-reader'" in (result.stderr)
    assert "INVALID" not in result.stderr
    assert invalid_indexes(target) == []  # the failed build's INVALID index dropped
    assert rows(target, "SELECT 1 FROM pg_class WHERE relname = 'trades_price'") == []
    assert [(str(r.version), r.status) for r in history.load(target.alias)][-1] == (
        "1.0.1",
        "failed",
    )


def test_an_invalid_index_that_cannot_be_dropped_is_named(trades):
    """A writer that never ends blocks the index and its DROP alike: the error says which
    INVALID index is left and how to drop it."""
    target, scripts = trades
    next(scripts.glob("*-1.0.1-add-fee.py")).unlink()
    write_script(scripts, "1.0.1", "index-price", atomic=False, up=CONCURRENT_INDEX)
    writer = hold_a_write(target)
    try:
        result = cli(
            "run",
            "--pg-lock-timeout",
            "0.2",
            "--pg-lock-retries",
            "0",
            database=target,
            scripts=scripts,
            env={"TBMIGRATE_PG_LOCK_RETRY_BUDGET": "0.5"},
        )
    finally:
        writer.close()
    assert result.returncode == 1
    assert (
        "it left the INVALID index trades_price, which could not be dropped while blocked: "
        "DROP INDEX CONCURRENTLY trades_price once the blocker has ended"
    ) in result.stderr
    assert invalid_indexes(target) == [("trades_price",)]


def test_a_concurrent_index_waits_for_a_writer_patiently_and_is_valid(trades):
    """Behind a writer's open transaction the index waits (blocking nobody) instead of
    giving up after the short lock wait and building again."""
    target, scripts = trades
    next(scripts.glob("*-1.0.1-add-fee.py")).unlink()
    write_script(scripts, "1.0.1", "index-price", atomic=False, up=CONCURRENT_INDEX)
    writer = hold_a_write(target)
    releaser = release_after_waits(target, writer, waits=1, after=1.0)  # > 0.5 s, the cap
    try:
        result = cli("run", "--pg-lock-timeout", "0.2", database=target, scripts=scripts)
    finally:
        releaser.join()
        writer.close()
    assert result.returncode == 0, result.stderr
    assert "retry" not in result.stdout
    assert invalid_indexes(target) == []
    assert rows(target, "SELECT 1 FROM pg_class WHERE relname = 'trades_price'") == [(1,)]
    assert apply_event(target, "1.0.1")["details"]["attempts"] == 1


def test_a_script_and_a_database_set_their_own_lock_waits(trades, settings):
    """Per script (`lock_timeout`, `lock_retries` at module level) and per database
    (its DATABASES entry's "TBMIGRATE" settings), over the global settings."""
    target, scripts = trades
    settings.TBMIGRATE_SCRIPTS_DIR = str(scripts)
    settings.DATABASES[target.alias]["TBMIGRATE"] = {
        "PG_LOCK_RETRIES": 1,
        "PG_LOCK_RETRY_PAUSE": 0.01,
    }
    blocker = hold_trades(target)
    try:
        by_database = tbmigrate("run", database=target)
        next(scripts.glob("*-1.0.1-add-fee.py")).unlink()
        write_script(
            scripts,
            "1.0.1",
            "add-fee",
            header='lock_timeout = "300ms"\nlock_retries = 2',
            up='db.execute("ALTER TABLE trades ADD COLUMN fee NUMERIC")',
        )
        by_script = tbmigrate("run", database=target)
    finally:
        blocker.close()
        del settings.DATABASES[target.alias]["TBMIGRATE"]
    assert by_database.code == 1
    assert "lock_timeout (0.1 s, growing to 0.15 s) reached 2 time(s)" in by_database.err
    assert by_script.code == 1
    assert "lock_timeout (0.3 s) reached 3 time(s)" in by_script.err
    assert "retry 2 of 2" in by_script.out


def test_the_statement_timeout_bounds_atomic_steps_only(make_database, tmp_path):
    """A long statement in an atomic step holds its locks to the commit: cancelled. A
    non-atomic step is long by design (each batch short): no statement timeout."""
    target = make_database("postgresql")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    write_script(
        scripts, "1.0.0", "slow-outside", atomic=False, up='db.execute("SELECT pg_sleep(0.6)")'
    )
    write_script(scripts, "1.0.1", "slow-inside", up='db.execute("SELECT pg_sleep(0.6)")')
    result = cli(
        "run",
        "--json",
        database=target,
        scripts=scripts,
        env={"TBMIGRATE_PG_STATEMENT_TIMEOUT": "0.3"},
    )
    assert result.returncode == 1
    steps = {step["version"]: step for step in json.loads(result.stdout)["steps"]}
    assert steps["1.0.0"]["outcome"] == "success"
    assert steps["1.0.1"]["outcome"] == "failure"
    assert steps["1.0.1"]["error"].startswith("statement_timeout (0.3 s) reached")
    assert steps["1.0.1"]["attempts"] == 1 and steps["1.0.1"]["lock_wait_ms"] == 0
    assert [str(r.version) for r in history.load(target.alias)] == ["1.0.0"]
