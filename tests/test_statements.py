"""What the lock-hazard gate reads from a statement's text (``validation/statements.py``):
which table, which kind of change, whether an UPDATE is bounded by a key.  Pure
functions, no database: the facts themselves come from PostgreSQL (``test_hazards.py``)."""

from __future__ import annotations

import pytest

from migrator.validation.statements import Name, parse, tokenize

KEYS = {"id"}


@pytest.mark.parametrize(
    ("sql", "bounded"),
    [
        ("UPDATE orders SET status = 'x'", False),
        ("UPDATE orders SET status = 'x' WHERE status IS NULL", False),
        ("UPDATE orders SET status = 'x' WHERE id = %s", True),
        ("UPDATE orders o SET status = 'x' WHERE o.id = 42", True),
        ("UPDATE orders SET status = 'x' WHERE id IN (1, 2, %s)", True),
        ("UPDATE orders SET status = 'x' WHERE id = ANY(%s)", True),
        ("UPDATE orders SET status = 'x' WHERE id BETWEEN 1 AND 1000 AND qty > 0", True),
        ('UPDATE "orders" SET a = 1 WHERE "id" > %s AND "id" <= %s AND (a IS NULL)', True),
        ('UPDATE "orders" SET a = 1 WHERE "id" <= %s AND (a IS NULL)', True),
        ("DELETE FROM orders WHERE id < 1000000", False),  # one side, a literal: no batch
        ("DELETE FROM orders WHERE id > 10 AND id <= 20", True),
        ("DELETE FROM orders WHERE id IN (SELECT id FROM old_orders)", False),
        ("DELETE FROM orders WHERE id IN (SELECT id FROM orders WHERE x LIMIT %s)", True),
        ("DELETE FROM orders WHERE qty = 3", False),  # not a key
        (
            "WITH batch AS (SELECT id FROM orders WHERE fee IS NULL ORDER BY id LIMIT %s) "
            "UPDATE orders SET fee = 0 FROM batch WHERE orders.id = batch.id",
            True,
        ),
        (
            "UPDATE orders SET fee = 0 FROM (SELECT id FROM orders LIMIT 100) b "
            "WHERE orders.id = b.id",
            True,
        ),
        ("UPDATE orders SET fee = (SELECT rate FROM fx ORDER BY at DESC LIMIT 1)", False),
        (
            "UPDATE orders SET fee = (SELECT rate FROM fx LIMIT 1) FROM users "
            "WHERE orders.id = users.id",
            False,
        ),
    ],
)
def test_an_update_is_bounded_only_by_a_key(sql, bounded):
    shape = parse(sql)
    assert shape.verb in ("update", "delete")
    assert shape.table is not None and shape.table.name == "orders"
    assert shape.bounded_by(KEYS) is bounded


def test_names_are_read_as_postgresql_resolves_them():
    shape = parse('UPDATE ONLY "Trading"."Orders" SET a = 1 -- a comment; UPDATE x\n')
    assert shape.table == Name("Trading", "Orders")
    assert parse(
        "/* UPDATE x /* nested */ */ alter table public.ORDERS add column n int"
    ).table == (Name("public", "orders"))
    assert parse("DO $$ BEGIN UPDATE orders SET a = 1; END $$").verb == "other"
    assert [t.kind for t in tokenize("SELECT $tag$ x; 'y' $tag$, 'it''s', %s, $1")] == [
        "word",
        "string",
        "op",
        "string",
        "op",
        "param",
        "op",
        "param",
    ]


def test_alter_table_is_read_action_by_action():
    shape = parse(
        "ALTER TABLE IF EXISTS orders ADD COLUMN note TEXT DEFAULT 'x', "
        "ALTER COLUMN qty SET NOT NULL, ALTER COLUMN qty TYPE BIGINT USING qty::bigint, "
        "ADD CONSTRAINT f FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID, "
        "ADD CONSTRAINT c CHECK (qty > 0), VALIDATE CONSTRAINT g, "
        "ADD COLUMN ext BIGINT UNIQUE, ADD COLUMN owner BIGINT REFERENCES users, "
        "ADD PRIMARY KEY USING INDEX orders_pk, ALTER COLUMN type DROP DEFAULT"
    )
    assert shape.verb == "alter-table" and shape.table == Name(None, "orders")
    kinds = [(a.kind, a.column, a.constraint) for a in shape.actions]
    assert kinds == [
        ("add-column", "note", None),
        ("set-not-null", "qty", None),
        ("alter-type", "qty", None),
        ("add-constraint", None, "foreign"),
        ("add-constraint", None, "check"),
        ("validate", None, "g"),
        ("add-column", "ext", None),
        ("add-column", "owner", None),
        ("add-constraint", None, "primary"),
        ("other", "type", None),
    ]
    actions = shape.actions
    assert actions[0].default and actions[3].not_valid and not actions[4].not_valid
    assert actions[6].indexed and actions[7].references and actions[8].using_index


@pytest.mark.parametrize(
    ("sql", "verb", "concurrently"),
    [
        ("CREATE INDEX orders_qty ON orders (qty)", "create-index", False),
        (
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON ONLY orders (a)",
            "create-index",
            True,
        ),
        ("REINDEX TABLE CONCURRENTLY orders", "reindex", True),
        ("VACUUM (FULL, VERBOSE) orders", "rewrite", False),
        ("VACUUM ANALYZE orders", "other", False),
        ("CLUSTER orders USING orders_pkey", "rewrite", False),
    ],
)
def test_index_builds_and_rewrites(sql, verb, concurrently):
    shape = parse(sql)
    assert (shape.verb, shape.concurrently) == (verb, concurrently)
    if verb != "other":
        assert shape.table == Name(None, "orders")


def test_reads_and_odd_text():
    assert [str(n) for n in parse("INSERT INTO a SELECT * FROM b JOIN s.c ON true").reads] == [
        "b",
        "s.c",
    ]
    assert parse("CREATE TABLE x AS SELECT * FROM orders").verb == "create-table-as"
    assert parse("SELECT count(*) FROM orders").limited is False
    assert parse("SELECT max(id) FROM (SELECT id FROM orders LIMIT %s) b").limited is True
    for junk in ("", ";", "UPDATE", "ALTER TABLE", "((((", "'unterminated", "$$ x", "/* open"):
        assert parse(junk).verb in ("other", "update")
