"""`tbmigrate repair`: failed -> refused -> cleaned up -> repair -> run; checksums; missing."""

from __future__ import annotations

import json

from django.db import connections

from migrator import history
from tests.conftest import cli, rows, snapshot, table_script, tables_of, tbmigrate, write_script
from tests.schemas import document


def repair_events(target):
    return [e for e in history.events(target.alias) if e["action"] == "repair"]


def test_a_non_atomic_failure_is_failed_until_cleaned_up_and_repaired(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "accounts")
    half_way = write_script(
        scripts,
        "1.0.1",
        "half-way",
        atomic=False,
        up="""
        db.execute("CREATE TABLE left_behind (id INTEGER)")
        db.execute("INSERT INTO no_such_table VALUES (1)")
        """,
        down='db.execute("DROP TABLE left_behind")',
    )
    table_script(scripts, "1.0.2", "later")

    failed = cli("run", database=target, scripts=scripts)
    assert failed.returncode == 1
    assert "1.0.1 half-way failed to apply" in failed.stderr
    assert "it ran outside a transaction" in failed.stderr
    assert "recorded as failed" in failed.stderr
    assert "left_behind" in tables_of(target)  # outside a transaction, it stayed

    status = cli("status", "--json", database=target, scripts=scripts)
    states = {m["version"]: m["state"] for m in json.loads(status.stdout)["migrations"]}
    assert states == {"1.0.0": "applied", "1.0.1": "failed", "1.0.2": "pending"}

    refused = cli("run", database=target, scripts=scripts)
    assert refused.returncode == 1
    assert "1.0.1 half-way failed part-way and needs cleaning up" in refused.stderr
    assert "clean up by hand, then `tbmigrate repair VERSION`" in refused.stderr
    assert "later" not in tables_of(target)

    # The user cleans up and fixes the script, then repairs.
    with connections[target.alias].cursor() as cursor:
        cursor.execute("DROP TABLE left_behind")
    half_way.write_text(half_way.read_text().replace("no_such_table", "left_behind"))
    repaired = cli("repair", "1.0.1", "--json", database=target, scripts=scripts)
    assert repaired.returncode == 0, repaired.stderr
    assert document(repaired, "repair")["repaired"] == [
        {
            "kind": "clear-failed",
            "version": "1.0.1",
            "name": "half-way",
            "summary": "1.0.1 half-way: clear the failed record (it becomes pending)",
        }
    ]
    (event,) = repair_events(target)
    assert (event["version"], event["outcome"]) == ("1.0.1", "success")
    assert event["details"]["repair"] == "clear-failed"
    assert event["details"]["was"]["status"] == "failed"
    assert "no_such_table" in event["details"]["was"]["error"]

    again = cli("run", database=target, scripts=scripts)
    assert again.returncode == 0, again.stderr
    assert rows(target, "SELECT COUNT(*) FROM left_behind") == [(1,)]
    assert [(str(r.version), r.status) for r in history.load(target.alias)] == [
        ("1.0.0", "applied"),
        ("1.0.1", "applied"),
        ("1.0.2", "applied"),
    ]


