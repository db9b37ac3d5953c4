"""What a run sets up once and checks per step: foreign keys on SQLite, session settings.

SQLite runs atomic steps with foreign keys off (``migrator.executor``) and checks, per
step, only the tables the step touched (``migrator.fkguard``).  These tests make the
breaks really happen and show that both databases refuse them alike, and that a run
leaves the connection as it found it.
"""

from django.db import connections

from migrator.api import MigrationSystem
from tests.conftest import rows, tbmigrate, write_script


def _family(target):
    """parent 1 (two children), parent 2 (none); child references parent."""
    db = connections[target.alias]
    with db.cursor() as cursor:
        cursor.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY, name VARCHAR(20))")
        cursor.execute(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, "
            "parent_id INTEGER NOT NULL REFERENCES parent (id))"
        )
        cursor.execute("INSERT INTO parent (id, name) VALUES (1, 'one'), (2, 'two')")
        cursor.execute("INSERT INTO child (id, parent_id) VALUES (10, 1), (11, 1)")


def test_a_statement_an_earlier_step_prepared_is_still_checked(target, scripts_dir):
    """The same SQL text in two steps of one run: SQLite reuses the prepared statement,
    and the second step, which orphans rows, must still be caught."""
    _family(target)
    delete = 'db.execute("DELETE FROM parent WHERE id = %s", [{}])'
    write_script(scripts_dir, "1.0.0", "drop-two", up=delete.format(2))
    write_script(scripts_dir, "1.0.1", "drop-one", up=delete.format(1))
    result = tbmigrate("run", database=target)
    assert result.code == 1, result.out + result.err
    assert "1.0.1 drop-one failed" in result.err
    assert rows(target, "SELECT id FROM parent ORDER BY id") == [(1,)]
    assert rows(target, "SELECT COUNT(*) FROM child") == [(2,)]
    assert rows(target, "SELECT version FROM tbmigrate_applied_migration") == [("1.0.0",)]


def test_dropping_a_parent_table_with_children_fails_on_both(target, scripts_dir):
    _family(target)
    write_script(scripts_dir, "1.0.0", "drop-parent", up='db.execute("DROP TABLE parent")')
    result = tbmigrate("run", database=target)
    assert result.code == 1
    assert rows(target, "SELECT COUNT(*) FROM parent") == [(2,)]


def test_rows_broken_before_the_run_are_not_blamed_on_a_step(target, scripts_dir):
    """An orphan that was already there (SQLite: written with foreign keys off;
    PostgreSQL: a NOT VALID constraint) does not fail a step that writes the table."""
    db = connections[target.alias]
    with db.cursor() as cursor:
        cursor.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        cursor.execute("INSERT INTO parent (id) VALUES (1)")
        if target.vendor == "sqlite":
            cursor.execute(
                "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent)"
            )
            cursor.execute("PRAGMA foreign_keys = OFF")
            cursor.execute("INSERT INTO child (id, parent_id) VALUES (1, 99)")
            cursor.execute("PRAGMA foreign_keys = ON")
        else:
            cursor.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER)")
            cursor.execute("INSERT INTO child (id, parent_id) VALUES (1, 99)")
            cursor.execute(
                "ALTER TABLE child ADD CONSTRAINT child_parent FOREIGN KEY (parent_id) "
                "REFERENCES parent (id) NOT VALID"
            )
    write_script(
        scripts_dir,
        "1.0.0",
        "add-child",
        up='db.execute("INSERT INTO child (id, parent_id) VALUES (2, 1)")',
    )
    result = tbmigrate("run", database=target)
    assert result.code == 0, result.err
    assert rows(target, "SELECT id, parent_id FROM child ORDER BY id") == [(1, 99), (2, 1)]
    # ... but a new orphan in the same table still fails the next step.
    write_script(
        scripts_dir,
        "1.0.1",
        "orphan",
        up='db.execute("INSERT INTO child (id, parent_id) VALUES (3, 42)")',
    )
    assert tbmigrate("run", database=target).code == 1
    assert rows(target, "SELECT COUNT(*) FROM child") == [(2,)]


def test_a_table_created_with_a_foreign_key_is_checked_in_later_steps(target, scripts_dir):
    """The map of who points at whom grows with the run: a table made by step 1 with a
    REFERENCES clause is known when step 2 deletes its parent's rows."""
    write_script(
        scripts_dir,
        "1.0.0",
        "make",
        up="""
        db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        db.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent)")
        db.execute("INSERT INTO parent (id) VALUES (1)")
        db.execute("INSERT INTO child (id, p) VALUES (1, 1)")
        """,
    )
    write_script(scripts_dir, "1.0.1", "purge", up='db.execute("DELETE FROM parent")')
    result = tbmigrate("run", database=target)
    assert result.code == 1
    assert rows(target, "SELECT COUNT(*) FROM parent") == [(1,)]


def test_a_run_leaves_the_connection_as_it_found_it(target, scripts_dir):
    """Foreign keys back on and the journal back to DELETE (SQLite); lock_timeout back
    to the server default (PostgreSQL)."""
    for n in range(3):
        write_script(
            scripts_dir, f"1.0.{n}", f"t{n}", up=f'db.execute("CREATE TABLE t{n} (x INT)")'
        )
    connection = connections[target.alias]
    with MigrationSystem(target.alias) as system:
        system.migrate()
        with connection.cursor() as cursor:
            if target.vendor == "sqlite":
                cursor.execute("PRAGMA foreign_keys")
                assert cursor.fetchone()[0] == 1
                cursor.execute("PRAGMA journal_mode")
                assert cursor.fetchone()[0] == "delete"
            else:
                cursor.execute("SHOW lock_timeout")
                assert cursor.fetchone()[0] == "0"
        assert rows(target, "SELECT COUNT(*) FROM tbmigrate_applied_migration") == [(3,)]


def test_a_script_edited_while_the_process_runs_is_loaded_again(target, scripts_dir):
    """Scripts are compiled once per process and content: an edit is a new content."""
    path = write_script(scripts_dir, "1.0.0", "edit-me", up='db.execute("CREATE TABLE a (x INT)")')
    with MigrationSystem(target.alias) as system:
        first = system.scripts()[0]
        path.write_text(path.read_text().replace("CREATE TABLE a", "CREATE TABLE b"))
        second = system.scripts()[0]
        assert first.checksum != second.checksum
        system.migrate()
    assert "b" in {t.lower() for t in connections[target.alias].introspection.table_names()}


def test_compiled_scripts_are_cached_by_content_and_a_bad_cache_is_ignored(tmp_path):
    """The __pycache__ entry is keyed by the file's bytes: an edit is never served stale,
    and a corrupt entry is compiled again."""
    from migrator import scripts

    path = write_script(tmp_path, "1.0.0", "cached", up="return 'first'")
    assert scripts.load_script(path).up(None) == "first"
    (entry,) = (tmp_path / "__pycache__").iterdir()
    scripts._LOADED.clear()
    path.write_text(path.read_text().replace("'first'", "'second'"))
    assert scripts.load_script(path).up(None) == "second"
    (new_entry,) = (tmp_path / "__pycache__").iterdir()  # the old entry was replaced
    assert new_entry.name != entry.name
    new_entry.write_bytes(b"not marshal data")
    scripts._LOADED.clear()
    assert scripts.load_script(path).up(None) == "second"
    assert [s.version for s in scripts.load_scripts(tmp_path)] == [scripts.Version.parse("1.0.0")]
