"""``db.batched_update``: backfills in batches that commit on their own and resume."""

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
