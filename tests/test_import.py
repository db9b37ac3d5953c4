"""`tbmigrate import golang-migrate|dbmate|flyway|diesel FOLDER [--adopt]`: the folder
written in our form, versions mapped in order, and the other tool's history adopted."""

from __future__ import annotations

import json

from django.db import connections

from migrator import history
from migrator.database import Database
from tests.conftest import rows, snapshot, tables_of, tbmigrate

USERS = "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
ORDERS = "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users (id));"
INDEX = "CREATE INDEX orders_user ON orders (user_id);"


def run_sql(database, sql):
    Database(connections[database.alias]).execute_script(sql)


def states(database):
    result = tbmigrate("status", "--json", database=database)
    return {m["version"]: m["state"] for m in json.loads(result.out)["migrations"]}


def golang_folder(folder):
    folder.mkdir()
    files = {
        "000001_create_users.up.sql": f"BEGIN;\n{USERS}\nCOMMIT;\n",
        "000001_create_users.down.sql": "DROP TABLE users;\n",
        "000002_add_orders.up.sql": ORDERS + "\n",
        "000002_add_orders.down.sql": "DROP TABLE orders;\n",
        "000003_index_orders.up.sql": INDEX + "\n",
        "000003_index_orders.down.sql": "DROP INDEX orders_user;\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_golang_migrate_folder_imported_and_its_history_adopted(target, scripts_dir, tmp_path):
    folder = golang_folder(tmp_path / "golang")
    # golang-migrate applied 1 and 2 here: their tables, and its one-row history table.
    run_sql(target, USERS + ORDERS)
    run_sql(
        target,
        "CREATE TABLE schema_migrations (version BIGINT NOT NULL PRIMARY KEY, "
        "dirty BOOLEAN NOT NULL); INSERT INTO schema_migrations VALUES (2, FALSE);",
    )
    result = tbmigrate("import", "golang-migrate", str(folder), "--adopt", database=target)
    assert result.code == 0, result.err
    assert "1  ->  1.0.0  create-users" in result.out and "3  ->  1.0.2  index-orders" in result.out
    assert "BEGIN/COMMIT were removed" in result.out
    assert "2 recorded as applied" in result.out
    written = sorted(p.name for p in scripts_dir.iterdir())
    assert "1.0.0-create-users.up.sql" in written and "1.0.2-index-orders.down.sql" in written
    assert "_imported-golang-migrate.json" in written
    mapping = json.loads((scripts_dir / "_imported-golang-migrate.json").read_text())
    assert [(m["source_version"], m["version"]) for m in mapping["mapping"]] == [
        ("1", "1.0.0"),
        ("2", "1.0.1"),
        ("3", "1.0.2"),
    ]
    assert states(target) == {"1.0.0": "applied", "1.0.1": "applied", "1.0.2": "pending"}
    adopted = [e for e in history.events(target.alias) if e["action"] == "adopt"]
    assert sorted(e["version"] for e in adopted) == ["1.0.0", "1.0.1"]
    assert adopted[0]["details"]["tool"] == "golang-migrate"
    assert tbmigrate("run", database=target).code == 0
    assert tbmigrate("status", "--check", database=target).code == 0
    # adopting again changes nothing
    again = tbmigrate("import", "golang-migrate", str(folder), "--adopt", database=target)
    assert again.code == 0 and "0 recorded as applied" in again.out
    assert tbmigrate("rollback", "--to", "0", "--no-input", database=target).code == 0
    assert not {"users", "orders"} & tables_of(target)


def test_a_dirty_golang_migrate_history_is_refused_and_nothing_is_recorded(
    target, scripts_dir, tmp_path
):
    folder = golang_folder(tmp_path / "golang")
    run_sql(
        target,
        USERS + "CREATE TABLE schema_migrations (version BIGINT NOT NULL "
        "PRIMARY KEY, dirty BOOLEAN NOT NULL); INSERT INTO schema_migrations VALUES (2, TRUE);",
    )
    before = snapshot(target)
    result = tbmigrate("import", "golang-migrate", str(folder), "--adopt", database=target)
    assert result.code == 1 and "dirty at version 2" in result.err
    assert snapshot(target) == before


def test_adopt_without_the_tools_table_is_bad_usage(target, scripts_dir, tmp_path):
    folder = golang_folder(tmp_path / "golang")
    result = tbmigrate("import", "golang-migrate", str(folder), "--adopt", database=target)
    assert result.code == 2 and "there is no schema_migrations table" in result.err


def flyway_folder(folder):
    (folder / "sub").mkdir(parents=True)
    (folder / "V1__create_users.sql").write_text(USERS + "\n")
    (folder / "V1_1__add_orders.sql").write_text(ORDERS + "\n")
    (folder / "sub" / "V2__index_orders.sql").write_text(INDEX + "\n")
    (folder / "sub" / "U2__index_orders.sql").write_text("DROP INDEX orders_user;\n")
    (folder / "R__refresh_view.sql").write_text("SELECT 1;\n")
    return folder


FLYWAY_TABLE = (
    "CREATE TABLE flyway_schema_history (installed_rank INTEGER PRIMARY KEY, version "
    "VARCHAR(50), description VARCHAR(200), type VARCHAR(20), script VARCHAR(1000), "
    "checksum INTEGER, installed_by VARCHAR(100), installed_on TIMESTAMP, execution_time "
    "INTEGER, success BOOLEAN);"
)


def test_flyway_folder_imported_and_its_history_adopted(target, scripts_dir, tmp_path):
    folder = flyway_folder(tmp_path / "flyway")
    run_sql(target, USERS + ORDERS + FLYWAY_TABLE)
    run_sql(
        target,
        "INSERT INTO flyway_schema_history VALUES "
        "(1, '1', 'create users', 'SQL', 'V1__create_users.sql', 1, 'me', NULL, 1, TRUE);"
        "INSERT INTO flyway_schema_history VALUES "
        "(2, '1.1', 'add orders', 'SQL', 'V1_1__add_orders.sql', 2, 'me', NULL, 1, TRUE);"
        "INSERT INTO flyway_schema_history VALUES "
        "(3, NULL, 'refresh view', 'SQL', 'R__refresh_view.sql', 3, 'me', NULL, 1, TRUE);",
    )
    result = tbmigrate("import", "flyway", str(folder), "--adopt", database=target)
    assert result.code == 0, result.err
    assert "1.1  ->  1.0.1  add-orders" in result.out
    assert "skipped R__refresh_view.sql: a repeatable migration" in result.out
    assert states(target) == {"1.0.0": "applied", "1.0.1": "applied", "1.0.2": "pending"}
    assert tbmigrate("run", database=target).code == 0
    # the undo file became the down
    assert tbmigrate("rollback", "--no-input", database=target).code == 0
    assert states(target)["1.0.2"] == "pending"


def test_a_failed_flyway_migration_is_refused(target, scripts_dir, tmp_path):
    folder = flyway_folder(tmp_path / "flyway")
    run_sql(target, FLYWAY_TABLE)
    run_sql(
        target,
        "INSERT INTO flyway_schema_history VALUES "
        "(1, '1', 'create users', 'SQL', 'V1__create_users.sql', 1, 'me', NULL, 1, FALSE);",
    )
    result = tbmigrate("import", "flyway", str(folder), "--adopt", database=target)
    assert result.code == 1 and "records a failed migration, version 1" in result.err
    assert rows(target, "SELECT COUNT(*) FROM flyway_schema_history") == [(1,)]
    assert not history.tables_exist(target.alias) or not history.load(target.alias)


def test_dbmate_folder_and_history(target, scripts_dir, tmp_path):
    folder = tmp_path / "dbmate"
    folder.mkdir()
    (folder / "20240101120000_create_users.sql").write_text(
        f"-- migrate:up\n{USERS}\n\n-- migrate:down\nDROP TABLE users;\n"
    )
    (folder / "20240102120000_index_users.sql").write_text(
        "-- migrate:up transaction:false\nCREATE INDEX users_name ON users (name);\n"
        "-- migrate:down\nDROP INDEX users_name;\n"
    )
    run_sql(
        target,
        USERS + "CREATE TABLE schema_migrations (version VARCHAR(128) PRIMARY KEY);"
        "INSERT INTO schema_migrations VALUES ('20240101120000');",
    )
    result = tbmigrate("import", "dbmate", str(folder), "--adopt", database=target)
    assert result.code == 0, result.err
    names = sorted(p.name for p in scripts_dir.iterdir())
    assert "2024-01-01T12-00-00-1.0.0-create-users.up.sql" in names  # its time stamp kept
    up = scripts_dir / "2024-01-02T12-00-00-1.0.1-index-users.up.sql"
    assert up.read_text().startswith("-- tbmigrate: atomic=false\n")
    assert states(target) == {"1.0.0": "applied", "1.0.1": "pending"}
    assert tbmigrate("run", database=target).code == 0


def test_diesel_folder_and_history(target, scripts_dir, tmp_path):
    folder = tmp_path / "migrations"
    for name, up, down in [
        ("2024-01-01-120000_create_users", USERS, "DROP TABLE users;"),
        ("2024-01-02-120000_create_orders", ORDERS, "DROP TABLE orders;"),
    ]:
        (folder / name).mkdir(parents=True)
        (folder / name / "up.sql").write_text(up)
        (folder / name / "down.sql").write_text(down)
    run_sql(
        target,
        USERS + "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) "
        "PRIMARY KEY NOT NULL, run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);"
        "INSERT INTO __diesel_schema_migrations (version) VALUES ('20240101120000');",
    )
    result = tbmigrate("import", "diesel", str(folder), "--adopt", database=target)
    assert result.code == 0, result.err
    assert states(target) == {"1.0.0": "applied", "1.0.1": "pending"}


def test_an_import_that_would_clash_writes_nothing(scripts_dir, tmp_path):
    folder = golang_folder(tmp_path / "golang")
    (scripts_dir / "2026-01-01T00-00-00-1.0.0-mine.up.sql").write_text("SELECT 1;")
    before = sorted(p.name for p in scripts_dir.iterdir())
    result = tbmigrate("import", "golang-migrate", str(folder))
    assert result.code == 2 and "version 1.0.0 (for golang-migrate 1) is already used" in result.err
    assert sorted(p.name for p in scripts_dir.iterdir()) == before
    assert tbmigrate("import", "golang-migrate", str(folder), "--start", "2.0.0").code == 0
    assert (scripts_dir / "2.0.2-index-orders.up.sql").exists()


def test_a_grown_folder_keeps_the_versions_already_given(scripts_dir, tmp_path):
    folder = golang_folder(tmp_path / "golang")
    assert tbmigrate("import", "golang-migrate", str(folder)).code == 0
    (folder / "000004_more.up.sql").write_text("SELECT 1;")
    result = tbmigrate("import", "golang-migrate", str(folder))
    assert result.code == 0, result.err
    assert "4  ->  1.0.3  more" in result.out and "(already there)" in result.out
