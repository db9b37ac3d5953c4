"""`tbmigrate validate migration VERSION` (the preflight of `run`) on both databases."""

import json

import psycopg
import pytest

from migrator import history
from tests.conftest import table_script, tables_of, tbmigrate, write_script
from tests.validation_support import checks, hold_sqlite_write_lock, plain_user, unchanged


@pytest.fixture
def up_to_1_0_3(target):
    assert tbmigrate("run", "--to", "1.0.3", database=target).code == 0
    return target


def test_a_pending_migration_passes_every_check_and_changes_nothing(up_to_1_0_3):
    before = unchanged(up_to_1_0_3)
    result = tbmigrate("validate", "migration", "1.0.4", database=up_to_1_0_3)
    assert result.code == 0, result.out + result.err
    found = {c[1]: c for c in checks(result)}
    expected = ["connectivity", "scripts", "target", "order", "disk_space", "migration_lock"]
    expected += ["locks", "dry_run", "hazards", "expand_contract"]
    if up_to_1_0_3.vendor == "postgresql":
        expected += ["connections", "lint"]
    assert set(found) == set(expected)
    assert found["target"][2] == "1.0.4 add-user-timezone loads and is not applied"
    assert found["order"][2] == "every lower version is applied (4)"
    assert found["dry_run"][0] == "PASS"
    assert (
        found["dry_run"][2] == "1.0.4 add-user-timezone: 1 statement(s); touch users; rolled back"
    )
    assert "free in" in found["disk_space"][2]
    assert unchanged(up_to_1_0_3) == before
    assert [str(r.version) for r in history.load(up_to_1_0_3.alias)][-1] == "1.0.3"


def test_json_carries_the_statements_and_the_touched_tables(up_to_1_0_3):
    result = tbmigrate("validate", "migration", "1.0.4", "--json", database=up_to_1_0_3)
    report = json.loads(result.out)
    assert (report["validation"], report["target"], report["ok"]) == ("migration", "1.0.4", True)
    dry = next(c for c in report["checks"] if c["name"] == "dry_run")
    assert dry["details"]["tables"] == ["users"]
    assert dry["details"]["statement_count"] == 1
    assert "ADD COLUMN" in dry["details"]["statements"][0]["sql"]
    if up_to_1_0_3.vendor == "postgresql":
        assert dry["details"]["locks"] == {"users": "AccessExclusiveLock"}
    disk = next(c for c in report["checks"] if c["name"] == "disk_space")
    assert disk["level"] == "PASS" and disk["details"]["free_bytes"] > 0


def test_a_lock_held_by_another_connection_is_reported(up_to_1_0_3, settings):
    settings.TBMIGRATE_PREFLIGHT_LOCK_TIMEOUT = 0.5
    before = unchanged(up_to_1_0_3)
    if up_to_1_0_3.vendor == "postgresql":
        other = psycopg.connect(up_to_1_0_3.url)
        other.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")  # opens a transaction
        pid = other.info.backend_pid
        try:
            result = tbmigrate("validate", "migration", "1.0.4", database=up_to_1_0_3)
        finally:
            other.rollback()
            other.close()
        found = {c[1]: c for c in checks(result)}
        assert found["locks"][0] == "FAIL"
        assert f"AccessExclusiveLock on users by pid {pid}" in found["locks"][2]
        assert found["connections"][0] == "WARN"
        assert f"1 idle in a transaction (pid {pid}" in found["connections"][2]
        assert found["dry_run"][0] == "FAIL"
        assert "waited more than 0.5 s for a lock" in found["dry_run"][2]
    else:
        holder = hold_sqlite_write_lock(up_to_1_0_3.name)
        try:
            result = tbmigrate("validate", "migration", "1.0.4", database=up_to_1_0_3)
        finally:
            holder.kill()
            holder.wait()
        found = {c[1]: c for c in checks(result)}
        assert found["locks"][0] == "FAIL"
        assert "another process holds the write lock" in found["locks"][2]
        assert found["dry_run"][0] == "WARN" and "not run" in found["dry_run"][2]
    assert result.code == 1
    assert unchanged(up_to_1_0_3) == before
    # with the lock gone, the same validation passes
    assert tbmigrate("validate", "migration", "1.0.4", database=up_to_1_0_3).code == 0


