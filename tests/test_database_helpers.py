"""The `db` object scripts receive, on both databases, checked through introspection."""

import pytest
from django.db import IntegrityError, connections, transaction

from migrator.database import Database
from tests.conftest import rows, tbmigrate, write_script


@pytest.fixture
def db(target):
    return Database(connections[target.alias])


def test_vendor_and_placeholders_work_the_same_on_both(db, target):
    assert db.vendor == target.vendor
    db.execute(f"CREATE TABLE pets (id {db.auto_pk}, name VARCHAR(20), adopted BOOLEAN)")
    db.execute("INSERT INTO pets (name, adopted) VALUES (%s, %s)", ["Rex", True])
    db.execute("INSERT INTO pets (name, adopted) VALUES (%s, %s)", ["50% cat", False])
    assert db.fetchall("SELECT name FROM pets WHERE adopted = %s ORDER BY id", [False]) == [
        ("50% cat",)
    ]
    assert db.scalar("SELECT COUNT(*) FROM pets") == 2
    assert db.execute("SELECT id FROM pets ORDER BY id").fetchall() == [(1,), (2,)]


def test_execute_script_runs_several_statements(db):
    db.execute_script(
        "CREATE TABLE a (id INTEGER); CREATE TABLE b (id INTEGER);\nINSERT INTO a VALUES (1);"
    )
    assert db.table_exists("a") and db.table_exists("b")
    assert db.scalar("SELECT id FROM a") == 1


def test_table_column_and_index_introspection(db):
    assert not db.table_exists("things")
    db.execute("CREATE TABLE things (id INTEGER PRIMARY KEY, label VARCHAR(10))")
    assert db.table_exists("things")
    assert db.columns("things") == ["id", "label"]
    assert db.column_exists("things", "label") and not db.column_exists("things", "nope")
    assert not db.column_exists("nothing", "id")
    name = db.create_index("things", ["label"])
    assert name == "things_label_idx" and db.index_exists(name)
    db.drop_index(name)
    assert not db.index_exists(name)
    db.drop_index(name)  # IF EXISTS by default: a second drop is fine


def test_add_rename_and_drop_column(db):
    db.execute("CREATE TABLE acct (id INTEGER PRIMARY KEY, a VARCHAR(5))")
    db.execute("INSERT INTO acct (id, a) VALUES (1, 'x')")
    db.add_column("acct", "tz", "VARCHAR(64) NOT NULL DEFAULT 'UTC'")
    assert db.fetchall("SELECT id, a, tz FROM acct") == [(1, "x", "UTC")]
    db.rename_column("acct", "tz", "timezone")
    assert db.columns("acct") == ["id", "a", "timezone"]
    db.drop_column("acct", "timezone")
    assert db.columns("acct") == ["id", "a"]
    assert db.fetchall("SELECT id, a FROM acct") == [(1, "x")]


def test_drop_column_of_a_missing_column_says_so(db):
    db.execute("CREATE TABLE acct (id INTEGER PRIMARY KEY)")
    with pytest.raises(Exception, match="nope"):
        db.drop_column("acct", "nope")


def _parent_with_children(db):
    db.execute(f"CREATE TABLE parent (id {db.auto_pk}, name VARCHAR(10) UNIQUE, extra VARCHAR(10))")
    db.create_index("parent", ["extra"])
    db.create_index("parent", ["name", "id"], name="parent_name_id_idx")
    db.execute(f"""CREATE TABLE child (id {db.auto_pk},
                   parent_id BIGINT NOT NULL REFERENCES parent (id) ON DELETE CASCADE)""")
    db.execute(f"""CREATE TABLE ward (id {db.auto_pk},
                   parent_id BIGINT REFERENCES parent (id) ON DELETE SET NULL)""")
    db.execute("CREATE VIEW parent_names AS SELECT id, name FROM parent")
    for n in range(1, 4):
        db.execute("INSERT INTO parent (name, extra) VALUES (%s, %s)", [f"p{n}", "e"])
    db.execute("DELETE FROM parent WHERE id = 3")  # the counter must not go back to 3
    for parent in (1, 1, 2):
        db.execute("INSERT INTO child (parent_id) VALUES (%s)", [parent])
        db.execute("INSERT INTO ward (parent_id) VALUES (%s)", [parent])


def test_dropping_a_parent_column_keeps_every_child_row(target, scripts_dir, db):
    """The knex #1598 / sequelize #5007 trap: a SQLite table rebuild must not cascade."""
    _parent_with_children(db)
    write_script(
        scripts_dir, "1.0.0", "drop-extra", up='db.drop_column("parent", "extra")', down=None
    )
    assert tbmigrate("run", database=target).code == 0
    assert rows(target, "SELECT parent_id FROM child ORDER BY id") == [(1,), (1,), (2,)]
    assert rows(target, "SELECT parent_id FROM ward ORDER BY id") == [(1,), (1,), (2,)]
    assert db.columns("parent") == ["id", "name"]
    assert not db.index_exists("parent_extra_idx")  # its index went with the column
    assert db.index_exists("parent_name_id_idx")  # the others were kept
    assert rows(target, "SELECT name FROM parent_names ORDER BY id") == [("p1",), ("p2",)]
    db.execute("INSERT INTO parent (name) VALUES (%s)", ["p4"])
    assert db.scalar("SELECT id FROM parent WHERE name = %s", ["p4"]) == 4  # counter kept
    # the foreign keys still hold after the rebuild
    with pytest.raises(IntegrityError), transaction.atomic(using=target.alias):
        db.execute("INSERT INTO child (parent_id) VALUES (%s)", [99])
    with pytest.raises(IntegrityError), transaction.atomic(using=target.alias):
        db.execute("INSERT INTO parent (name) VALUES (%s)", ["p1"])  # UNIQUE kept


def test_drop_column_outside_a_step_also_keeps_children(db, target):
    _parent_with_children(db)
    db.drop_column("parent", "extra")
    assert rows(target, "SELECT COUNT(*) FROM child") == [(3,)]
    assert rows(target, "SELECT COUNT(*) FROM ward WHERE parent_id IS NOT NULL") == [(3,)]


def test_a_step_that_orphans_rows_fails_on_sqlite_as_it_does_on_postgresql(target, scripts_dir, db):
    _parent_with_children(db)
    write_script(
        scripts_dir, "1.0.0", "orphan", up='db.execute("INSERT INTO child (parent_id) VALUES (42)")'
    )
    result = tbmigrate("run", database=target)
    assert result.code == 1
    assert rows(target, "SELECT COUNT(*) FROM child") == [(3,)]
