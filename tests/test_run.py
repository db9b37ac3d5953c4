"""`tbmigrate run` on both databases: order, --to, failures, --fake, --dry-run, audit."""

from migrator import history
from migrator.api import MigrationSystem
from tests.conftest import rows, snapshot, table_script, tables_of, tbmigrate, write_script


def applied_versions(target):
    return [str(r.version) for r in history.load(target.alias) if r.status == history.APPLIED]


def test_run_applies_everything_in_semantic_version_order(target, scripts_dir):
    for version in ["1.0.10", "1.0.9", "1.0.2"]:
        write_script(
            scripts_dir,
            version,
            f"v{version.replace('.', '-')}",
            up=f'db.execute("INSERT INTO seen (n, v) SELECT COUNT(*) + 1, %s FROM seen", ["{version}"])',  # noqa: E501
            stamp="2026-01-01T00-00-00",
        )
    write_script(
        scripts_dir,
        "1.0.1",
        "seen-table",
        up='db.execute("CREATE TABLE seen (n INTEGER PRIMARY KEY, v VARCHAR(10))")',
        down='db.execute("DROP TABLE seen")',
    )
    result = tbmigrate("run", database=target)
    assert result.code == 0, result.err
    assert [r[0] for r in rows(target, "SELECT v FROM seen ORDER BY n")] == [
        "1.0.2",
        "1.0.9",
        "1.0.10",
    ]
    assert applied_versions(target) == ["1.0.1", "1.0.2", "1.0.9", "1.0.10"]
    assert "Applying 1.0.9 v1-0-9... OK (" in result.out
    assert "Applied 4 migration(s)" in result.out


def test_run_on_a_brand_new_database_creates_its_own_tables(target, scripts_dir):
    assert tables_of(target) == set()
    table_script(scripts_dir, "1.0.0", "accounts")
    assert tbmigrate("run", database=target).code == 0
    assert {"accounts", "tbmigrate_applied_migration", "tbmigrate_audit_event"} <= tables_of(target)


def test_run_to_stops_at_the_target_version(target, scripts_dir):
    for n, table in enumerate(["a1", "a2", "a3"]):
        table_script(scripts_dir, f"1.0.{n}", table)
    result = tbmigrate("run", "--to", "1.0.1", database=target)
    assert result.code == 0, result.err
    assert applied_versions(target) == ["1.0.0", "1.0.1"]
    assert "a3" not in tables_of(target)
    assert tbmigrate("run", database=target).code == 0
    assert applied_versions(target) == ["1.0.0", "1.0.1", "1.0.2"]


def test_run_to_an_unknown_version_is_bad_usage_and_changes_nothing(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    result = tbmigrate("run", "--to", "7.0.0", database=target)
    assert result.code == 2
    assert "--to: there is no migration 7.0.0" in result.err
    assert "a1" not in tables_of(target)
    result = tbmigrate("run", "--to", "seven", database=target)
    assert result.code == 2 and "not a semantic version" in result.err


def test_nothing_pending_says_so_and_succeeds(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    tbmigrate("run", database=target)
    result = tbmigrate("run", database=target)
    assert result.code == 0
    assert "No migrations to apply; the database is up to date." in result.out


def test_a_failing_step_leaves_no_table_no_row_and_an_audit_event(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "before")
    write_script(
        scripts_dir,
        "1.0.1",
        "explodes",
        up="""
        db.execute("CREATE TABLE half_done (id INTEGER PRIMARY KEY, v VARCHAR(10))")
        db.execute("INSERT INTO half_done (id, v) VALUES (%s, %s)", [1, "x"])
        db.execute("SELECT * FROM no_such_table")
    """,
    )
    table_script(scripts_dir, "1.0.2", "after")
    result = tbmigrate("run", database=target)
    assert result.code == 1
    assert "1.0.1 explodes failed to apply" in result.err
    assert "rolled back, nothing of it remains" in result.err
    assert "Applying 1.0.1 explodes... FAILED" in result.out
    tables = tables_of(target)
    assert "before" in tables
    assert "half_done" not in tables and "after" not in tables
    assert applied_versions(target) == ["1.0.0"]
    failure = next(
        e
        for e in history.events(target.alias)
        if e["action"] == "apply" and e["version"] == "1.0.1"
    )
    assert failure["outcome"] == "failure"
    assert "no_such_table" in failure["error"]
    assert "Traceback" in failure["traceback"] and "explodes" in failure["traceback"]
    assert [s["sql"] for s in failure["statements"]][-1] == "SELECT * FROM no_such_table"
    run_event = next(e for e in history.events(target.alias) if e["action"] == "run")
    assert run_event["outcome"] == "failure" and run_event["details"]["done"] == ["1.0.0"]


def test_a_broken_script_stops_everything_before_anything_runs(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "first")
    (scripts_dir / "2026-01-01T00-00-00-1.0.1-broken.py").write_text(
        'version = "1.0.1"\ndef up(db) pass\n'
    )
    result = tbmigrate("run", database=target)
    assert result.code == 1
    assert "1.0.1-broken.py, line 2: syntax error" in result.err
    assert tables_of(target) == set()


def test_fake_records_without_running(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "never_created")
    result = tbmigrate("run", "--fake", database=target)
    assert result.code == 0, result.err
    assert "Faking 1.0.0 create-never-created... OK" in result.out
    assert "never_created" not in tables_of(target)
    assert applied_versions(target) == ["1.0.0"]
    assert history.events(target.alias)[-1]["action"] in {"fake", "run"}
    assert {e["action"] for e in history.events(target.alias)} == {"fake", "run"}


def test_dry_run_prints_the_plan_and_changes_nothing(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    table_script(scripts_dir, "1.0.1", "a2")
    before = snapshot(target)
    result = tbmigrate("run", "--dry-run", database=target)
    assert result.code == 0
    assert "Would apply 2 migration(s):" in result.out and "1.0.1 create-a2" in result.out
    assert snapshot(target) == before == {}


def test_out_of_order_pending_is_refused_loudly(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    table_script(scripts_dir, "1.0.2", "a3")
    tbmigrate("run", database=target)
    table_script(scripts_dir, "1.0.1", "a2")
    result = tbmigrate("run", database=target)
    assert result.code == 1
    assert "1.0.1 create-a2 is pending but the newer 1.0.2 is already applied" in result.err
    assert "a2" not in tables_of(target)
    assert tbmigrate("run", "--out-of-order", database=target).code == 0
    assert "a2" in tables_of(target)


def test_the_audit_event_keeps_the_statements_and_who_ran_them(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "audited")
    tbmigrate("run", database=target)
    event = next(e for e in history.events(target.alias) if e["action"] == "apply")
    assert event["outcome"] == "success"
    assert event["statements"] == [
        {"sql": "CREATE TABLE audited (id INTEGER PRIMARY KEY, label VARCHAR(50))"}
    ]
    assert event["os_user"] and event["host"] and event["pid"]
    assert event["database"].startswith(target.vendor)
    assert event["duration_ms"] >= 0
    (record,) = history.load(target.alias)
    assert record.applied_by == event["os_user"]


def test_the_api_applies_and_reports_without_printing(target, scripts_dir, capsys):
    table_script(scripts_dir, "1.0.0", "api_made")
    with MigrationSystem(target.alias) as system:
        assert system.plan().labels == ["1.0.0 create-api-made"]
        result = system.migrate()
        assert result.ok and [s.version for s in result.steps] == ["1.0.0"]
        assert system.status().clean
    assert capsys.readouterr().out == ""
