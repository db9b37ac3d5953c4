"""The recipes behind a real blocking session (PostgreSQL only: SQLite has no lock waits
to time out, one writer waits for the other).

Another connection holds ``LOCK TABLE trades IN ACCESS EXCLUSIVE MODE`` in an open
transaction, as a long report or a stuck job would, and lets go once tbmigrate has waited
for it twice (``release_after_waits``): each helper's statement gave up at the short lock
timeout, was retried alone, and the step succeeds with the end state it promises.  A
``batched_update`` behind a row lock halves its next batch.
"""

from __future__ import annotations

import json
import threading

import psycopg
import pytest
from django.db import connections

from migrator import recipes
from migrator.database import Database
from tests.conftest import rows, tbmigrate, write_script
from tests.test_timeouts import apply_event, hold_trades, release_after_waits

pytestmark = pytest.mark.slow

LOCK_FLAGS = ("--pg-lock-timeout", "0.2", "--pg-lock-retry-pause", "0.05")


@pytest.fixture
def trading(make_database, scripts_dir):
    """A PostgreSQL database with orders and trades (and rows), as a script made them."""
    target = make_database("postgresql")
    write_script(
        scripts_dir,
        "1.0.0",
        "tables",
        up="""
db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, fee INTEGER)")
db.execute("CREATE TABLE trades (id INTEGER PRIMARY KEY, order_id INTEGER, price INTEGER, "
           "note VARCHAR(20))")
db.execute("INSERT INTO orders SELECT i, i FROM generate_series(1, 10) AS i")
db.execute("INSERT INTO trades SELECT i, 1 + mod(i, 10), i, 'n' FROM generate_series(1, 1000) AS i")
""",
    )
    assert tbmigrate("run", database=target).code == 0
    return target, Database(connections[target.alias])


def _constraint_validated(db, name):
    found = recipes.pg_constraint(db, "trades", name)
    return found is not None and found.validated


CASES = {
    "set_not_null": (
        'db.set_not_null("trades", "price")',
        lambda db: (
            recipes.column_not_null(db, "trades", "price") is True
            and recipes.pg_constraint(db, "trades", "trades_price_not_null_check") is None
        ),
    ),
    "add_check": (
        'db.add_check("trades", "trades_price_positive", "price > 0")',
        lambda db: _constraint_validated(db, "trades_price_positive"),
    ),
    "add_foreign_key": (
        'db.add_foreign_key("trades", ["order_id"], "orders")',
        lambda db: _constraint_validated(db, "trades_order_id_fkey"),
    ),
    "create_index": (
        'db.create_index("trades", ["price"], concurrently=True)',
        lambda db: (found := recipes.index(db, "trades_price_idx")) is not None and found.valid,
    ),
    "drop_column": (
        'db.drop_column("trades", "note")',
        lambda db: recipes.column_not_null(db, "trades", "note") is None,
    ),
    "rename_column": (
        'db.rename_column("trades", "note", "remark")',
        lambda db: recipes.column_not_null(db, "trades", "remark") is not None,
    ),
    "rename_table": (
        'db.rename_table("trades", "fills")',
        lambda db: recipes.table_exists(db, "fills") and not recipes.table_exists(db, "trades"),
    ),
}


@pytest.mark.parametrize("helper", list(CASES))
def test_a_helper_behind_a_blocking_session_is_retried_and_succeeds(trading, scripts_dir, helper):
    target, db = trading
    up, done = CASES[helper]
    write_script(scripts_dir, "1.0.1", helper.replace("_", "-"), up=up, atomic=False)
    blocker = hold_trades(target)
    # CREATE INDEX CONCURRENTLY waits patiently (its lock blocks nobody while it waits):
    # one long wait, no retry; the others time out after 0.2 s and are retried.
    patient = helper == "create_index"
    releaser = (
        release_after_waits(target, blocker, waits=1, after=1.0)
        if patient
        else release_after_waits(target, blocker)
    )
    try:
        result = tbmigrate("run", *LOCK_FLAGS, database=target)
    finally:
        releaser.join()
        blocker.close()
    assert result.code == 0, result.err
    assert done(db)
    event = apply_event(target, "1.0.1")
    if patient:
        assert "retry" not in result.out and event["details"]["attempts"] == 1
        return
    assert "retry 1 of 30" in result.out
    assert event["details"]["lock_retries"] >= 1
    assert event["details"]["blocked_by"][0]["application_name"] == "trading-engine"
    assert rows(target, "SELECT COUNT(*) FROM orders") == [(10,)]


def test_in_an_atomic_step_the_whole_step_is_retried(trading, scripts_dir):
    target, db = trading
    write_script(
        scripts_dir,
        "1.0.1",
        "fee-and-fk",
        up='db.set_not_null("orders", "fee")\ndb.add_foreign_key("trades", ["order_id"], "orders")',
    )
    blocker = hold_trades(target)
    releaser = release_after_waits(target, blocker)
    try:
        result = tbmigrate("run", *LOCK_FLAGS, database=target)
    finally:
        releaser.join()
        blocker.close()
    assert result.code == 0, result.err
    assert recipes.column_not_null(db, "orders", "fee") is True
    assert _constraint_validated(db, "trades_order_id_fkey")
    event = apply_event(target, "1.0.1")
    assert event["details"]["attempts"] >= 2
    # the successful attempt ran every statement of both recipes once, in one transaction
    sent = [s["sql"] for s in event["statements"] if s["sql"].startswith("ALTER")]
    assert len(sent) == 6, sent


