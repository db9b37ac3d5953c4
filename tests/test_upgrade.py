"""A database whose tbmigrate tables were made by an older tbmigrate (migration 0001 only):
read-only commands read it as it is, the first command that takes the lock upgrades it."""

from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from migrator import history
from tests.conftest import rows, table_script, tbmigrate
from tests.schemas import document


def test_status_reads_tables_of_an_older_tbmigrate_and_run_upgrades_them(target, scripts_dir):
    connection = connections[target.alias]
    MigrationExecutor(connection).migrate([("migrator", "0001_initial")])
    table_script(scripts_dir, "1.0.0", "old")
    table_script(scripts_dir, "1.0.1", "new")
    connection.cursor().execute("CREATE TABLE old (id INTEGER PRIMARY KEY, label VARCHAR(50))")
    fake = tbmigrate("status", "--json", database=target)
    assert fake.code == 0
    checksum = document(fake, "status")["migrations"][0]["checksum"]
    connection.cursor().execute(
        "INSERT INTO tbmigrate_applied_migration (version, sort_key, name, description, "
        "checksum, status, applied_at, duration_ms, applied_by, host, error) VALUES "
        "(%s, %s, 'create-old', '', %s, 'applied', CURRENT_TIMESTAMP, 1.0, 'old', 'box', '')",
        ["1.0.0", "0000000001.0000000000.0000000000", checksum],
    )
    assert "direction" not in history.record_fields(target.alias)
    data = document(tbmigrate("status", "--json", database=target), "status")
    assert [m["state"] for m in data["migrations"]] == ["applied", "pending"]
    assert "direction" not in history.record_fields(target.alias)  # reading upgraded nothing
    ran = tbmigrate("run", database=target)
    assert ran.code == 0, ran.err
    assert "direction" in history.record_fields(target.alias)
    assert rows(target, "SELECT version FROM tbmigrate_applied_migration ORDER BY version") == [
        ("1.0.0",),
        ("1.0.1",),
    ]
