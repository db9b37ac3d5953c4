"""Plain SQL migrations beside Python ones: pairs, dbmate's single files, markers,
vendor variants, checksums, and errors that name the file and the line."""

from __future__ import annotations

import pytest

from migrator import history
from migrator.errors import ScriptError
from migrator.scripts import create_script, load_scripts
from tests.conftest import rows, snapshot, table_script, tables_of, tbmigrate

STAMP = "2026-01-01T00-00-00"


def sql_file(folder, name, text):
    path = folder / f"{STAMP}-{name}"
    path.write_text(text)
    return path


def test_a_pair_a_single_file_and_a_python_script_run_and_roll_back(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "users")
    sql_file(
        scripts_dir,
        "1.0.1-orders.up.sql",
        "-- Orders of users\nCREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT); -- ;\n"
        "INSERT INTO orders (id, note) VALUES (1, 'a;b');\n",
    )
    sql_file(scripts_dir, "1.0.1-orders.down.sql", "DROP TABLE orders;\n")
    sql_file(
        scripts_dir,
        "1.0.2-notes.sql",
        "-- migrate:up\nCREATE TABLE notes (id INTEGER);\n-- migrate:down\nDROP TABLE notes;\n",
    )
    result = tbmigrate("run", database=target)
    assert result.code == 0, result.err
    assert {"users", "orders", "notes"} <= tables_of(target)
    assert rows(target, "SELECT note FROM orders") == [("a;b",)]
    assert tbmigrate("status", "--check", database=target).code == 0
    loaded = {str(s.version): s for s in load_scripts(scripts_dir)}
    assert loaded["1.0.1"].kind == "sql" and loaded["1.0.1"].description == "Orders of users"
    assert loaded["1.0.2"].description == "Notes"
    assert (
        tbmigrate("rollback", "--to", "1.0.0", "--no-input", "--force", database=target).code == 0
    )
    assert "orders" not in tables_of(target) and "notes" not in tables_of(target)
    assert "users" in tables_of(target)


def test_the_history_keeps_both_files_and_their_checksum(target, scripts_dir):
    up = sql_file(scripts_dir, "1.0.0-t.up.sql", "CREATE TABLE t (id INTEGER);\n")
    sql_file(scripts_dir, "1.0.0-t.down.sql", "DROP TABLE t;\n")
    assert tbmigrate("run", database=target).code == 0
    (record,) = history.load(target.alias)
    (script,) = load_scripts(scripts_dir)
    assert record.checksum == script.checksum
    assert b"CREATE TABLE t" in script.source and b"DROP TABLE t" in script.source
    # editing the down file alone is a change
    (scripts_dir / up.name.replace(".up.", ".down.")).write_text("DROP TABLE t; -- edited\n")
    result = tbmigrate("status", database=target)
    assert "changed" in result.out


def test_a_single_file_checksum_is_the_files_and_ignores_line_endings(tmp_path):
    from migrator.scripts import checksum

    path = sql_file(tmp_path, "1.0.0-t.sql", "-- migrate:up\nSELECT 1;\n")
    (script,) = load_scripts(tmp_path)
    assert script.checksum == checksum(path.read_bytes())
    path.write_bytes(b"-- migrate:up\r\nSELECT 1;\r\n")
    assert load_scripts(tmp_path)[0].checksum == script.checksum


def test_a_failing_statement_names_the_file_and_its_line(target, scripts_dir):
    sql_file(
        scripts_dir,
        "1.0.0-bad.up.sql",
        "-- header\nCREATE TABLE t (id INTEGER);\n\nINSERT INTO nosuch (id)\n  VALUES (1);\n",
    )
    before = snapshot(target)
    result = tbmigrate("run", database=target)
    assert result.code == 1
    assert "statement 2, line 4 of" in result.err and "1.0.0-bad.up.sql" in result.err
    assert "INSERT INTO nosuch (id)" in result.err
    assert "t" not in tables_of(target)
    ours = ("tbmigrate", "django_migrations")  # tbmigrate's own tables, made by the run
    assert {k: v for k, v in snapshot(target).items() if not k.startswith(ours)} == {
        k: v for k, v in before.items() if not k.startswith(ours)
    }


def test_in_a_single_file_the_line_is_the_files(target, scripts_dir):
    sql_file(
        scripts_dir,
        "1.0.0-bad.sql",
        "-- a note\n\n-- migrate:up\nSELECT 1;\nSELEC 2;\n-- migrate:down\nSELECT 1;\n",
    )
    result = tbmigrate("run", database=target)
    assert result.code == 1 and "statement 2, line 5 of" in result.err


def test_begin_commit_in_an_atomic_sql_file_is_refused_and_atomic_false_allows_it(
    target, scripts_dir
):
    path = sql_file(
        scripts_dir, "1.0.0-tx.up.sql", "BEGIN;\nCREATE TABLE t (id INTEGER);\nCOMMIT;\n"
    )
    result = tbmigrate("run", database=target)
    assert result.code == 1 and "atomic=false" in result.err and "line 1" in result.err
    assert "t" not in tables_of(target)
    path.write_text("-- tbmigrate: atomic=false\n" + path.read_text())
    (script,) = load_scripts(scripts_dir)
    assert script.atomic is False
    assert tbmigrate("run", database=target).code == 0
    assert "t" in tables_of(target)


