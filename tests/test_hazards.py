"""The lock-hazard gate: `run` refuses, before its first statement, what would stall traffic
on a large table, and `validate migration` says the same; a script may accept a hazard
with its reason.

Large tables are made cheaply: `orders` is created by an applied script, then filled on
the live database with `generate_series` and analysed, and the threshold
(`HAZARD_TABLE_ROWS`) is set low, so 3,000 rows count as large.  The pending steps are
rehearsed on a scratch database: PostgreSQL says there which locks each transaction
holds and whether a table was rewritten.  SQLite has no gate (README: Safety), which the
tests show on it too.
"""

from __future__ import annotations

import pytest
from django.db import connections

from migrator import history
from tests.conftest import (
    TestDatabase,
    snapshot,
    tbmigrate,
    write_script,
)

ROWS = 3_000
THRESHOLD = 1_000

SCHEMA = """
db.execute("CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT)")
db.execute(
    "CREATE TABLE orders (id BIGINT PRIMARY KEY, user_id BIGINT, qty INTEGER, "
    "note VARCHAR(20), status TEXT)"
)
db.execute("CREATE TABLE symbols (id BIGINT PRIMARY KEY, code TEXT)")
"""


@pytest.fixture
def big(target: TestDatabase, scripts_dir, settings):
    """``target`` with users, orders (3,000 rows, analysed) and symbols (5 rows), the
    threshold at 1,000 rows; returns the database."""
    settings.TBMIGRATE_HAZARD_TABLE_ROWS = THRESHOLD
    write_script(scripts_dir, "1.0.0", "schema", up=SCHEMA, down="pass")
    done = tbmigrate("run", database=target)
    assert done.code == 0, done.err
    fill(
        target,
        "orders",
        ROWS,
        "id, user_id, qty, note, status",
        "i, 1 + i %% 10, i %% 7, 'n', 'open'",
    )
    fill(target, "users", 10)
    fill(target, "symbols", 5)
    return target


def fill(target: TestDatabase, table: str, count: int, columns: str = "id", values: str = "i"):
    """``count`` rows: generate_series on PostgreSQL, a recursive CTE on SQLite."""
    series = (
        "SELECT i FROM generate_series(1, %s) i"
        if target.vendor == "postgresql"
        else "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %s) "
        "SELECT i FROM s"
    )
    connection = connections[target.alias]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {values} FROM ({series}) AS n", [count]
        )
        if target.vendor == "postgresql":
            # The inserts' statistics first (else they would be added after ANALYZE's
            # count: twice the rows), then ANALYZE: pg_class.reltuples as in production.
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute(f"ANALYZE {table}")


def step(folder, version, name, up, **kwargs):
    return write_script(folder, version, name, up=up, down=kwargs.pop("down", "pass"), **kwargs)


def state(target: TestDatabase) -> dict:
    """Every table and row but the audit log (a refusal is audited)."""
    found = snapshot(target)
    found.pop("tbmigrate_audit_event", None)
    return found


def events(target: TestDatabase, action: str = "run") -> list:
    return [e for e in history.audit_rows(target.alias) if e.action == action]


# -- refusal ----------------------------------------------------------------------------
def test_the_naive_series_is_refused_before_its_first_statement(big, scripts_dir):
    """ADD COLUMN then an UPDATE of the whole table in one atomic step: refused, named,
    with the recipe and the opt-out; nothing ran, the refusal is audited."""
    step(scripts_dir, "1.0.1", "harmless", 'db.execute("CREATE TABLE notes (id INTEGER)")')
    step(
        scripts_dir,
        "1.0.2",
        "add-fee",
        'db.execute("ALTER TABLE orders ADD COLUMN fee NUMERIC")\n'
        'db.execute("UPDATE orders SET fee = qty * 0.001")',
    )
    before = state(big)
    result = tbmigrate("run", database=big)
    if big.vendor == "sqlite":
        assert result.code == 0, result.err  # no gate on SQLite
        return
    assert result.code == 1, result.out
    message = result.err.strip().splitlines()[-1]
    assert "run refused before anything ran: 1.0.2 add-fee, statement 2" in message
    assert "UPDATE orders SET fee = qty * 0.001" in message
    assert f"~{ROWS:,} rows" in message
    assert "[exclusive-then-long]" in message and "ACCESS EXCLUSIVE on orders" in message
    assert "atomic = False" in message and "db.batched_update" in message
    assert 'hazards_accepted = {"exclusive-then-long": ' in message
    assert "1 more (long-update)" in message
    assert state(big) == before  # nothing ran, not even 1.0.1
    refused = [e for e in events(big) if e.outcome == "refused"]
    assert len(refused) == 1
    hazards = {f["hazard"] for f in refused[0].details["refused"]}
    assert hazards == {"exclusive-then-long", "long-update"}