def test_a_failing_up_fails_the_dry_run_and_changes_nothing(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a")
    write_script(
        scripts_dir,
        "1.0.1",
        "broken",
        up="""
            db.execute("CREATE TABLE b (id INTEGER PRIMARY KEY)")
            db.execute("INSERT INTO a (id, label) VALUES (1, 'x')")
            db.execute("INSERT INTO nowhere VALUES (1)")
        """,
    )
    assert tbmigrate("run", "--to", "1.0.0", database=target).code == 0
    before = unchanged(target)
    result = tbmigrate("validate", "migration", "1.0.1", database=target)
    assert result.code == 1
    dry = next(c for c in checks(result) if c[1] == "dry_run")
    assert dry[0] == "FAIL"
    assert dry[2].startswith("1.0.1 broken fails: ")
    assert "nowhere" in dry[2] and "nothing changed" in dry[2]
    assert unchanged(target) == before
    assert "b" not in tables_of(target)
    event = history.events(target.alias, limit=1)[0]
    assert (event["action"], event["outcome"], event["version"]) == ("validate", "failure", "1.0.1")


def test_lower_pending_versions_are_named_and_dry_run_with_it(target, scripts_dir):
    for n in range(3):
        table_script(scripts_dir, f"1.0.{n}", f"t{n}")
    result = tbmigrate("validate", "migration", "1.0.2", database=target)
    assert result.code == 0, result.out + result.err
    found = {c[1]: c for c in checks(result)}
    assert found["order"][0] == "WARN"
    assert "2 lower version(s) not applied yet: 1.0.0 create-t0, 1.0.1 create-t1" in result.out
    assert found["dry_run"][2].startswith(
        "1.0.0 create-t0, 1.0.1 create-t1, 1.0.2 create-t2: 3 statement(s)"
    )
    assert "create t0, t1, t2" in found["dry_run"][2]
    assert tables_of(target) & {"t0", "t1", "t2"} == set()


def test_an_out_of_order_version_fails(target, scripts_dir):
    table_script(scripts_dir, "1.0.2", "t2")
    assert tbmigrate("run", database=target).code == 0
    table_script(scripts_dir, "1.0.1", "t1")
    result = tbmigrate("validate", "migration", "1.0.1", database=target)
    assert result.code == 1
    assert "FAIL  order: 1.0.1 is older than the applied 1.0.2" in result.out


def test_a_non_atomic_script_is_not_dry_run(target, scripts_dir):
    write_script(
        scripts_dir,
        "1.0.0",
        "concurrent",
        up='db.execute("CREATE TABLE c (id INTEGER)")',
        atomic=False,
    )
    result = tbmigrate("validate", "migration", "1.0.0", database=target)
    assert result.code == 0
    assert "WARN  dry_run: not run: 1.0.0 concurrent has atomic = False" in result.out
    assert "c" not in tables_of(target)


def test_an_applied_version_fails_and_bad_versions_are_bad_usage(up_to_1_0_3):
    result = tbmigrate("validate", "migration", "1.0.2", database=up_to_1_0_3)
    assert result.code == 1
    assert "FAIL  target: 1.0.2 add-trading-sessions is already applied" in result.out
    assert "`tbmigrate rollback 1.0.2`" in result.out
    for args, message in [
        (["9.9.9"], "validate migration: there is no migration 9.9.9"),
        (["nine"], "'nine' is not a semantic version"),
        ([], "validate migration needs a VERSION"),
    ]:
        result = tbmigrate("validate", "migration", *args, database=up_to_1_0_3)
        assert (result.code, message in result.err) == (2, True), result.err


def test_squawk_lints_the_dry_runs_statements_on_postgresql(target, scripts_dir, settings):
    table_script(scripts_dir, "1.0.0", "a")
    write_script(
        scripts_dir,
        "1.0.1",
        "risky",
        up="""
            db.add_column("a", "amount", "INTEGER NOT NULL")
            db.create_index("a", ["label"])
        """,
    )
    assert tbmigrate("run", "--to", "1.0.0", database=target).code == 0
    settings.TBMIGRATE_PG_LOCK_TIMEOUT = None  # no lock_timeout: squawk asks for one
    result = tbmigrate("validate", "migration", "1.0.1", "--json", database=target)
    assert result.code == 0, result.err
    lint = [c for c in json.loads(result.out)["checks"] if c["name"] == "lint"]
    if target.vendor == "sqlite":
        assert lint == []  # squawk knows PostgreSQL only
        return
    rules = {c["details"]["rule"]: c for c in lint}
    assert {"adding-required-field", "require-concurrent-index-creation"} <= set(rules)
    assert all(c["level"] == "WARN" for c in lint)
    assert rules["adding-required-field"]["details"]["statements"] == [1]
    assert rules["require-concurrent-index-creation"]["details"]["statements"] == [2]
    assert "require-lock-timeout" in rules
    # with the executor's lock_timeout configured, squawk sees it and stops asking for it
    settings.TBMIGRATE_PG_LOCK_TIMEOUT = 2
    again = tbmigrate("validate", "migration", "1.0.1", "--json", database=target)
    rules = {c["details"]["rule"] for c in json.loads(again.out)["checks"] if c["name"] == "lint"}
    assert "require-lock-timeout" not in rules and "adding-required-field" in rules


def test_free_space_unmeasurable_without_superuser_is_a_warning(make_database, scripts_dir):
    database = make_database("postgresql")
    table_script(scripts_dir, "1.0.0", "a")
    with plain_user(database) as alias:
        result = tbmigrate("validate", "migration", "1.0.0", "--database", alias)
    assert result.code == 0, result.out + result.err
    disk = next(c for c in checks(result) if c[1] == "disk_space")
    assert disk[0] == "WARN"
    assert "free space not measured: reading data_directory needs a superuser" in disk[2]