def test_dbmate_transaction_false_makes_the_step_non_atomic(tmp_path):
    sql_file(tmp_path, "1.0.0-x.sql", "-- migrate:up transaction:false\nSELECT 1;\n")
    assert load_scripts(tmp_path)[0].atomic is False


def test_markers_set_phase_lock_timeout_retries_and_description(tmp_path):
    sql_file(
        tmp_path,
        "1.0.0-x.up.sql",
        '-- tbmigrate: phase=contract lock_timeout=500ms lock_retries=3 description="Drop x"\n'
        "SELECT 1;\n",
    )
    (script,) = load_scripts(tmp_path)
    assert (script.phase, script.lock_timeout, script.lock_retries) == ("contract", 0.5, 3)
    assert script.description == "Drop x"


def test_vendor_variants_run_the_databases_own_sql(target, scripts_dir):
    sql_file(
        scripts_dir,
        "1.0.0-t.postgresql.up.sql",
        "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, kind TEXT);"
        "\nINSERT INTO t (kind) VALUES ('postgresql');",
    )
    sql_file(scripts_dir, "1.0.0-t.postgresql.down.sql", "DROP TABLE t;")
    sql_file(
        scripts_dir,
        "1.0.0-t.sqlite.up.sql",
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT);\n"
        "INSERT INTO t (kind) VALUES ('sqlite');",
    )
    sql_file(scripts_dir, "1.0.0-t.sqlite.down.sql", "DROP TABLE t;")
    (script,) = load_scripts(scripts_dir)
    assert script.reversible
    assert tbmigrate("run", database=target).code == 0
    assert rows(target, "SELECT kind FROM t") == [(target.vendor,)]
    assert tbmigrate("rollback", "--no-input", "--force", database=target).code == 0
    assert "t" not in tables_of(target)


def test_a_vendor_variant_overrides_the_generic_files_for_its_database_only(target, scripts_dir):
    sql_file(scripts_dir, "1.0.0-t.up.sql", "CREATE TABLE generic (id INTEGER);")
    sql_file(scripts_dir, "1.0.0-t.sqlite.up.sql", "CREATE TABLE special (id INTEGER);")
    assert tbmigrate("run", database=target).code == 0
    expected = "special" if target.vendor == "sqlite" else "generic"
    assert expected in tables_of(target)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"1.0.0-x.down.sql": "SELECT 1;"}, r"has no up file beside it"),
        ({"1.0.0-x.sql": "SELECT 1;"}, r"has no `-- migrate:up` line"),
        (
            {"1.0.0-x.sql": "-- migrate:up\nSELECT 1;", "1.0.0-x.up.sql": "SELECT 1;"},
            r"two forms of one migration",
        ),
        ({"1.0.0-x.mysql.up.sql": "SELECT 1;"}, r"'mysql' in the file name is not a database"),
        ({"1.0.0-Bad_Name.up.sql": "SELECT 1;"}, r"must be lower-case words"),
        ({"1.0.0-x.up.sql": "-- tbmigrate: atomc=false\nSELECT 1;"}, r"'atomc=false' is not"),
        ({"1.0.0-x.up.sql": "-- tbmigrate: atomic=maybe\nSELECT 1;"}, r"true or false"),
        (
            {
                "1.0.0-x.postgresql.up.sql": "SELECT 1;",
                "1.0.0-x.postgresql.down.sql": "SELECT 1;",
                "1.0.0-x.sqlite.up.sql": "SELECT 1;",
            },
            r"the sqlite SQL has no down while another variant has one",
        ),
        ({"1.0.0-x.up.sql": "SELECT 1;", "1.0.0-y.py": 'version = "1.0.0"'}, r"both"),
    ],
)
def test_each_bad_sql_migration_is_one_error_naming_the_file(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / (name if name.endswith(".py") else f"{STAMP}-{name}")).write_text(text)
    if "1.0.0-y.py" in files:
        (tmp_path / "1.0.0-y.py").write_text('version = "1.0.0"\ndef up(db):\n    pass\n')
    with pytest.raises(ScriptError, match=message):
        load_scripts(tmp_path)


def test_an_empty_up_file_is_never_recorded_as_applied(target, scripts_dir):
    create_script(scripts_dir, "1.0.0", "todo", sql=True)
    result = tbmigrate("run", database=target)
    assert result.code == 1 and "has no statements" in result.err
    assert [r for r in history.load(target.alias) if r.status == history.APPLIED] == []


def test_create_sql_writes_a_pair_that_loads(tmp_path):
    up = create_script(tmp_path, "1.0.3", "add-notes", "Notes on orders", sql=True)
    assert up.name.endswith("-1.0.3-add-notes.up.sql")
    assert up.with_name(up.name.replace(".up.sql", ".down.sql")).exists()
    (script,) = load_scripts(tmp_path)
    assert (script.kind, script.description, script.reversible) == ("sql", "Notes on orders", True)


def test_a_sql_scripts_down_in_an_empty_dbmate_section_is_irreversible(tmp_path):
    sql_file(tmp_path, "1.0.0-x.sql", "-- migrate:up\nSELECT 1;\n-- migrate:down\n\n")
    assert load_scripts(tmp_path)[0].reversible is False
