"""The safe recipes on ``db``: ``set_not_null``, ``add_check``, ``add_foreign_key``,
``drop_constraint``, ``create_index``, and the renames and drops, on both databases.

The end state is read back through Django's introspection and the catalogs (a constraint
there and validated, the column NOT NULL, the index valid, every row kept), each helper is
run twice and after the state an interrupted run leaves, and each failure is made real
(rows breaking the constraint, duplicate keys).  A real blocking session holding the table
is in ``tests/test_recipes_locks.py``.
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connections, transaction

from migrator import recipes, sqlite_rebuild
from migrator.database import Database
from migrator.errors import SchemaChangeError
from tests.conftest import rows, tbmigrate, write_script


@pytest.fixture
def db(target):
    return Database(connections[target.alias])


def nullable(db, table: str, column: str) -> bool:
    """Django's own reading of the column."""
    with db.connection.cursor() as cursor:
        description = db.connection.introspection.get_table_description(cursor, table)
    return next(c.null_ok for c in description if c.name == column)


def constraints(db, table: str) -> dict[str, dict]:
    """Django's introspection of the table's constraints, by name."""
    with db.connection.cursor() as cursor:
        return db.connection.introspection.get_constraints(cursor, table)


def validated(db, table: str, name: str) -> bool | None:
    """PostgreSQL: whether the constraint is validated (None: absent).  SQLite has no
    unvalidated constraints: present is validated."""
    if db.is_postgresql:
        return db.scalar(
            "SELECT convalidated FROM pg_constraint WHERE conrelid = %s::regclass AND conname = %s",
            [table, name],
        )
    return True if sqlite_rebuild.constraint_sql(db, table, name) is not None else None


