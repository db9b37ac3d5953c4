"""``db.batched_update``: backfills in batches that commit on their own and resume."""

import itertools

import pytest
from django.db import connections

from migrator.database import Database
from tests.conftest import rows, tbmigrate, write_script

ROWS = 1000


def _fills(target, bad_id=None):
    """``fills`` with ROWS rows; amount_cents must stay below 50,000 (a real CHECK), so
    the row ``bad_id`` (amount 999) makes the backfill fail there."""
    db = Database(connections[target.alias])
    db.execute(
        "CREATE TABLE fills (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL, "
        "amount_cents INTEGER CHECK (amount_cents < 50000))"
    )
    db.execute(
        "INSERT INTO fills (id, amount) "
        + (
            "SELECT i, i %% 100 FROM generate_series(1, %s) AS i"
            if db.is_postgresql
            else "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s) "
            "SELECT i, i %% 100 FROM n"
        ),
        [ROWS],
    )
    if bad_id is not None:
        db.execute("UPDATE fills SET amount = 999 WHERE id = %s", [bad_id])
    return db


BACKFILL = """
db.batched_update(
    "fills", "amount_cents = amount * %s", "amount_cents IS NULL", [100], batch_size=100,
    progress=False,
)
"""


def _updates(event):
    return [s for s in event["statements"] if s["sql"].startswith("UPDATE")]


def _last_apply(target):
    return rows(
        target,
        "SELECT outcome, statements FROM tbmigrate_audit_event WHERE action = 'apply' "
        "ORDER BY id DESC",
    )[0]