def test_a_concurrent_index_that_gives_up_leaves_nothing_invalid(trading, scripts_dir, settings):
    """A long reader's snapshot holds CREATE INDEX CONCURRENTLY at its last phase; when its
    patient wait (the retry budget, 1 s here) runs out, the helper's INVALID index is gone,
    and a rerun later builds it."""
    target, db = trading
    settings.TBMIGRATE_PG_LOCK_RETRY_BUDGET = 1
    write_script(
        scripts_dir,
        "1.0.1",
        "index-price",
        up='db.create_index("trades", ["price"], name="trades_price", concurrently=True)',
        down='db.drop_index("trades_price", concurrently=True)',
        atomic=False,
    )
    reader = psycopg.connect(target.url, application_name="report-reader")
    reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    reader.execute("SELECT count(*) FROM orders")
    try:
        result = tbmigrate("run", *LOCK_FLAGS, "--pg-lock-retries", "1", database=target)
    finally:
        reader.close()
    assert result.code == 1
    assert "reached 1 time(s)" in result.err
    assert "1 s, PG_LOCK_RETRY_BUDGET, for a statement whose lock blocks no reader" in result.err
    assert recipes.index(db, "trades_price") is None
    assert tbmigrate("repair", "1.0.1", "--no-input", database=target).code == 0
    assert tbmigrate("run", database=target).code == 0
    found = recipes.index(db, "trades_price")
    assert found is not None and found.valid


def test_lock_waits_halve_the_next_batch(trading, scripts_dir):
    """A trade held FOR UPDATE by another session: the batch that reaches it times out and
    is retried; once it gets through, the next batch is at most half its size.  The batches
    are read from the UPDATE statements the audit event keeps (their key bounds)."""
    target, _db = trading
    write_script(
        scripts_dir,
        "1.0.1",
        "backfill",
        up='db.batched_update("trades", "price = price + 1", batch_size=50, '
        "target_batch_seconds=1.0, progress=False)",
        atomic=False,
    )
    blocker = psycopg.connect(target.url, application_name="trading-engine")
    blocker.execute("SELECT * FROM trades WHERE id = 700 FOR UPDATE")
    releaser = release_after_waits(target, blocker)
    try:
        result = tbmigrate("run", *LOCK_FLAGS, database=target)
    finally:
        releaser.join()
        blocker.close()
    assert result.code == 0, result.err
    assert rows(target, "SELECT COUNT(*) FROM trades WHERE price = id + 1") == [(1000,)]
    event = apply_event(target, "1.0.1")
    assert event["details"]["lock_retries"] >= 1
    statements = event["statements"]
    if isinstance(statements, str):
        statements = json.loads(statements)
    bounds = []  # (after, upper) of each UPDATE sent, retries included
    for statement in statements:
        if statement["sql"].startswith("UPDATE"):
            params = statement["params"]
            bounds.append((0, params[0]) if len(params) == 1 else (params[0], params[1]))
    batches = list(dict.fromkeys(bounds))  # each batch once, in order
    sizes = [upper - after for after, upper in batches]
    blocked = next(i for i, (after, upper) in enumerate(batches) if after < 700 <= upper)
    assert bounds.count(batches[blocked]) >= 2  # timed out at least once, then got through
    assert sizes[blocked + 1] <= sizes[blocked] // 2, sizes
    assert sizes[0] == 50 and sizes[blocked] > 50, sizes  # it had grown before


def test_validate_waits_patiently_behind_a_vacuum_like_lock_and_queues_no_writer(
    trading, scripts_dir
):
    """A session holds SHARE UPDATE EXCLUSIVE on trades, as (auto)vacuum does.  VALIDATE
    asks for the same lock: it waits, without timing out every 0.2 s (autovacuum would
    yield to it only after 1 s), and while it waits another session's writes to trades go
    through.  Here the NOT VALID constraint is already there, as an interrupted run left
    it, so VALIDATE is the first statement to wait."""
    target, db = trading
    db.execute(
        "ALTER TABLE trades ADD CONSTRAINT trades_price_positive CHECK (price > 0) NOT VALID"
    )
    write_script(
        scripts_dir,
        "1.0.1",
        "price-check",
        up='db.add_check("trades", "trades_price_positive", "price > 0")',
        atomic=False,
    )
    vacuum = psycopg.connect(target.url, application_name="vacuum-like")
    vacuum.execute("LOCK TABLE trades IN SHARE UPDATE EXCLUSIVE MODE")
    wrote: list[object] = []

    def write_then_release() -> None:
        with psycopg.connect(target.url, autocommit=True) as probe:
            first = None
            for _ in range(600):
                row = probe.execute(
                    "SELECT query_start, now() - query_start > interval '1 second' "
                    "FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
                    "AND query LIKE %s",
                    [target.name, "%VALIDATE CONSTRAINT%"],
                ).fetchone()
                if row:
                    first = first or row[0]
                    if row[1]:
                        break
                threading.Event().wait(0.05)
            with psycopg.connect(target.url, autocommit=True) as writer:
                writer.execute("SET statement_timeout = '5s'")
                writer.execute("UPDATE trades SET price = price + 1 WHERE id = 1")
                wrote.append(first)
        vacuum.commit()

    releaser = threading.Thread(target=write_then_release)
    releaser.start()
    try:
        result = tbmigrate("run", *LOCK_FLAGS, database=target)
    finally:
        releaser.join()
        vacuum.close()
    assert result.code == 0, result.err
    assert wrote and wrote[0] is not None  # a writer got through while VALIDATE waited
    assert _constraint_validated(db, "trades_price_positive")
    event = apply_event(target, "1.0.1")
    assert "lock_retries" not in event["details"]  # one wait, never timed out
    assert rows(target, "SELECT price FROM trades WHERE id = 1") == [(2,)]