def statements_of(db, work) -> list[str]:
    """The statements ``work()`` sends, as a step's audit event would keep them (the
    helpers' catalog look-ups are not among them)."""
    seen: list[str] = []

    def keep(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with db.connection.execute_wrapper(keep):
        work()
    return seen


def orders_and_trades(db, *, null_fee: bool = False) -> None:
    """orders (with a nullable fee) and trades referencing nothing yet, a view and an
    index on trades, and a table referencing trades."""
    db.execute(f"CREATE TABLE orders (id {db.auto_pk}, fee INTEGER, note VARCHAR(20) NULL)")
    db.execute(
        f"CREATE TABLE trades (id {db.auto_pk}, order_id BIGINT, price INTEGER NOT NULL, "
        "symbol VARCHAR(10) DEFAULT NULL)"
    )
    db.execute(
        f"CREATE TABLE fills (id {db.auto_pk}, "
        "trade_id BIGINT NOT NULL REFERENCES trades (id) ON DELETE CASCADE)"
    )
    db.create_index("trades", ["symbol"])
    db.execute("CREATE VIEW priced AS SELECT id, price FROM trades")
    for n in range(1, 4):
        db.execute("INSERT INTO orders (fee) VALUES (%s)", [None if null_fee and n == 2 else n])
    for order in (1, 1, 2, 3):
        db.execute("INSERT INTO trades (order_id, price) VALUES (%s, %s)", [order, 10 * order])
    for trade in (1, 2, 2, 4):
        db.execute("INSERT INTO fills (trade_id) VALUES (%s)", [trade])


def kept(target) -> dict[str, list[tuple]]:
    return {
        "orders": rows(target, "SELECT id, fee FROM orders ORDER BY id"),
        "trades": rows(target, "SELECT id, order_id, price FROM trades ORDER BY id"),
        "fills": rows(target, "SELECT id, trade_id FROM fills ORDER BY id"),
        "priced": rows(target, "SELECT id, price FROM priced ORDER BY id"),
    }


# -- set_not_null / drop_not_null -----------------------------------------------------------
def test_set_not_null_makes_the_column_not_null_keeping_every_row(db, target):
    orders_and_trades(db)
    before = kept(target)
    db.set_not_null("orders", "fee")
    assert not nullable(db, "orders", "fee")
    assert kept(target) == before
    # the temporary CHECK is gone: only what was there before remains
    assert recipes.not_null_check_name("orders", "fee") not in constraints(db, "orders")
    with pytest.raises(IntegrityError), transaction.atomic(using=target.alias):
        db.execute("INSERT INTO orders (fee) VALUES (NULL)")


def test_set_not_null_runs_the_safe_sequence_on_postgresql(db, target):
    orders_and_trades(db)
    sent = statements_of(db, lambda: db.set_not_null("orders", "fee"))
    if db.is_postgresql:
        assert sent == [
            'ALTER TABLE "orders" ADD CONSTRAINT "orders_fee_not_null_check" '
            'CHECK ("fee" IS NOT NULL) NOT VALID',
            'ALTER TABLE "orders" VALIDATE CONSTRAINT "orders_fee_not_null_check"',
            'ALTER TABLE "orders" ALTER COLUMN "fee" SET NOT NULL',
            'ALTER TABLE "orders" DROP CONSTRAINT IF EXISTS "orders_fee_not_null_check"',
        ]
    else:
        assert any(s.startswith('CREATE TABLE "tbmigrate_rebuild_orders"') for s in sent)
    # a second run has nothing to do
    assert statements_of(db, lambda: db.set_not_null("orders", "fee")) == []


def test_set_not_null_does_not_scan_the_table_under_its_strong_lock(make_database):
    """PostgreSQL says (at DEBUG1) when SET NOT NULL skips its scan because a validated
    CHECK proves there is no NULL: the one scan ran in VALIDATE, under the weak lock."""
    target = make_database("postgresql")
    db = Database(connections[target.alias])
    orders_and_trades(db)
    heard: list[str] = []
    db.connection.ensure_connection()
    db.connection.connection.add_notice_handler(lambda notice: heard.append(notice.message_primary))
    db.execute("SET client_min_messages = debug1")
    try:
        db.set_not_null("orders", "fee")
    finally:
        db.execute("RESET client_min_messages")
    assert (
        'existing constraints on column "orders.fee" are sufficient to prove that it does not '
        "contain nulls"
    ) in heard


@pytest.mark.parametrize("left", ["not valid check", "valid check", "not null and check"])
def test_set_not_null_finishes_what_an_interrupted_run_left(make_database, left):
    """PostgreSQL only (on SQLite the change is one transaction: nothing is left half-way):
    each state a run stopped between two statements leaves is finished by the rerun."""
    target = make_database("postgresql")
    db = Database(connections[target.alias])
    orders_and_trades(db)
    check = recipes.not_null_check_name("orders", "fee")
    db.execute(f'ALTER TABLE orders ADD CONSTRAINT "{check}" CHECK (fee IS NOT NULL) NOT VALID')
    if left != "not valid check":
        db.execute(f'ALTER TABLE orders VALIDATE CONSTRAINT "{check}"')
    if left == "not null and check":
        db.execute("ALTER TABLE orders ALTER COLUMN fee SET NOT NULL")
    sent = statements_of(db, lambda: db.set_not_null("orders", "fee"))
    assert not any("ADD CONSTRAINT" in s for s in sent)  # the first run's check is reused
    assert any("VALIDATE" in s for s in sent) == (left == "not valid check")
    assert not nullable(db, "orders", "fee")
    assert validated(db, "orders", check) is None


def test_set_not_null_with_null_rows_fails_clearly_and_changes_nothing(db, target):
    orders_and_trades(db, null_fee=True)
    before = kept(target)
    with pytest.raises(SchemaChangeError) as failure:
        db.set_not_null("orders", "fee")
    message = str(failure.value)
    assert message.startswith("set_not_null: some rows of orders have fee NULL")
    assert "nothing was changed" in message and "\n" not in message
    assert nullable(db, "orders", "fee")
    assert validated(db, "orders", recipes.not_null_check_name("orders", "fee")) is None
    assert kept(target) == before


@pytest.mark.parametrize("atomic", [True, False])
def test_a_step_whose_set_not_null_meets_null_rows_fails_with_one_line(
    target, scripts_dir, db, atomic
):
    orders_and_trades(db, null_fee=True)
    write_script(
        scripts_dir, "1.0.0", "fee-not-null", up='db.set_not_null("orders", "fee")', atomic=atomic
    )
    result = tbmigrate("run", database=target)
    assert result.code == 1
    assert (
        "1.0.0 fee-not-null failed to apply: SchemaChangeError: set_not_null: some rows of "
        "orders have fee NULL" in result.err
    )
    assert nullable(db, "orders", "fee")
    assert validated(db, "orders", recipes.not_null_check_name("orders", "fee")) is None


def test_drop_not_null_is_the_down_and_a_rerun_is_harmless(db, target):
    orders_and_trades(db)
    db.set_not_null("trades", "order_id")
    before = kept(target)
    db.drop_not_null("trades", "order_id")
    assert nullable(db, "trades", "order_id")
    assert statements_of(db, lambda: db.drop_not_null("trades", "order_id")) == []
    db.drop_not_null("trades", "price")  # NOT NULL from its CREATE TABLE
    assert nullable(db, "trades", "price")
    assert kept(target) == before
    with pytest.raises(SchemaChangeError, match="trades has no column nope"):
        db.drop_not_null("trades", "nope")


def test_drop_not_null_also_drops_the_check_an_interrupted_set_not_null_left(make_database):
    target = make_database("postgresql")
    db = Database(connections[target.alias])
    orders_and_trades(db)
    check = recipes.not_null_check_name("orders", "fee")
    db.execute(f'ALTER TABLE orders ADD CONSTRAINT "{check}" CHECK (fee IS NOT NULL) NOT VALID')
    db.drop_not_null("orders", "fee")
    assert validated(db, "orders", check) is None
    db.execute("INSERT INTO orders (fee) VALUES (NULL)")


# -- add_check ------------------------------------------------------------------------------
def test_add_check_adds_a_validated_constraint_and_drop_constraint_removes_it(db, target):
    orders_and_trades(db)
    before = kept(target)
    db.add_check("trades", "trades_price_positive", "price > 0")
    assert validated(db, "trades", "trades_price_positive") is True
    assert constraints(db, "trades")["trades_price_positive"]["check"]
    assert kept(target) == before
    with pytest.raises(IntegrityError), transaction.atomic(using=target.alias):
        db.execute("INSERT INTO trades (order_id, price) VALUES (1, -5)")
    assert (
        statements_of(db, lambda: db.add_check("trades", "trades_price_positive", "price > 0"))
        == []
    )
    db.drop_constraint("trades", "trades_price_positive")
    assert validated(db, "trades", "trades_price_positive") is None
    assert "trades_price_positive" not in constraints(db, "trades")
    assert statements_of(db, lambda: db.drop_constraint("trades", "trades_price_positive")) == []
    db.execute("INSERT INTO trades (order_id, price) VALUES (1, -5)")
    assert kept(target)["fills"] == before["fills"]


def test_add_check_is_not_valid_then_validate_on_postgresql(db):
    orders_and_trades(db)
    sent = statements_of(db, lambda: db.add_check("trades", "trades_price_positive", "price > 0"))
    if db.is_postgresql:
        assert sent == [
            'ALTER TABLE "trades" ADD CONSTRAINT "trades_price_positive" CHECK (price > 0) '
            "NOT VALID",
            'ALTER TABLE "trades" VALIDATE CONSTRAINT "trades_price_positive"',
        ]


def test_add_check_validates_a_not_valid_one_left_by_an_interrupted_run(make_database):
    target = make_database("postgresql")
    db = Database(connections[target.alias])
    orders_and_trades(db)
    db.execute(
        "ALTER TABLE trades ADD CONSTRAINT trades_price_positive CHECK (price > 0) NOT VALID"
    )
    sent = statements_of(db, lambda: db.add_check("trades", "trades_price_positive", "price > 0"))
    assert sent == ['ALTER TABLE "trades" VALIDATE CONSTRAINT "trades_price_positive"']
    assert validated(db, "trades", "trades_price_positive") is True


def test_a_not_valid_constraint_that_was_there_before_is_left_when_rows_break_it(make_database):
    """Only what the call itself added is dropped again: a NOT VALID constraint written
    earlier (it already guards new rows) stays as it was."""
    target = make_database("postgresql")
    db = Database(connections[target.alias])
    orders_and_trades(db)
    db.execute("UPDATE trades SET price = -1 WHERE id = 2")
    db.execute(
        "ALTER TABLE trades ADD CONSTRAINT trades_price_positive CHECK (price > 0) NOT VALID"
    )
    with pytest.raises(SchemaChangeError) as failure:
        db.add_check("trades", "trades_price_positive", "price > 0")
    assert str(failure.value).endswith(
        "(nothing was changed); the NOT VALID constraint trades_price_positive, there before, "
        'stays as it was (ALTER TABLE "trades" DROP CONSTRAINT "trades_price_positive" if it '
        "is not wanted)"
    )
    assert validated(db, "trades", "trades_price_positive") is False


def test_add_check_with_breaking_rows_fails_clearly_and_changes_nothing(db, target):
    orders_and_trades(db)
    db.execute("UPDATE trades SET price = -1 WHERE id = 2")
    before = kept(target)
    with pytest.raises(SchemaChangeError) as failure:
        db.add_check("trades", "trades_price_positive", "price > 0")
    assert str(failure.value) == (
        "add_check: some rows of trades break trades_price_positive (CHECK (price > 0)); fix "
        "them, then run again (nothing was changed)"
    )
    assert validated(db, "trades", "trades_price_positive") is None
    assert kept(target) == before
    db.execute("INSERT INTO trades (order_id, price) VALUES (1, -5)")  # not enforced either


# -- add_foreign_key ------------------------------------------------------------------------
def test_add_foreign_key_keeps_every_row_and_is_enforced(db, target):
    orders_and_trades(db)
    before = kept(target)
    name = db.add_foreign_key("trades", ["order_id"], "orders")
    assert name == "trades_order_id_fkey"
    assert validated(db, "trades", name) is True
    found = [c for c in constraints(db, "trades").values() if c["foreign_key"]]
    assert [(c["columns"], c["foreign_key"]) for c in found] == [(["order_id"], ("orders", "id"))]
    # SQLite rebuilt trades: the fills pointing at it, its index and the view are all there
    assert kept(target) == before
    assert db.index_exists("trades_symbol_idx")
    with pytest.raises(IntegrityError), transaction.atomic(using=target.alias):
        db.execute("INSERT INTO trades (order_id, price) VALUES (99, 1)")
    db.execute("INSERT INTO trades (order_id, price) VALUES (NULL, 1)")  # NULL: no reference
    assert statements_of(db, lambda: db.add_foreign_key("trades", "order_id", "orders")) == []
    db.drop_constraint("trades", name)
    assert validated(db, "trades", name) is None
    db.execute("INSERT INTO trades (order_id, price) VALUES (99, 1)")
    assert kept(target)["fills"] == before["fills"]


def test_add_foreign_key_on_delete_cascade(db, target):
    orders_and_trades(db)
    db.add_foreign_key(
        "trades", ["order_id"], "orders", ["id"], name="trades_order_fk", on_delete="cascade"
    )
    db.execute("DELETE FROM orders WHERE id = 1")
    assert rows(target, "SELECT order_id FROM trades ORDER BY id") == [(2,), (3,)]


def test_add_foreign_key_is_not_valid_then_validate_on_postgresql(db):
    orders_and_trades(db)
    sent = statements_of(
        db, lambda: db.add_foreign_key("trades", ["order_id"], "orders", name="trades_order_fk")
    )
    if db.is_postgresql:
        assert sent == [
            'ALTER TABLE "trades" ADD CONSTRAINT "trades_order_fk" FOREIGN KEY ("order_id") '
            'REFERENCES "orders" ("id") NOT VALID',
            'ALTER TABLE "trades" VALIDATE CONSTRAINT "trades_order_fk"',
        ]


def test_add_foreign_key_with_orphans_fails_naming_one_and_changes_nothing(db, target):
    orders_and_trades(db)
    db.execute("UPDATE trades SET order_id = 42 WHERE id = 3")
    before = kept(target)
    with pytest.raises(SchemaChangeError) as failure:
        db.add_foreign_key("trades", ["order_id"], "orders", name="trades_order_fk")
    assert str(failure.value) == (
        "add_foreign_key: some rows of trades point at no row of orders (Key (order_id)=(42) "
        'is not present in table "orders"); fix, delete or set them NULL, then run again '
        "(nothing was changed)"
    )
    assert validated(db, "trades", "trades_order_fk") is None
    assert kept(target) == before


def test_add_foreign_key_refuses_columns_that_are_not_a_key(db):
    orders_and_trades(db)
    with pytest.raises(Exception, match="unique"):
        db.add_foreign_key("trades", ["order_id"], "orders", ["fee"])
    with pytest.raises(SchemaChangeError, match="is not one of NO ACTION"):
        db.add_foreign_key("trades", ["order_id"], "orders", on_delete="explode")


def test_a_rebuilt_parent_keeps_its_children_views_triggers_and_counter(db, target):
    """SQLite rebuilds orders here; every table and object that names it survives."""
    orders_and_trades(db)
    db.add_foreign_key("trades", ["order_id"], "orders")
    db.execute("CREATE TABLE audit (what VARCHAR(40))")
    db.execute("CREATE VIEW fees AS SELECT id, fee FROM orders")
    db.execute("CREATE VIEW big_fees AS SELECT id FROM fees WHERE fee > 1")
    trigger = "CREATE TRIGGER trades_seen AFTER INSERT ON trades FOR EACH ROW " + (
        "EXECUTE FUNCTION trades_seen()"
        if db.is_postgresql
        else "BEGIN INSERT INTO audit SELECT 'fee ' || fee FROM orders WHERE id = NEW.order_id; END"
    )
    if db.is_postgresql:
        db.execute(
            "CREATE FUNCTION trades_seen() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO audit SELECT 'fee ' || fee FROM orders WHERE id = NEW.order_id; "
            "RETURN NEW; END $$"
        )
    db.execute(trigger)
    db.execute("DELETE FROM trades WHERE order_id = 3")
    db.execute("DELETE FROM orders WHERE id = 3")  # the counter must not go back to 3
    db.set_not_null("orders", "fee")
    db.add_check("orders", "orders_fee_small", "fee < 100")
    assert rows(target, "SELECT id FROM big_fees ORDER BY id") == [(2,)]
    assert rows(target, "SELECT order_id FROM trades ORDER BY id") == [(1,), (1,), (2,)]
    db.execute("INSERT INTO trades (order_id, price) VALUES (2, 5)")
    assert rows(target, "SELECT what FROM audit") == [("fee 2",)]
    db.execute("INSERT INTO orders (fee) VALUES (7)")
    assert db.scalar("SELECT MAX(id) FROM orders") == 4
    with pytest.raises(IntegrityError), transaction.atomic(using=target.alias):
        db.execute("DELETE FROM orders WHERE id = 2")  # trades still point at it


def test_through_a_migration_step_both_kinds_of_step_keep_the_children(target, scripts_dir, db):
    """An atomic step (foreign keys off before its transaction) and a non-atomic one (the
    helper turns them off around its own)."""
    orders_and_trades(db)
    before = kept(target)
    write_script(
        scripts_dir,
        "1.0.0",
        "trade-price-check",
        up='db.add_check("trades", "trades_price_positive", "price > 0")',
        down='db.drop_constraint("trades", "trades_price_positive")',
    )
    write_script(
        scripts_dir,
        "1.0.1",
        "trade-order-fk",
        up='db.add_foreign_key("trades", ["order_id"], "orders")',
        down='db.drop_constraint("trades", "trades_order_id_fkey")',
        atomic=False,
    )
    assert tbmigrate("run", database=target).code == 0
    assert validated(db, "trades", "trades_price_positive") is True
    assert validated(db, "trades", "trades_order_id_fkey") is True
    assert kept(target) == before
    assert tbmigrate("rollback", "--to", "0", "--no-input", database=target).code == 0
    assert validated(db, "trades", "trades_price_positive") is None
    assert validated(db, "trades", "trades_order_id_fkey") is None
    assert kept(target) == before


# -- create_index ---------------------------------------------------------------------------
def invalid_indexes(db) -> list[str]:
    if not db.is_postgresql:
        return []
    return [
        name
        for (name,) in db.fetchall(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE NOT i.indisvalid"
        )
    ]


def index_valid(db, name: str) -> bool:
    found = recipes.index(db, name)
    return found is not None and found.valid


def test_create_index_concurrently_is_idempotent(db):
    orders_and_trades(db)
    name = db.create_index("trades", ["order_id", "price"], concurrently=True)
    assert name == "trades_order_id_price_idx"
    assert index_valid(db, name)
    found = constraints(db, "trades")[name]
    assert found["index"] and found["columns"] == ["order_id", "price"]
    sent = statements_of(
        db, lambda: db.create_index("trades", ["order_id", "price"], concurrently=True)
    )
    assert sent == []
    with pytest.raises(SchemaChangeError, match=r"already exists .* drop it, or give this one"):
        db.create_index("trades", ["price"], name=name, concurrently=True)
    db.drop_index(name, concurrently=True)
    assert not db.index_exists(name)
    db.drop_index(name, concurrently=True)


def test_create_index_replaces_an_invalid_leftover(make_database):
    """What a failed CREATE INDEX CONCURRENTLY leaves (here: duplicates for a UNIQUE one)
    is dropped, and the index built anew."""
    target = make_database("postgresql")
    db = Database(connections[target.alias])
    orders_and_trades(db)
    with pytest.raises(IntegrityError):
        db.execute("CREATE UNIQUE INDEX CONCURRENTLY trades_order ON trades (order_id)")
    assert invalid_indexes(db) == ["trades_order"]
    db.execute("UPDATE trades SET order_id = 4 WHERE id = 2")
    db.create_index("trades", ["order_id"], name="trades_order", unique=True, concurrently=True)
    assert invalid_indexes(db) == []
    assert index_valid(db, "trades_order")


def test_a_unique_index_over_duplicates_fails_clearly_leaving_nothing_invalid(db, target):
    orders_and_trades(db)
    with pytest.raises(SchemaChangeError) as failure:
        db.create_index("trades", ["order_id"], name="trades_order", unique=True, concurrently=True)
    message = str(failure.value)
    assert message.startswith("create_index: trades has duplicate values of (order_id) (")
    assert message.endswith(
        "so the UNIQUE index trades_order cannot be built; remove the duplicates, then run "
        "again (nothing was left behind)"
    )
    if db.is_postgresql:
        assert "Key (order_id)=(1) is duplicated" in message
    assert invalid_indexes(db) == []
    assert not db.index_exists("trades_order")


def test_concurrently_in_an_atomic_step_fails_before_running(target, scripts_dir, db):
    orders_and_trades(db)
    write_script(
        scripts_dir,
        "1.0.0",
        "index-trades",
        up='db.execute("CREATE TABLE before_it (id INTEGER)")\n'
        'db.create_index("trades", ["price"], concurrently=True)',
    )
    result = tbmigrate("run", database=target)
    assert result.code == 1
    assert (
        "SchemaChangeError: create_index(concurrently=True) cannot run inside the step's "
        "transaction (CREATE INDEX CONCURRENTLY never runs in one): set atomic = False in the "
        "script"
    ) in result.err
    assert not db.table_exists("before_it")  # the step rolled back
    assert not db.index_exists("trades_price_idx")


def test_long_default_names_are_shortened_the_same_way_every_time(db):
    table = "t" * 40
    db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, {'c' * 30} INTEGER)")
    name = db.create_index(table, ["c" * 30])
    assert len(name.encode()) <= 63 and db.index_exists(name)
    assert db.create_index(table, ["c" * 30]) == name  # found again: a no-op