def test_it_updates_every_row_in_batches(target):
    db = _fills(target)
    seen = []

    def count(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with db.connection.execute_wrapper(count):
        done = db.batched_update(
            "fills", "amount_cents = amount * %s", "amount_cents IS NULL", [100], batch_size=300
        )
    assert done == ROWS
    assert sum(1 for sql in seen if sql.startswith("UPDATE")) == 4  # 300+300+300+100
    assert rows(target, "SELECT COUNT(*) FROM fills WHERE amount_cents = amount * 100") == [(ROWS,)]
    # Nothing left to do: a second call updates nothing.
    assert db.batched_update("fills", "amount_cents = 0", "amount_cents IS NULL") == 0


def test_a_stopped_backfill_keeps_its_batches_and_a_rerun_resumes(target, scripts_dir):
    """atomic = False: the batches before the failing one are committed; once the bad
    row is fixed and the failure repaired, the rerun updates only what is left."""
    _fills(target, bad_id=750)
    write_script(scripts_dir, "1.0.0", "backfill", up=BACKFILL, atomic=False)
    result = tbmigrate("run", database=target)
    assert result.code == 1
    assert rows(target, "SELECT COUNT(*) FROM fills WHERE amount_cents IS NOT NULL") == [(700,)]
    assert rows(target, "SELECT status FROM tbmigrate_applied_migration") == [("failed",)]

    Database(connections[target.alias]).execute("UPDATE fills SET amount = 1 WHERE id = 750")
    assert tbmigrate("repair", "1.0.0", "--no-input", database=target).code == 0
    result = tbmigrate("run", database=target)
    assert result.code == 0, result.err
    outcome, statements = _last_apply(target)
    assert outcome == "success"
    import json

    kept = json.loads(statements) if isinstance(statements, str) else statements
    assert len(_updates({"statements": kept})) == 3  # 701-800, 801-900, 901-1000
    assert rows(target, "SELECT COUNT(*) FROM fills WHERE amount_cents IS NULL") == [(0,)]


def test_in_an_atomic_script_a_failure_undoes_every_batch(target, scripts_dir):
    _fills(target, bad_id=750)
    write_script(scripts_dir, "1.0.0", "backfill", up=BACKFILL)
    assert tbmigrate("run", database=target).code == 1
    assert rows(target, "SELECT COUNT(*) FROM fills WHERE amount_cents IS NOT NULL") == [(0,)]


def test_on_a_terminal_it_shows_a_progress_bar(target, capsys):
    db = _fills(target)
    db.batched_update("fills", "amount_cents = amount", batch_size=250, progress=True)
    err = capsys.readouterr().err
    # tqdm draws "  fills:   0%| | 0/1000 [...rows/s]" and clears it when done (leave=False:
    # the step's own "OK" line follows).
    assert "fills:" in err and f"/{ROWS}" in err and "rows/s" in err


def test_bad_arguments_are_refused(target):
    db = _fills(target)
    with pytest.raises(ValueError, match="batch_size"):
        db.batched_update("fills", "amount_cents = 1", batch_size=0)


# -- the adaptive batches ---------------------------------------------------------------------
def test_the_control_law_in_numbers():
    """``BatchSizer`` alone: the arithmetic the module's docstring states."""
    from migrator.backfill import BatchSizer

    default = BatchSizer.for_call(None, None, 0.0, None, in_transaction=False)
    assert (default.size, default.target) == (1000, 0.02)
    fixed = BatchSizer.for_call(300, None, 0.5, None, in_transaction=False)
    assert (fixed.after(300, 5.0), fixed.size) == (0.5, 300)  # batch_size alone: as before
    started = BatchSizer.for_call(50, 0.2, 0.0, None, in_transaction=False)
    assert started.size == 50  # batch_size with a target: where it starts

    sizer = BatchSizer(size=100, target=0.2)
    assert sizer.after(100, 0.05) == 0 and sizer.size == 200  # quick: at most twice
    assert sizer.after(200, 0.16) == 0 and sizer.size == 250  # toward the target
    quiet = sizer.quiet
    pause = sizer.after(250, 2.0)  # rows costing far more than when quiet: pay it back
    assert sizer.size == 125  # at most halved
    assert pause == pytest.approx(2.0 - 250 * quiet * 1.05)
    assert sizer.after(125, 0.2, lock_waits=1) > 0 and sizer.size == 62  # lock waits: halved

    atomic = BatchSizer.for_call(100, 0.2, 0.0, None, in_transaction=True)
    atomic.after(100, 0.01)
    assert atomic.after(200, 2.0) == 0  # in a transaction a pause only holds the locks longer

    capped = BatchSizer.for_call(None, 0.1, 0.0, 200, in_transaction=False)
    assert capped.size == 20  # max_rows_per_second * target
    assert capped.after(20, 0.01) == pytest.approx(0.09) and capped.size == 20


def _recorded(db):
    """Record each batch's progress, as the journal does inside the batch's transaction."""
    seen: list[dict] = []
    db.on_progress = seen.append
    return seen


def test_quick_batches_grow_and_progress_records_each_batch(target):
    db = _fills(target)
    seen = _recorded(db)
    done = db.batched_update(
        "fills",
        "amount_cents = amount",
        "amount_cents IS NULL",
        batch_size=10,
        target_batch_seconds=0.5,
        progress=False,
    )
    assert done == ROWS
    sizes = [batch["batch_size"] for batch in seen]
    assert sizes[0] == 10 and max(sizes) >= 80
    assert all(b >= a // 2 for a, b in itertools.pairwise(sizes))  # never below half
    assert [batch["rows_done"] for batch in seen][-1] == ROWS
    assert [batch["batches"] for batch in seen] == list(range(1, len(seen) + 1))
    assert {batch["target_batch_seconds"] for batch in seen} == {0.5}
    # The default is adaptive too: 0.02 s batches from 1,000 rows.
    seen.clear()
    db.batched_update("fills", "amount_cents = NULL", progress=False)
    assert seen[0]["batch_size"] == 1000 and seen[0]["target_batch_seconds"] == 0.02


SLOW_FROM, SLOW_TO, SLOW_SECONDS, LAST = 301, 1300, 0.0005, 2000


def _slow_band(target):
    """``fills`` with LAST rows and a trigger that sleeps SLOW_SECONDS for each updated row
    of ids SLOW_FROM..SLOW_TO: the database slows down there, as under a heavier load."""
    db = Database(connections[target.alias])
    db.execute("CREATE TABLE fills (id INTEGER PRIMARY KEY, amount INTEGER, cents INTEGER)")
    for start in range(1, LAST + 1, 500):
        db.execute(
            "INSERT INTO fills (id, amount) VALUES "
            + ", ".join(f"({i}, {i})" for i in range(start, start + 500))
        )
    band = f"NEW.id BETWEEN {SLOW_FROM} AND {SLOW_TO}"
    if db.is_postgresql:
        db.execute(
            "CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_sleep({SLOW_SECONDS}); RETURN NEW; END $$"
        )
        db.execute(
            f"CREATE TRIGGER slow_fills BEFORE UPDATE ON fills FOR EACH ROW WHEN ({band}) "
            "EXECUTE FUNCTION slow_row()"
        )
        return db
    import time

    db.connection.ensure_connection()
    db.connection.connection.create_function("slow_row", 1, time.sleep)
    db.execute(
        f"CREATE TRIGGER slow_fills AFTER UPDATE ON fills FOR EACH ROW WHEN {band} "
        f"BEGIN SELECT slow_row({SLOW_SECONDS}); END"
    )
    return db


def test_batches_shrink_while_the_rows_slow_down_and_grow_after(target):
    """Through a band of rows that each take longer (a real sleep in a trigger) the batches
    shrink, and they grow again after it.  Asserted on the recorded batches, with what the
    sleeps alone guarantee: a batch whose slow rows took over twice the target is followed
    by one at most half its size, one whose slow rows took longer than the target by a
    smaller one."""
    db = _slow_band(target)
    seen = _recorded(db)
    target_seconds = 0.05
    done = db.batched_update(
        "fills",
        "cents = amount",
        "cents IS NULL",
        batch_size=20,
        target_batch_seconds=target_seconds,
        progress=False,
    )
    assert done == LAST
    lows = [0] + [batch["last_key"] for batch in seen]
    batches = [  # (size asked, slow rows in it, after the band)
        (
            batch["batch_size"],
            len(range(max(low + 1, SLOW_FROM), min(batch["last_key"], SLOW_TO) + 1)),
            low >= SLOW_TO,
        )
        for low, batch in zip(lows, seen, strict=False)
    ]
    shrank = 0
    for (size, slow, _), (following, _, _) in itertools.pairwise(batches):
        if slow * SLOW_SECONDS > 2 * target_seconds:
            assert following <= size // 2, batches
            shrank += 1
        elif slow * SLOW_SECONDS > target_seconds:
            assert following < size, batches
            shrank += 1
    assert shrank >= 1, batches
    in_band = [size for size, slow, _ in batches if slow]
    after_band = [size for size, _, after in batches if after]
    assert max(after_band) > min(in_band), batches


def test_max_rows_per_second_caps_each_batch(target):
    db = _fills(target)
    seen = _recorded(db)
    done = db.batched_update(
        "fills",
        "amount_cents = amount",
        "id <= 200",
        target_batch_seconds=0.05,
        max_rows_per_second=400,
        progress=False,
    )
    assert done == 200
    assert {batch["batch_size"] for batch in seen} == {20}  # 400 rows/s * 0.05 s


def test_bad_adaptive_arguments_are_refused(target):
    db = _fills(target)
    with pytest.raises(ValueError, match="target_batch_seconds"):
        db.batched_update("fills", "amount_cents = 1", target_batch_seconds=0)
    with pytest.raises(ValueError, match="max_rows_per_second"):
        db.batched_update("fills", "amount_cents = 1", max_rows_per_second=-5)
    with pytest.raises(ValueError, match="pause"):
        db.batched_update("fills", "amount_cents = 1", pause=-1)