# Each hazard, as a step on the large `orders` (refused) and on the 5 rows of `symbols`
# (passes): (hazard, atomic, statements on {t}).
HAZARD_CASES = [
    ("long-update", False, ["UPDATE {t} SET code = 'x'"]),
    ("long-update", False, ["DELETE FROM {t} WHERE id % 2 = 0"]),
    ("long-update", True, ["@batched_update"]),
    ("blocking-index", True, ["CREATE INDEX {t}_code ON {t} (code)"]),
    ("blocking-index", True, ["ALTER TABLE {t} ADD CONSTRAINT {t}_code UNIQUE (code)"]),
    ("set-not-null", True, ["ALTER TABLE {t} ALTER COLUMN code SET NOT NULL"]),
    (
        "validate-constraint",
        True,
        ["ALTER TABLE {t} ADD CONSTRAINT {t}_user FOREIGN KEY (id) REFERENCES users (id)"],
    ),
    ("validate-constraint", True, ["ALTER TABLE {t} ADD CONSTRAINT {t}_id CHECK (id > 0)"]),
    ("rewrite", True, ["ALTER TABLE {t} ALTER COLUMN id TYPE NUMERIC(20)"]),
    (
        "volatile-default",
        True,
        ["ALTER TABLE {t} ADD COLUMN seen TIMESTAMPTZ DEFAULT clock_timestamp()"],
    ),
    (
        "exclusive-then-long",
        True,
        [
            "ALTER TABLE {t} ADD CONSTRAINT {t}_pos CHECK (id > 0) NOT VALID",
            "ALTER TABLE {t} VALIDATE CONSTRAINT {t}_pos",
        ],
    ),
]


def hazard_step(folder, version: str, table: str, atomic: bool, sqls: list[str]) -> None:
    if sqls == ["@batched_update"]:
        up = f"db.batched_update({table!r}, \"code = 'x'\")"
    else:
        up = "\n".join(f"db.execute({sql.format(t=table)!r})" for sql in sqls)
    step(folder, version, f"on-{table}", up, atomic=atomic)


@pytest.fixture
def big_codes(make_database, scripts_dir, settings):
    """PostgreSQL: `orders` and `symbols` of the same shape (id, code), 3,000 rows and 5."""
    target = make_database("postgresql")
    settings.TBMIGRATE_HAZARD_TABLE_ROWS = THRESHOLD
    schema = "\n".join(
        f'db.execute("CREATE TABLE {t} (id BIGINT PRIMARY KEY, code TEXT)")'
        for t in ("users", "orders", "symbols")
    )
    write_script(scripts_dir, "1.0.0", "schema", up=schema, down="pass")
    assert tbmigrate("run", database=target).code == 0
    for table, count in (("users", ROWS), ("orders", ROWS), ("symbols", 5)):
        fill(target, table, count, "id, code", "i, 'c' || i")
    return target


@pytest.mark.parametrize(
    ("hazard", "atomic", "sqls"),
    HAZARD_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(HAZARD_CASES)],
)
def test_each_hazard_is_refused_on_a_large_table_and_passes_on_a_small_one(
    big_codes, scripts_dir, hazard, atomic, sqls
):
    hazard_step(scripts_dir, "1.0.1", "orders", atomic, sqls)
    before = state(big_codes)
    refused = tbmigrate("run", database=big_codes)
    assert refused.code == 1, refused.out
    message = refused.err.strip().splitlines()[-1]
    assert f"[{hazard}]" in message and "on orders (~3,000 rows" in message, message
    assert "run refused before anything ran: 1.0.1 on-orders" in message
    assert f'hazards_accepted = {{"{hazard}": ' in message
    assert state(big_codes) == before
    (scripts_dir / next(p.name for p in scripts_dir.glob("*1.0.1-on-orders.py"))).unlink()
    hazard_step(scripts_dir, "1.0.1", "symbols", atomic, sqls)
    applied = tbmigrate("run", database=big_codes)
    assert applied.code == 0, applied.err
    assert "Applied 1 migration(s)" in applied.out