# -- renames and drops ----------------------------------------------------------------------
def test_renames_and_drops_are_harmless_when_run_again(db, target):
    orders_and_trades(db)
    before = kept(target)
    db.rename_column("orders", "note", "remark")
    db.rename_column("orders", "note", "remark")
    assert "remark" in db.columns("orders")
    db.rename_table("orders", "trade_orders")
    db.rename_table("orders", "trade_orders")
    assert db.table_exists("trade_orders") and not db.table_exists("orders")
    db.drop_column("trade_orders", "remark")
    db.drop_column("trade_orders", "remark", if_exists=True)
    with pytest.raises(Exception, match="remark"):
        db.drop_column("trade_orders", "remark")
    assert db.columns("trade_orders") == ["id", "fee"]
    assert rows(target, "SELECT id, fee FROM trade_orders ORDER BY id") == before["orders"]


# -- SQLite's rebuild, read closely ---------------------------------------------------------
@pytest.mark.parametrize(
    ("column", "wanted", "expected"),
    [
        ('"fee" integer NULL', True, '"fee" integer NOT NULL'),
        ("fee INTEGER", True, "fee INTEGER NOT NULL"),
        ("fee INTEGER DEFAULT NULL", True, "fee INTEGER DEFAULT NULL NOT NULL"),
        (
            "fee INTEGER CHECK (fee IS NULL OR fee > 0)",
            True,
            "fee INTEGER CHECK (fee IS NULL OR fee > 0) NOT NULL",
        ),
        ("fee INTEGER NOT NULL", True, None),
        ("fee INTEGER NOT NULL DEFAULT 0", False, "fee INTEGER DEFAULT 0"),
        ("fee INTEGER CONSTRAINT fee_set NOT NULL ON CONFLICT ABORT", False, "fee INTEGER"),
        ("fee INTEGER DEFAULT NULL", False, None),
        ("[not] INTEGER NOT NULL", False, "[not] INTEGER"),
        ('"null" INTEGER', True, '"null" INTEGER NOT NULL'),
    ],
)
def test_sqlite_column_definitions_gain_and_lose_not_null(column, wanted, expected):
    assert sqlite_rebuild.not_null_clause(column, wanted) == expected


