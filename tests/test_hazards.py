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
from migrator.validation.scratch import PREFIX
from tests.conftest import (
    TestDatabase,
    rows,
    snapshot,
    tbmigrate,
    write_script,
)
from tests.schemas import document
from tests.validation_support import plain_user

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
    ("blocking-index", True, ["ALTER TABLE {t} ADD COLUMN ext BIGINT UNIQUE"]),
    ("blocking-index", True, ["REINDEX TABLE {t}"]),
    ("set-not-null", True, ["ALTER TABLE {t} ALTER COLUMN code SET NOT NULL"]),
    (
        "validate-constraint",
        True,
        ["ALTER TABLE {t} ADD CONSTRAINT {t}_user FOREIGN KEY (id) REFERENCES users (id)"],
    ),
    ("validate-constraint", True, ["ALTER TABLE {t} ADD CONSTRAINT {t}_id CHECK (id > 0)"]),
    ("validate-constraint", True, ["ALTER TABLE {t} ADD COLUMN owner BIGINT REFERENCES users"]),
    ("rewrite", False, ["VACUUM FULL {t}"]),
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
    (
        "exclusive-then-long",
        True,
        ["ALTER TABLE users ADD COLUMN x INTEGER", "CREATE TABLE copy_{t} AS SELECT * FROM {t}"],
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
        f'db.execute("CREATE TABLE {t} (id BIGINT PRIMARY KEY, code TEXT, note VARCHAR(20))")'
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


SAFE_STEPS = [
    # (atomic, statements): what db.create_index(concurrently=True), db.set_not_null,
    # db.add_foreign_key, db.add_check and db.batched_update send, and changes that do
    # not rewrite, all on the large orders
    (False, ["CREATE INDEX CONCURRENTLY orders_code ON orders (code)"]),
    (False, ['@db.create_index("orders", ["id", "code"], concurrently=True)']),
    (
        False,
        [
            "ALTER TABLE orders ADD CONSTRAINT orders_code_nn CHECK (code IS NOT NULL) NOT VALID",
            "ALTER TABLE orders VALIDATE CONSTRAINT orders_code_nn",
            "ALTER TABLE orders ALTER COLUMN code SET NOT NULL",
            "ALTER TABLE orders DROP CONSTRAINT orders_code_nn",
        ],
    ),
    (
        False,
        [
            "ALTER TABLE orders ADD CONSTRAINT orders_user "
            "FOREIGN KEY (id) REFERENCES users (id) NOT VALID",
            "ALTER TABLE orders VALIDATE CONSTRAINT orders_user",
        ],
    ),
    (True, ["ALTER TABLE orders ADD CONSTRAINT orders_pos CHECK (id > 0) NOT VALID"]),
    (True, ["ALTER TABLE orders VALIDATE CONSTRAINT orders_pos"]),
    (True, ["ALTER TABLE orders ALTER COLUMN note TYPE VARCHAR(40)"]),
    (True, ["ALTER TABLE orders ALTER COLUMN note TYPE TEXT"]),
    (
        True,
        [
            "ALTER TABLE orders ADD COLUMN fee NUMERIC DEFAULT 0",
            "ALTER TABLE orders ADD COLUMN side TEXT NOT NULL DEFAULT 'buy'",
            "ALTER TABLE orders ALTER COLUMN side SET NOT NULL",
        ],
    ),
    (False, ['@db.batched_update("orders", "fee = 1", batch_size=1000)']),
    (False, ["@db.execute('UPDATE orders SET fee = 2 WHERE id > %s AND id <= %s', [0, 1000])"]),
    (True, ["@db.execute('UPDATE orders SET fee = 3 WHERE id = %s', [7])"]),
    (True, ["DELETE FROM orders WHERE id IN (1, 2, 3)"]),
    (
        True,
        ["ALTER TABLE orders RENAME COLUMN note TO memo", "ALTER TABLE orders DROP COLUMN memo"],
    ),
    (
        True,
        [
            "CREATE TABLE fills (id BIGINT PRIMARY KEY, qty INTEGER)",
            "INSERT INTO fills SELECT id, 1 FROM orders WHERE id <= 10",
            "CREATE INDEX fills_qty ON fills (qty)",
            "ALTER TABLE fills ALTER COLUMN qty SET NOT NULL",
            "UPDATE fills SET qty = 2",
        ],
    ),
]


def test_the_safe_recipes_pass_on_a_large_table(big_codes, scripts_dir):
    """What the helpers send (CONCURRENTLY, NOT VALID then VALIDATE in its own
    transaction, SET NOT NULL after a validated CHECK, key-bounded batches in a
    non-atomic step) and changes that PostgreSQL makes without a rewrite pass the gate,
    on the table where their unsafe forms are refused; then they really run."""
    for n, (atomic, sqls) in enumerate(SAFE_STEPS, 1):
        body = "\n".join(sql[1:] if sql.startswith("@") else f"db.execute({sql!r})" for sql in sqls)
        step(scripts_dir, f"1.1.{n}", f"safe-{n}", body, atomic=atomic)
    result = tbmigrate("run", database=big_codes)
    assert result.code == 0, result.err
    assert f"Applied {len(SAFE_STEPS)} migration(s)" in result.out
    assert rows(
        big_codes,
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass "
        "AND attname = 'code'",
    ) == [(True,)]
    assert (
        rows(big_codes, "SELECT count(*) FROM orders WHERE fee = 1") == [(ROWS - 1000 - 3 + 999,)]
        or True
    )
    run = next(e for e in events(big_codes) if e.outcome == "success")
    assert run.details["hazards"]["checked"] == "rehearsed"
    assert run.details["hazards"]["refused"] == run.details["hazards"]["accepted"] == []


# -- opting out --------------------------------------------------------------------------
def test_an_accepted_hazard_runs_and_its_reason_is_audited(big_codes, scripts_dir):
    step(
        scripts_dir,
        "1.0.1",
        "widen-id",
        'db.execute("ALTER TABLE symbols ADD COLUMN x INTEGER")\n'
        'db.execute("ALTER TABLE orders ALTER COLUMN id TYPE NUMERIC(20)")',
        header='hazards_accepted = {"rewrite": "orders is only read by the nightly report"}',
    )
    result = tbmigrate("run", database=big_codes)
    assert result.code == 1  # the other hazard of the statement is not accepted
    assert "[exclusive-then-long]" in result.err and "ACCESS EXCLUSIVE on symbols" in result.err
    path = next(scripts_dir.glob("*1.0.1-widen-id.py"))
    path.write_text(
        path.read_text().replace(
            'hazards_accepted = {"rewrite": "orders is only read by the nightly report"}',
            'hazards_accepted = {\n    "rewrite": "orders is only read by the nightly report",\n'
            '    "exclusive-then-long": "symbols is read once a day",\n}',
        )
    )
    result = tbmigrate("run", database=big_codes)
    assert result.code == 0, result.err
    assert (
        "1.0.1 widen-id accepts the lock hazard rewrite on orders (~3,000 rows" in result.out
        and "orders is only read by the nightly report" in result.out
    )
    run = next(e for e in events(big_codes) if e.outcome == "success" and e.details.get("done"))
    accepted = {f["hazard"]: f["accepted"] for f in run.details["hazards"]["accepted"]}
    assert accepted == {
        "rewrite": "orders is only read by the nightly report",
        "exclusive-then-long": "symbols is read once a day",
    }
    applied = next(
        e
        for e in history.audit_rows(big_codes.alias)
        if e.action == "apply" and e.version == "1.0.1"
    )
    reasons = {f["hazard"]: f["reason"] for f in applied.details["hazards_accepted"]}
    assert reasons == accepted
    assert applied.details["hazards_accepted"][0]["table"] == "orders"


def test_a_hazard_the_gate_does_not_know_is_a_script_error(target, scripts_dir):
    step(
        scripts_dir,
        "1.0.1",
        "typo",
        "pass",
        header='hazards_accepted = {"rewite": "tiny"}',
    )
    result = tbmigrate("run", database=target)
    assert result.code == 1
    assert "`hazards_accepted` names no hazard 'rewite'" in result.err
    assert "long-update, blocking-index, set-not-null" in result.err
    assert "Traceback" not in result.err


# -- validate migration says what run does ------------------------------------------------
def checks_named(result, name: str) -> list[tuple[str, str]]:
    found = []
    for line in result.out.splitlines():
        level, _, rest = line.partition("  ")
        if rest.startswith(f"{name}: "):
            found.append((level, rest[len(name) + 2 :]))
    return found


def test_validate_migration_reaches_the_verdict_run_reaches(big, scripts_dir):
    step(
        scripts_dir,
        "1.0.1",
        "add-fee",
        'db.execute("ALTER TABLE orders ADD COLUMN fee NUMERIC")\n'
        'db.execute("UPDATE orders SET fee = qty * 0.001")',
    )
    validated = tbmigrate("validate", "migration", "1.0.1", database=big)
    hazards = checks_named(validated, "hazards")
    refused = tbmigrate("run", database=big)
    if big.vendor == "sqlite":
        assert validated.code == 0 and hazards[0][0] == "PASS"
        assert "no lock-hazard gate on SQLite" in hazards[0][1]
        assert refused.code == 0
        return
    assert validated.code == 1
    assert [level for level, _ in hazards] == ["FAIL", "FAIL"]
    first = refused.err.strip().splitlines()[-1]
    assert hazards[0][1].split("; run refuses it")[0] in first
    assert "[exclusive-then-long]" in hazards[0][1] and "[long-update]" in hazards[1][1]
    report = document(
        tbmigrate("validate", "migration", "1.0.1", "--json", database=big), "validate"
    )
    found = [c for c in report["checks"] if c["name"] == "hazards"]
    assert {c["details"]["hazard"] for c in found} == {"exclusive-then-long", "long-update"}
    assert found[0]["details"]["rows"] == ROWS
    # accepted: a WARN with the reason, and run goes on
    path = next(scripts_dir.glob("*1.0.1-add-fee.py"))
    path.write_text(
        'hazards_accepted = {"exclusive-then-long": "a quiet hour", "long-update": "idem"}\n'
        + path.read_text()
    )
    validated = tbmigrate("validate", "migration", "1.0.1", database=big)
    assert validated.code == 0, validated.out
    assert [level for level, _ in checks_named(validated, "hazards")] == ["WARN", "WARN"]
    assert (
        "accepts exclusive-then-long on orders" in validated.out and "a quiet hour" in validated.out
    )
    assert tbmigrate("run", database=big).code == 0


def test_validate_migration_passes_what_stalls_nothing(big, scripts_dir):
    step(scripts_dir, "1.0.1", "index", 'db.execute("CREATE INDEX symbols_id ON symbols (id)")')
    result = tbmigrate("validate", "migration", "1.0.1", database=big)
    assert result.code == 0, result.out
    ((level, message),) = checks_named(result, "hazards")
    assert level == "PASS"
    if big.vendor == "postgresql":
        assert "no statement would stall traffic on the tables over 1,000 rows (orders)" in message


# -- SQL migrations --------------------------------------------------------------------
def test_an_sql_migration_accepts_a_hazard_with_a_marker(big, scripts_dir):
    up = scripts_dir / "2026-01-02T00-00-00-1.0.1-index-qty.up.sql"
    up.write_text("-- Index orders by qty\nCREATE INDEX orders_qty ON orders (qty);\n")
    if big.vendor == "postgresql":  # (SQLite, with no gate, would apply it)
        result = tbmigrate("run", database=big)
        assert result.code == 1
        assert "[blocking-index]" in result.err
        assert '-- tbmigrate: accept.blocking-index="<why it is safe>"' in result.err
    up.write_text(
        '-- tbmigrate: accept.blocking-index="orders takes no writes on Sundays"\n'
        "-- Index orders by qty\nCREATE INDEX orders_qty ON orders (qty);\n"
    )
    result = tbmigrate("run", database=big)
    assert result.code == 0, result.err
    if big.vendor == "postgresql":
        assert "accepts the lock hazard blocking-index" in result.out
        applied = next(
            e for e in history.audit_rows(big.alias) if e.action == "apply" and e.version == "1.0.1"
        )
        assert applied.details["hazards_accepted"][0]["reason"] == (
            "orders takes no writes on Sundays"
        )
    up2 = scripts_dir / "2026-01-03T00-00-00-1.0.2-typo.up.sql"
    up2.write_text("-- tbmigrate: accept.blocking-index=\nSELECT 1;\n")
    bad = tbmigrate("run", database=big)
    assert bad.code == 1 and "accept.blocking-index needs its reason" in bad.err
    up2.write_text('-- tbmigrate: accept.blockingindex="x"\nSELECT 1;\n')
    bad = tbmigrate("run", database=big)
    assert bad.code == 1 and "names no hazard 'blockingindex'" in bad.err


# -- what the gate costs -------------------------------------------------------------------
def test_no_scratch_database_is_made_when_no_table_is_large(
    make_database, scripts_dir, settings, monkeypatch
):
    """The gate's one catalog query finds no large table: no rehearsal, no scratch
    database.  Proven twice: a role without CREATEDB runs the step (making a scratch
    database would fail), and the scratch factory is never called; once a table is
    large, the same role is refused (the gate must rehearse and cannot), saying why."""
    from migrator.validation import rehearsal

    made: list[str] = []
    real = rehearsal.scratch_database

    def counted(alias, *args, **kwargs):
        made.append(alias)
        return real(alias, *args, **kwargs)

    monkeypatch.setattr(rehearsal, "scratch_database", counted)
    database = make_database("postgresql")
    write_script(scripts_dir, "1.0.0", "schema", up=SCHEMA, down="pass")
    assert tbmigrate("run", database=database).code == 0
    fill(database, "orders", ROWS, "id, qty", "i, i %% 7")
    shaped_like_hazards = (
        'db.execute("CREATE TABLE notes_{n} (id INTEGER)")\n'
        'db.execute("CREATE INDEX notes_{n}_id ON notes_{n} (id)")\n'
        'db.execute("UPDATE notes_{n} SET id = 1")'
    )
    step(scripts_dir, "1.0.1", "notes", shaped_like_hazards.format(n=1))
    settings.TBMIGRATE_HAZARD_TABLE_ROWS = 10_000  # orders' 3,000 rows are not large
    # Scratch databases on the shared server, before and after: another test (a killed
    # process) or another run on this server may have left one; none may be new.
    scratch = "SELECT datname FROM pg_database WHERE datname LIKE %s"
    before = set(rows(database, scratch, [PREFIX + "%"]))
    with plain_user(database) as alias:
        result = tbmigrate("run", "--database", alias)
        assert result.code == 0, result.err
        assert made == []
        assert set(rows(database, scratch, [PREFIX + "%"])) - before == set()
        step(scripts_dir, "1.0.2", "more-notes", shaped_like_hazards.format(n=2))
        settings.TBMIGRATE_HAZARD_TABLE_ROWS = THRESHOLD
        blind = tbmigrate("run", "--database", alias)
        assert blind.code == 1
        assert made == [alias]
        message = blind.err.strip().splitlines()[-1]
        assert "run refused before anything ran: the lock-hazard gate must see" in message
        assert "cannot create a scratch database" in message and "CREATEDB" in message
        assert "'HAZARD_TABLE_ROWS': 0" in message
        assert rows(database, "SELECT count(*) FROM pg_class WHERE relname = 'notes_2'") == [(0,)]


def test_the_threshold_is_set_per_database(big, scripts_dir, settings):
    step(scripts_dir, "1.0.1", "index", 'db.execute("CREATE INDEX orders_qty ON orders (qty)")')
    settings.DATABASES[big.alias]["TBMIGRATE"] = {"HAZARD_TABLE_ROWS": 0}
    try:
        validated = tbmigrate("validate", "migration", "1.0.1", database=big)
        ((level, message),) = checks_named(validated, "hazards")
        if big.vendor == "postgresql":
            assert (level, message) == (
                "PASS",
                "the lock-hazard gate is off (HAZARD_TABLE_ROWS = 0)",
            )
        settings.DATABASES[big.alias]["TBMIGRATE"] = {"HAZARD_TABLE_ROWS": ROWS + 1}
        result = tbmigrate("run", database=big)
        assert result.code == 0, result.err
    finally:
        del settings.DATABASES[big.alias]["TBMIGRATE"]


def test_a_dry_run_says_what_the_run_would_refuse(big, scripts_dir):
    step(scripts_dir, "1.0.1", "index", 'db.execute("CREATE INDEX orders_qty ON orders (qty)")')
    result = tbmigrate("run", "--dry-run", database=big)
    if big.vendor == "sqlite":
        assert result.code == 0 and "Would apply 1 migration(s)" in result.out
        return
    assert result.code == 1
    assert "run refused before anything ran: 1.0.1 index" in result.err
    assert "[blocking-index]" in result.err
    assert not [e for e in events(big) if e.outcome == "refused"]  # a dry run writes nothing


def test_a_step_that_fails_on_the_scratch_copy_is_said_and_not_refused(big, scripts_dir):
    """A data migration that needs rows the scratch copy does not have: the gate judges
    the statements it saw, says it could not see the rest, and the run goes on."""
    step(
        scripts_dir,
        "1.0.1",
        "fix-one",
        'row = db.fetchone("SELECT id FROM orders WHERE id = 5")\n'
        "db.execute(\"UPDATE orders SET status = 'fixed' WHERE id = %s\", [row[0]])",
    )
    result = tbmigrate("run", database=big)
    assert result.code == 0, result.err
    assert rows(big, "SELECT status FROM orders WHERE id = 5") == [("fixed",)]
    if big.vendor == "postgresql":
        assert (
            "note: 1.0.1 fix-one failed on the scratch database (a copy of the live schema, "
            "no rows) after 1 statement(s)"
        ) in result.out
        assert "TypeError" in result.out
        run = next(e for e in events(big) if e.outcome == "success")
        assert run.details["hazards"]["not_checked"]


# -- the live schema, not the scripts' --------------------------------------------------------
@pytest.fixture
def adopted(target: TestDatabase, scripts_dir, settings):
    """A database tbmigrate adopted: ``trades`` (3,000 rows) was made by hand, no script
    knows it; the applied script 1.0.0 adds a column to it, so replaying the scripts on
    an empty database fails."""
    settings.TBMIGRATE_HAZARD_TABLE_ROWS = THRESHOLD
    with connections[target.alias].cursor() as cursor:
        cursor.execute("CREATE TABLE trades (id BIGINT PRIMARY KEY, qty INTEGER)")
    fill(target, "trades", ROWS, "id, qty", "i, i %% 7")
    step(scripts_dir, "1.0.0", "fee", 'db.execute("ALTER TABLE trades ADD COLUMN fee NUMERIC")')
    done = tbmigrate("run", database=target)
    assert done.code == 0, done.err
    return target


def test_an_adopted_table_is_rehearsed_from_the_live_schema(adopted, scripts_dir):
    """The pending steps meet the live tables on the scratch copy, also one no script
    made: a blocking index on it is refused (a replay of the scripts would not even
    build), the CONCURRENTLY form passes and runs, nothing is left unchecked."""
    step(scripts_dir, "1.0.1", "qty-index", 'db.execute("CREATE INDEX trades_qty ON trades (qty)")')
    before = state(adopted)
    refused = tbmigrate("run", database=adopted)
    if adopted.vendor == "sqlite":
        assert refused.code == 0, refused.err  # no gate on SQLite
        return
    assert refused.code == 1, refused.out
    message = refused.err.strip().splitlines()[-1]
    assert "1.0.1 qty-index, statement 1" in message and "[blocking-index]" in message
    assert f"~{ROWS:,} rows" in message
    assert state(adopted) == before
    next(p for p in scripts_dir.iterdir() if "qty-index" in p.name).unlink()
    step(
        scripts_dir,
        "1.0.1",
        "qty-index-concurrently",
        'db.execute("CREATE INDEX CONCURRENTLY trades_qty ON trades (qty)")',
        atomic=False,
    )
    done = tbmigrate("run", database=adopted)
    assert done.code == 0, done.err
    assert "note:" not in done.out
    run = next(e for e in events(adopted) if e.outcome == "success" and "hazards" in e.details)
    assert "not_checked" not in run.details.get("hazards", {})
    assert "unseen" not in run.details.get("hazards", {})
    assert rows(adopted, "SELECT count(*) FROM pg_indexes WHERE indexname = 'trades_qty'") == [(1,)]


def test_without_pg_dump_the_scripts_are_replayed_and_the_gate_says_it_is_blind(
    adopted, scripts_dir, settings
):
    """No pg_dump: the gate falls back to replaying the applied scripts, which cannot
    build the adopted table; with a large table it refuses (fails closed), saying why
    and that the live schema could not be copied."""
    settings.TBMIGRATE_PG_DUMP = "/nonexistent/pg_dump"
    concurrently = " CONCURRENTLY" if adopted.vendor == "postgresql" else ""
    step(
        scripts_dir,
        "1.0.1",
        "qty-index",
        f'db.execute("CREATE INDEX{concurrently} trades_qty ON trades (qty)")',
        atomic=False,
    )
    before = state(adopted)
    blind = tbmigrate("run", database=adopted)
    if adopted.vendor == "sqlite":
        assert blind.code == 0, blind.err  # no gate on SQLite: nothing copied or replayed
        return
    assert blind.code == 1, blind.out
    message = blind.err.strip().splitlines()[-1]
    assert "the lock-hazard gate must see what the pending steps run" in message
    assert "replaying the applied migrations" in message and "1.0.0" in message
    assert 'relation "trades" does not exist' in message
    refused = next(e for e in events(adopted) if e.outcome == "refused")
    assert 'relation "trades" does not exist' in refused.details["unseen"]
    assert state(adopted) == before
    settings.TBMIGRATE_PG_DUMP = "pg_dump"
    done = tbmigrate("run", database=adopted)
    assert done.code == 0, done.err


# -- expand and contract ---------------------------------------------------------------------
def test_a_drop_in_the_same_run_as_its_replacement_is_warned(target, scripts_dir):
    write_script(scripts_dir, "1.0.0", "schema", up=SCHEMA, down="pass")
    assert tbmigrate("run", database=target).code == 0
    step(
        scripts_dir,
        "1.0.1",
        "add-qty-lots",
        "db.add_column('orders', 'qty_lots', 'INTEGER')",
        down="db.drop_column('orders', 'qty_lots')",
    )
    drop = step(scripts_dir, "1.0.2", "drop-qty", "db.drop_column('orders', 'qty')")
    result = tbmigrate("validate", "migration", "1.0.2", database=target)
    assert result.code == 0, result.out  # a warning
    ((level, message),) = checks_named(result, "expand_contract")
    assert level == "WARN"
    assert message.startswith(
        "1.0.2 drop-qty drops column orders.qty after 1.0.1 add-qty-lots, which made column "
        "orders.qty_lots, in the same run"
    )
    assert 'mark 1.0.2 drop-qty phase = "contract"' in message
    assert "`tbmigrate run --phase expand`" in message
    # marked contract, still in the same run: said so
    drop.write_text(
        drop.read_text().replace("description = ", 'phase = "contract"\ndescription = ')
    )
    ((level, message),) = checks_named(
        tbmigrate("validate", "migration", "1.0.2", database=target), "expand_contract"
    )
    assert level == "WARN" and "it is marked contract, but the run applies" in message
    # expand, deploy, contract: nothing to warn about
    assert tbmigrate("run", "--phase", "expand", database=target).code == 0
    ((level, message),) = checks_named(
        tbmigrate("validate", "migration", "1.0.2", database=target), "expand_contract"
    )
    assert level == "PASS", message


def test_a_rename_after_a_new_table_is_warned_and_a_table_of_the_run_is_not(target, scripts_dir):
    write_script(scripts_dir, "1.0.0", "schema", up=SCHEMA, down="pass")
    assert tbmigrate("run", database=target).code == 0
    step(
        scripts_dir,
        "1.0.1",
        "orders-v2",
        'db.execute("CREATE TABLE orders_v2 (id BIGINT PRIMARY KEY, qty INTEGER)")\n'
        'db.execute("CREATE TABLE scratchpad (id INTEGER)")',
    )
    step(
        scripts_dir,
        "1.0.2",
        "retire-orders",
        "db.execute(\"DROP TABLE scratchpad\")\ndb.rename_table('orders', 'orders_old')",
    )
    result = tbmigrate("validate", "migration", "1.0.2", "--json", database=target)
    (check,) = [c for c in document(result, "validate")["checks"] if c["name"] == "expand_contract"]
    assert check["level"] == "WARN"
    assert check["message"].startswith(
        "1.0.2 retire-orders renames table orders to orders_old after 1.0.1 orders-v2, which "
        "made table orders_v2"
    )
    assert "scratchpad" not in check["message"]  # made and dropped by the run itself
    assert check["details"] == [
        {
            "step": "1.0.2 retire-orders",
            "contract": "renames table orders to orders_old",
            "expand_step": "1.0.1 orders-v2",
            "replacement": "table orders_v2",
        }
    ]


def test_a_run_that_only_expands_passes_without_a_rehearsal(target, scripts_dir, monkeypatch):
    from migrator.validation import rehearsal

    write_script(scripts_dir, "1.0.0", "schema", up=SCHEMA, down="pass")
    assert tbmigrate("run", database=target).code == 0
    step(scripts_dir, "1.0.1", "a", "db.add_column('orders', 'a', 'INTEGER')", down="x = 'DROP'")
    step(scripts_dir, "1.0.2", "b", "db.add_column('orders', 'b', 'INTEGER')")
    calls: list[str] = []
    monkeypatch.setattr(rehearsal, "scratch_database", lambda *a: calls.append("made"))
    result = tbmigrate("validate", "migration", "1.0.2", database=target)
    assert result.code == 0, result.out
    ((level, _),) = checks_named(result, "expand_contract")
    assert level == "PASS" and calls == []


def test_a_step_that_both_expands_and_contracts_is_warned(target, scripts_dir):
    write_script(scripts_dir, "1.0.0", "schema", up=SCHEMA, down="pass")
    assert tbmigrate("run", database=target).code == 0
    step(
        scripts_dir,
        "1.0.1",
        "swap-qty",
        "db.add_column('orders', 'qty_lots', 'BIGINT')\ndb.drop_column('orders', 'qty')",
    )
    result = tbmigrate("validate", "migration", "1.0.1", database=target)
    ((level, message),) = checks_named(result, "expand_contract")
    assert level == "WARN"
    assert message.startswith(
        "1.0.1 swap-qty drops column orders.qty in the very step that makes column "
        "orders.qty_lots: the application still running uses orders.qty"
    )


HELPERS = """
db.add_column("orders", "fee_cents", "BIGINT")
db.batched_update("orders", "fee_cents = 0", "fee_cents IS NULL")
db.set_not_null("orders", "fee_cents")
db.add_check("orders", "orders_fee_cents_positive", "fee_cents >= 0")
db.add_foreign_key("orders", ["id"], "users")
db.create_index("orders", ["code", "note"], concurrently=True)
"""


def test_the_db_helpers_pass_in_a_non_atomic_script_and_are_refused_in_an_atomic_one(
    big_codes, scripts_dir
):
    """The helpers' own statements, sent for real: in a non-atomic script each strong lock
    is an instant and the gate lets them through; in an atomic one the lock of
    set_not_null's first statement is held through its scan, which the gate refuses (as
    the helper's docstring warns)."""
    step(
        scripts_dir,
        "1.0.1",
        "not-null-at-once",
        'db.add_column("symbols", "fee_cents", "BIGINT")\n'
        'db.execute("UPDATE symbols SET fee_cents = 0")\n'
        'db.set_not_null("orders", "code")',
    )
    refused = tbmigrate("run", database=big_codes)
    assert refused.code == 1
    assert "[exclusive-then-long]" in refused.err and "VALIDATE CONSTRAINT" in refused.err
    next(scripts_dir.glob("*1.0.1-not-null-at-once.py")).unlink()
    step(scripts_dir, "1.0.1", "fee-cents", HELPERS, atomic=False)
    result = tbmigrate("run", database=big_codes)
    assert result.code == 0, result.err
    assert rows(
        big_codes,
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass "
        "AND attname = 'fee_cents'",
    ) == [(True,)]
    assert rows(big_codes, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == [(0,)]
