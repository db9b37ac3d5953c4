"""Splitting SQL as the database would, and naming the statement that fails."""

from __future__ import annotations

import pytest
from django.db import connections, transaction

from migrator.database import Database
from migrator.errors import SqlScriptError
from migrator.sqlsplit import split
from tests.conftest import tables_of

FUNCTION = """CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.note := 'a;b'; -- a ; in a comment
  RETURN NEW;
END;
$$;
SELECT 1;"""


def texts(sql: str) -> list[str]:
    return [s.sql for s in split(sql)]


def test_a_dollar_quoted_function_body_is_one_statement_with_its_start_line():
    statements = split(FUNCTION)
    assert [s.line for s in statements] == [1, 7]
    assert statements[0].sql.endswith("$$") and "RETURN NEW;" in statements[0].sql
    assert statements[1].sql == "SELECT 1"


def test_tagged_dollar_quotes_do_blocks_and_begin_atomic_bodies_survive():
    sql = (
        "CREATE FUNCTION g() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n"
        "DO $$ BEGIN IF true THEN RAISE NOTICE 'x;y'; END IF; END $$;\n"
        "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\n"
        "SELECT 2"
    )
    assert [s.line for s in split(sql)] == [1, 2, 3, 4]
    assert texts(sql)[1] == "DO $$ BEGIN IF true THEN RAISE NOTICE 'x;y'; END IF; END $$"


def test_comments_strings_and_identifiers_holding_semicolons_survive():
    sql = (
        "-- first; comment\nCREATE TABLE a (id int); /* block ; */ CREATE TABLE b (id int);\n"
        "INSERT INTO a VALUES ('a;b'); SELECT \"we;ird\" FROM a; INSERT INTO a VALUES (E'x\\';y');"
        "\n-- trailing ; only"
    )
    assert texts(sql) == [
        "CREATE TABLE a (id int)",
        "CREATE TABLE b (id int)",
        "INSERT INTO a VALUES ('a;b')",
        'SELECT "we;ird" FROM a',
        "INSERT INTO a VALUES (E'x\\';y')",
    ]
    assert [s.line for s in split(sql)] == [2, 2, 3, 3, 3]


def test_a_sqlite_trigger_body_is_one_statement():
    sql = "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 1; END;\nSELECT 1;"
    assert texts(sql) == [
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 1; END",
        "SELECT 1",
    ]


def test_transaction_statements_are_recognised_and_nothing_else():
    control = ["BEGIN", "begin transaction", "START TRANSACTION", "COMMIT", "END", "ROLLBACK"]
    for text in control:
        assert split(text + ";")[0].controls_transaction, text
    for text in ["ROLLBACK TO SAVEPOINT s", "DO $$ BEGIN END $$", "BEGINNING", "SELECT 1"]:
        assert not split(text + ";")[0].controls_transaction, text


def test_first_line_shifts_every_line_number():
    assert [s.line for s in split("SELECT 1;\n\nSELECT 2;", first_line=10)] == [10, 12]


def test_a_failing_statement_is_named_with_its_number_line_and_text(target):
    db = Database(connections[target.alias])
    script = "CREATE TABLE kept (id INTEGER);\n\n-- then\nINSERT INTO nosuch (id)\nVALUES (1);"
    with pytest.raises(Exception) as caught, transaction.atomic(using=target.alias):
        db.execute_script(script)
    message = str(caught.value).splitlines()[0]
    assert "nosuch" in message
    assert "(statement 2, line 4 of the script: INSERT INTO nosuch (id) …)" in message
    assert "kept" not in tables_of(target)  # the transaction rolled back


def test_the_file_and_its_line_are_named_when_given(target):
    db = Database(connections[target.alias])
    with pytest.raises(Exception) as caught:
        db.execute_script("SELECT 1;\nSELEC 2;", source="x.up.sql", first_line=7)
    assert "(statement 2, line 8 of x.up.sql: SELEC 2)" in str(caught.value)


def test_the_database_error_keeps_its_class_and_sqlstate(target):
    from django.db import OperationalError, ProgrammingError

    from migrator.timeouts import sqlstate

    db = Database(connections[target.alias])
    with pytest.raises((ProgrammingError, OperationalError)) as caught:
        db.execute_script("SELECT * FROM nosuch")
    if target.vendor == "postgresql":
        assert sqlstate(caught.value) == "42P01"  # undefined_table, seen through the chain


def test_begin_and_commit_inside_the_steps_transaction_are_refused_before_anything_runs(target):
    db = Database(connections[target.alias])
    refused = pytest.raises(SqlScriptError, match=r"statement 2, line 1 .*BEGIN.*atomic=false")
    with refused, transaction.atomic(using=target.alias):
        db.execute_script("CREATE TABLE t (id INTEGER); BEGIN; COMMIT;")
    assert "t" not in tables_of(target)


def test_outside_a_transaction_begin_and_commit_run(target):
    db = Database(connections[target.alias])
    db.execute_script("BEGIN; CREATE TABLE t (id INTEGER); COMMIT;")
    assert "t" in tables_of(target)


def test_dollar_quoted_plpgsql_runs_on_postgresql(make_database):
    database = make_database("postgresql")
    db = Database(connections[database.alias])
    db.execute_script(
        "CREATE TABLE notes (id INTEGER, note TEXT);\n" + FUNCTION + "\n"
        "CREATE TRIGGER notes_touch BEFORE INSERT ON notes FOR EACH ROW EXECUTE FUNCTION touch();\n"
        "INSERT INTO notes (id) VALUES (1);"
    )
    assert db.scalar("SELECT note FROM notes") == "a;b"


def test_a_trigger_body_runs_on_sqlite(make_database):
    database = make_database("sqlite")
    db = Database(connections[database.alias])
    db.execute_script(
        "CREATE TABLE t (id INTEGER, n INTEGER); CREATE TABLE log (id INTEGER);\n"
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO log VALUES (NEW.id); "
        "UPDATE t SET n = 1 WHERE id = NEW.id; END;\nINSERT INTO t (id) VALUES (5);"
    )
    assert db.fetchall("SELECT id FROM log") == [(5,)]