def test_sqlite_definitions_with_comments_and_quotes_are_read_whole():
    definition = sqlite_rebuild.Definition.parse(
        'CREATE TABLE "a, b" (\n  id INTEGER PRIMARY KEY, -- the key, (really)\n'
        "  \"x)\" TEXT DEFAULT ',', CONSTRAINT [c k] CHECK (id > 0)\n) WITHOUT ROWID"
    )
    assert [(i.column, i.constraint) for i in definition.items] == [
        ("id", None),
        ("x)", None),
        (None, "c k"),
    ]
    assert definition.tail == " WITHOUT ROWID"
    assert definition.sql_for('"n"') == (
        'CREATE TABLE "n" (id INTEGER PRIMARY KEY, "x)" TEXT DEFAULT \',\', '
        "CONSTRAINT [c k] CHECK (id > 0)) WITHOUT ROWID"
    )


def test_a_sqlite_rebuild_in_a_transaction_with_foreign_keys_on_is_refused(make_database):
    target = make_database("sqlite")
    db = Database(connections[target.alias])
    orders_and_trades(db)
    refused = pytest.raises(SchemaChangeError, match="needs foreign keys off before the trans")
    with refused, transaction.atomic(using=target.alias):
        db.set_not_null("orders", "fee")
    assert nullable(db, "orders", "fee")
