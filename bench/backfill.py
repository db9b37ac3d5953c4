"""Backfill benchmark: ``db.batched_update`` against one plain ``UPDATE`` of the same table.

A table of ``rows`` fills gets a new column filled from an old one, once with a single
``UPDATE`` through the bare driver (the floor: fastest, but it locks every row until it
commits), then by ``tbmigrate run`` of a script with ``atomic = False`` that calls
``db.batched_update`` in each of its two modes: fixed batches of 10,000 rows, and the
adaptive default (each batch sized to take about 0.02 s), and the same with a 0.1 s
target (the default until 2026-12-07).  Each commits batch by batch.
All are timed as whole processes; the result is rows per second, and for the batched
modes the number of batches (from the progress the run's audit event keeps), so the
mean time a batch holds its rows is ``seconds / batches`` at most.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCRIPT = """version = "0.0.1"
name = "backfill-amount-cents"
description = "fill fills.amount_cents from fills.amount, {how}"
atomic = False


def up(db):
    db.batched_update(
        "fills", "amount_cents = CAST(amount * 100 AS INTEGER)", "amount_cents IS NULL",
        {sizing}progress=False,
    )


def down(db):
    db.execute("UPDATE fills SET amount_cents = NULL")
"""
# label: (description, batched_update's sizing arguments)
MODES = {
    "batched_update, 10,000 rows": ("10,000 rows per commit", "batch_size=10_000, "),
    "batched_update, 0.1 s target": ("batches of about 0.1 s", "target_batch_seconds=0.1, "),
    "batched_update, 0.02 s target (the default)": ("batches of about 0.02 s (the default)", ""),
}

UPDATE = "UPDATE fills SET amount_cents = CAST(amount * 100 AS INTEGER)"


def setup(vendor: str, target: str, rows: int) -> None:
    if vendor == "sqlite":
        import sqlite3

        conn = sqlite3.connect(target)
        conn.execute(
            "CREATE TABLE fills "
            "(id INTEGER PRIMARY KEY, amount REAL NOT NULL, amount_cents INTEGER)"
        )
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO fills (id, amount) SELECT i, (i % 1000) / 7.0 FROM n",
            (rows,),
        )
        conn.commit()
        conn.close()
        return
    import psycopg

    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE fills (id BIGINT PRIMARY KEY, amount NUMERIC(12, 4) NOT NULL, "
            "amount_cents BIGINT)"
        )
        conn.execute(
            "INSERT INTO fills (id, amount) SELECT i, (i %% 1000) / 7.0 "
            "FROM generate_series(1, %s) AS i",
            (rows,),
        )
        conn.execute("VACUUM ANALYZE fills")


def single_update(vendor: str, target: str) -> None:
    if vendor == "sqlite":
        import sqlite3

        conn = sqlite3.connect(target)
        conn.execute(UPDATE)
        conn.commit()
        conn.close()
        return
    import psycopg

    with psycopg.connect(target) as conn:
        conn.execute(UPDATE)


def check(vendor: str, target: str, rows: int) -> None:
    sql = "SELECT COUNT(*) FROM fills WHERE amount_cents = CAST(amount * 100 AS INTEGER)"
    if vendor == "sqlite":
        import sqlite3

        conn = sqlite3.connect(target)
        done = conn.execute(sql).fetchone()[0]
        conn.close()
    else:
        import psycopg

        with psycopg.connect(target) as conn:
            done = conn.execute(sql).fetchone()[0]
    if done != rows:
        raise SystemExit(f"backfill left {rows - done} of {rows} rows not updated")


def batches(vendor: str, target: str) -> int:
    """How many batches the last ``run`` made: its journal's progress, kept in its audit
    event."""
    sql = "SELECT details FROM tbmigrate_audit_event WHERE action = 'apply' ORDER BY id DESC"
    if vendor == "sqlite":
        import sqlite3

        conn = sqlite3.connect(target)
        details = conn.execute(sql).fetchone()[0]
        conn.close()
    else:
        import psycopg

        with psycopg.connect(target) as conn:
            details = conn.execute(sql).fetchone()[0]
    if isinstance(details, str):
        details = json.loads(details)
    return int(details["progress"]["updates"][0]["batches"])


def measure(dbs, rows: int, workdir: Path, timed, tbmigrate) -> dict[str, dict[str, float]]:
    me = [sys.executable, __file__]
    out = {}
    for label in ("single UPDATE", *MODES):
        target = dbs.fresh()
        where = target.floor_target()
        setup(target.vendor, where, rows)
        if label == "single UPDATE":
            sample = timed([*me, "update", target.vendor, where], {})
        else:
            how, sizing = MODES[label]
            scripts = workdir / f"backfill_scripts_{len(out)}"
            scripts.mkdir(exist_ok=True)
            (scripts / "2026-01-01T00-00-00-0.0.1-backfill-amount-cents.py").write_text(
                SCRIPT.format(how=how, sizing=sizing)
            )
            env = {"TBMIGRATE_SCRIPTS_DIR": str(scripts), **target.env()}
            sample = timed(tbmigrate("run"), env)
        check(target.vendor, where, rows)
        result = {
            "seconds": round(sample.seconds, 3),
            "rows_per_s": round(rows / sample.seconds),
            "peak_rss_mib": round(sample.rss_mib, 1),
        }
        if label != "single UPDATE":
            result["batches"] = batches(target.vendor, where)
        dbs.drop(target)
        out[label] = result
    return out


if __name__ == "__main__":
    action, vendor, target = sys.argv[1:4]
    if action == "update":
        single_update(vendor, target)