def test_a_changed_file_is_refused_until_repair_checksums_accepts_it(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    edited = table_script(scripts_dir, "1.0.1", "a2")
    assert tbmigrate("run", database=target).code == 0
    table_script(scripts_dir, "1.0.2", "a3")
    edited.write_text(edited.read_text() + "\n# a comment added after it ran\n")
    before = snapshot(target)

    for command in (["run"], ["rollback", "--no-input"]):
        refused = tbmigrate(*command, database=target)
        assert refused.code == 1
        assert "1.0.1 create-a2 was edited after it was applied (" in refused.err
        assert edited.name in refused.err
        assert "`tbmigrate repair --checksums`" in refused.err
    assert "a3" not in tables_of(target) and "a2" in tables_of(target)
    refusals = [e for e in history.events(target.alias) if e["outcome"] == "refused"]
    assert len(refusals) == 2
    assert {k: v for k, v in snapshot(target).items() if k != "tbmigrate_audit_event"} == {
        k: v for k, v in before.items() if k != "tbmigrate_audit_event"
    }

    old_checksum = history.load(target.alias)[1].checksum
    result = tbmigrate("repair", "--checksums", database=target)
    assert result.code == 0, result.err
    assert "Repaired 1.0.1 create-a2: accept the edited" in result.out
    (event,) = repair_events(target)
    assert event["details"]["checksum"]["old"] == old_checksum
    assert event["details"]["checksum"]["new"] == history.load(target.alias)[1].checksum
    assert event["details"]["checksum"]["new"] != old_checksum
    assert tbmigrate("run", database=target).code == 0
    assert "a3" in tables_of(target)


def test_repair_missing_forgets_a_deleted_script_and_keeps_its_record_in_the_audit(
    target, scripts_dir
):
    table_script(scripts_dir, "1.0.0", "a1")
    retired = table_script(scripts_dir, "1.0.1", "a2")
    assert tbmigrate("run", database=target).code == 0
    retired.unlink()
    refused = tbmigrate("run", database=target)
    assert refused.code == 1 and "1.0.1 create-a2 is applied but its script file is gone" in (
        refused.err
    )
    assert "`tbmigrate repair --missing`" in refused.err
    result = tbmigrate("repair", "--missing", database=target)
    assert result.code == 0, result.err
    assert [str(r.version) for r in history.load(target.alias)] == ["1.0.0"]
    assert "a2" in tables_of(target)  # repair changes records, never the schema
    (event,) = repair_events(target)
    assert event["details"]["repair"] == "forget-missing"
    assert event["details"]["was"]["name"] == "create-a2"
    assert tbmigrate("run", database=target).code == 0


def test_repair_refuses_what_it_cannot_do_and_changes_nothing(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    table_script(scripts_dir, "1.0.1", "a2")
    assert tbmigrate("run", "--to", "1.0.0", database=target).code == 0
    before = snapshot(target)
    cases = [
        ((), 2, "say what to repair: VERSION"),
        (("1.0.0",), 2, "repair: 1.0.0 create-a1 is applied, not failed"),
        (("1.0.1",), 2, "repair: 1.0.1 create-a2 is pending, not failed"),
        (("9.9.9",), 2, "repair: there is no migration 9.9.9"),
        (("nine",), 2, "repair: 'nine' is not a semantic version"),
    ]
    for args, code, message in cases:
        result = tbmigrate("repair", *args, database=target)
        assert (result.code, message in result.err) == (code, True), (args, result.err)
    nothing = tbmigrate("repair", "--checksums", "--missing", database=target)
    assert nothing.code == 0 and nothing.out.splitlines()[-1] == "Nothing to repair."
    bad = tbmigrate("repair", "1.0.0", "--json", database=target)
    assert "is applied, not failed" in document(bad, "repair")["error"]
    assert snapshot(target) == before


def test_repair_on_a_protected_alias_asks_first(make_database, tmp_path):
    prod = make_database("sqlite")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    edited = table_script(scripts, "1.0.0", "a1")
    env = {"PROD_DATABASE_URL": prod.url}
    assert cli("run", "--database", "prod", "--no-input", scripts=scripts, env=env).returncode == 0
    edited.write_text(edited.read_text() + "\n# edited\n")
    before = snapshot(prod)
    refused = cli("repair", "--checksums", "--database", "prod", scripts=scripts, env=env)
    assert refused.returncode == 1
    assert "confirmation needed but there is no terminal" in refused.stderr
    assert snapshot(prod) == before
    done = cli(
        "repair", "--checksums", "--database", "prod", "--no-input", scripts=scripts, env=env
    )
    assert done.returncode == 0, done.stderr
    assert cli("status", "--check", "--database", "prod", scripts=scripts, env=env).returncode == 0


def test_the_repair_and_backup_schemas_are_valid_and_share_the_error_document():
    from jsonschema import Draft202012Validator

    from tests.schemas import schema

    for name in ("repair", "backup"):
        Draft202012Validator.check_schema(schema(name))
        assert schema(name)["$defs"]["error"] == schema("run")["$defs"]["error"]
