"""`--json` on status, run, rollback and validate: one document, valid against its schema.

Every case runs on SQLite and PostgreSQL, including failures (a step that really
fails), refusals and errors that stop a command before it has a result.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from datetime import datetime

import pytest

from migrator import cli as subcommands
from migrator import history
from tests.conftest import PROJECT, cli, cli_env, table_script, tbmigrate, write_script
from tests.schemas import document, errors, schema


def test_every_schema_is_a_valid_draft_2020_12_schema():
    from jsonschema import Draft202012Validator

    for name in ("status", "run", "validate", "log-record"):
        Draft202012Validator.check_schema(schema(name))


def test_the_error_document_is_the_same_in_every_command_schema():
    shared = [schema(name)["$defs"]["error"] for name in ("status", "run", "validate")]
    assert shared[0] == shared[1] == shared[2]


def test_status_json_through_every_state_and_check(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    edited = table_script(scripts_dir, "1.0.1", "a2")
    gone = table_script(scripts_dir, "1.0.2", "a3")
    write_script(
        scripts_dir,
        "1.0.3",
        "half-way",
        atomic=False,
        up='db.execute("CREATE TABLE a4 (id INTEGER)")\nraise RuntimeError("stopped half-way")',
    )
    table_script(scripts_dir, "1.0.4", "a5")

    fresh = document(tbmigrate("status", "--json", database=target), "status")
    assert fresh["pending"] == ["1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4"]
    assert fresh["up_to_date"] is False and fresh["vendor"] == target.vendor

    checked = tbmigrate("status", "--json", "--check", database=target)
    assert checked.code == 1
    assert document(checked, "status")["ok"] is False  # the status itself, not an error

    assert tbmigrate("run", database=target).code == 1  # 1.0.3 fails outside a transaction
    edited.write_text(edited.read_text() + "\n# edited after it ran\n")
    gone.unlink()
    data = document(tbmigrate("status", "--json", database=target), "status")
    assert data["counts"] == {
        "applied": 1,
        "pending": 1,
        "changed": 1,
        "missing": 1,
        "failed": 1,
        "interrupted": 0,
        "running": 0,
    }
    assert data["pending"] == ["1.0.4"]
    by_version = {m["version"]: m for m in data["migrations"]}
    assert by_version["1.0.2"]["file"] is None and by_version["1.0.2"]["reversible"] is None
    assert "RuntimeError: stopped half-way" in by_version["1.0.3"]["error"]
    assert by_version["1.0.1"]["checksum"] != by_version["1.0.1"]["applied_checksum"]
    applied_at = datetime.fromisoformat(by_version["1.0.0"]["applied_at"])
    assert applied_at.utcoffset() is not None and applied_at.utcoffset().total_seconds() == 0


def test_status_pending_prints_versions_one_a_line(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    table_script(scripts_dir, "1.0.10", "a3")
    table_script(scripts_dir, "1.0.9", "a2")
    assert tbmigrate("status", "--pending", database=target).out == "1.0.0\n1.0.9\n1.0.10\n"
    tbmigrate("run", "--to", "1.0.9", database=target)
    assert tbmigrate("status", "--pending", database=target).out == "1.0.10\n"
    tbmigrate("run", database=target)
    assert tbmigrate("status", "--pending", database=target).out == ""


def test_run_json_success_dry_run_and_nothing_to_do(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    table_script(scripts_dir, "1.0.1", "a2")
    dry = document(tbmigrate("run", "--json", "--dry-run", database=target), "run")
    assert dry["dry_run"] is True and dry["planned"] == ["1.0.0 create-a1", "1.0.1 create-a2"]
    assert dry["steps"] == []
    done = document(tbmigrate("run", "--json", database=target), "run")
    assert [(s["version"], s["outcome"]) for s in done["steps"]] == [
        ("1.0.0", "success"),
        ("1.0.1", "success"),
    ]
    assert done["summary"].startswith("Applied 2 migration(s) in ")
    again = document(tbmigrate("run", "--json", database=target), "run")
    assert again["steps"] == [] and again["ok"] is True


def test_run_json_failing_step_is_one_document_and_one_error_line(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "a1")
    write_script(scripts, "1.0.1", "boom", up='raise RuntimeError("boom")')
    result = cli("run", "--json", database=target, scripts=scripts)
    assert result.returncode == 1
    data = document(result, "run")
    assert [s["outcome"] for s in data["steps"]] == ["success", "failure"]
    assert data["steps"][-1]["error"] == "RuntimeError: boom"
    assert data["summary"] == "Run failed at 1.0.1 boom: 1 of 2 migration(s) applied."
    assert result.stderr.splitlines() == [f"CommandError: {data['error']}"]


def test_run_json_refusal_and_bad_usage_are_error_documents(target, scripts_dir):
    path = table_script(scripts_dir, "1.0.0", "a1")
    bad = tbmigrate("run", "--json", "--to", "9.9.9", database=target)
    assert bad.code == 2 and document(bad, "run")["exit_code"] == 2
    tbmigrate("run", database=target)
    path.write_text(path.read_text() + "\n# edited\n")
    refused = tbmigrate("run", "--json", database=target)
    data = document(refused, "run")
    assert refused.code == 1 and data["command"] == "run" and "run refused" in data["error"]
    assert data["database"].startswith(("sqlite:///", "postgresql://"))


def test_run_json_fake(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    data = document(tbmigrate("run", "--json", "--fake", database=target), "run")
    assert data["steps"][0]["action"] == "fake"
    assert data["summary"] == "Recorded 1 migration(s) as applied without running them."


def test_rollback_json_success_refusal_and_failure(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    write_script(scripts_dir, "1.0.1", "bad-down", down='raise RuntimeError("no way back")')
    table_script(scripts_dir, "1.0.2", "a3")
    tbmigrate("run", database=target)

    dry = document(tbmigrate("rollback", "--json", "--dry-run", database=target), "run")
    assert dry["action"] == "rollback" and dry["planned"] == ["1.0.2 create-a3"]
    done = document(tbmigrate("rollback", "--json", "--no-input", database=target), "run")
    assert done["steps"][0]["action"] == "revert" and done["ok"] is True

    failed = tbmigrate("rollback", "--to", "0", "--json", "--no-input", database=target)
    assert failed.code == 1
    data = document(failed, "run")
    assert data["steps"] == [
        {**data["steps"][0], "version": "1.0.1", "outcome": "failure"},
    ]
    assert data["summary"] == "Rollback failed at 1.0.1 bad-down: 0 of 2 migration(s) reverted."
    assert [str(r.version) for r in history.load(target.alias)] == ["1.0.0", "1.0.1"]

    write_script(scripts_dir, "1.0.3", "one-way", down=None)
    tbmigrate("run", database=target)
    refused = tbmigrate("rollback", "--json", "--no-input", database=target)
    assert refused.code == 1 and "has no down()" in document(refused, "run")["error"]
    bad = tbmigrate("rollback", "7.7.7", "--json", "--no-input", database=target)
    assert bad.code == 2 and document(bad, "run")["exit_code"] == 2


@pytest.mark.parametrize("command", ["status", "run", "rollback"])
@pytest.mark.parametrize(
    "env",
    [
        {"DATABASE_URL": "postgres://trader:Pw-unreachable-7@127.0.0.1:1/trading"},
        {"SQLITE_DB_PATH": "/nonexistent-folder-tbm/db.sqlite3"},
        {"DATABASE_URL": "mysql://trader:Pw-unreachable-7@db/trading"},
    ],
    ids=["postgresql-unreachable", "sqlite-no-folder", "unsupported-url"],
)
def test_an_error_before_any_result_is_one_error_document(command, env, tmp_path):
    result = cli(command, "--json", "--no-input", scripts=tmp_path, env=env)
    assert result.returncode == 1
    data = document(result, "run" if command != "status" else "status")
    assert data["command"] == command
    assert result.stderr.splitlines() == [f"CommandError: {data['error']}"]
    assert "Pw-unreachable-7" not in result.stdout + result.stderr


def test_a_usage_error_under_json_is_an_error_document(tmp_path):
    result = cli("status", "--json", "--bogus", scripts=tmp_path)
    assert result.returncode == 2
    data = document(result, "status")
    assert data["error"].endswith("unrecognized arguments: --bogus")


def test_the_validate_schema_accepts_the_contract_and_rejects_drift():
    check = {"name": "connectivity", "level": "PASS", "message": "reached", "details": {}}
    contract = {
        "validation": "migration",
        "database": "postgresql://u:***@db:5432/trading",
        "vendor": "postgresql",
        "target": "1.0.3",
        "ok": True,
        "counts": {"PASS": 1, "WARN": 0, "FAIL": 0},
        "checks": [check],
        "summary": "1 check: 1 passed",
    }
    assert errors(contract, "validate") == []
    assert errors({**contract, "target": None, "validation": "schema"}, "validate") == []
    assert errors({**contract, "checks": [{**check, "details": ["a"]}]}, "validate") == []
    assert errors({**contract, "checks": [{**check, "level": "OK"}]}, "validate")
    assert errors({**contract, "extra": 1}, "validate")
    assert errors({k: v for k, v in contract.items() if k != "counts"}, "validate")


def require_subcommand(name: str) -> None:
    """Tests of commands built in parallel branches run as soon as the command exists."""
    if name not in subcommands.SUBCOMMANDS:
        pytest.xfail(f"`tbmigrate {name}` is not on this branch yet (merged separately)")


@pytest.mark.parametrize("kind", ["schema", "scripts", "migration", "rollback"])
def test_validate_json_matches_its_schema(kind, target, scripts_dir):
    require_subcommand("validate")
    table_script(scripts_dir, "1.0.0", "a1")
    table_script(scripts_dir, "1.0.1", "a2")
    tbmigrate("run", "--to", "1.0.0", database=target)
    version = {"migration": ["1.0.1"], "rollback": ["1.0.0"]}.get(kind, [])
    result = tbmigrate("validate", kind, *version, "--json", database=target)
    data = document(result, "validate")
    assert data["validation"] == kind and data["vendor"] == target.vendor
    assert data["target"] == (version[0] if version else None)
    assert sum(data["counts"].values()) == len(data["checks"])
    assert data["ok"] is (data["counts"]["FAIL"] == 0)


def test_validate_json_failure_and_error_match_the_schema(target, scripts_dir):
    require_subcommand("validate")
    table_script(scripts_dir, "1.0.0", "a1")
    tbmigrate("run", database=target)
    # validating a migration that is already applied fails its checks
    applied = tbmigrate("validate", "migration", "1.0.0", "--json", database=target)
    data = document(applied, "validate")
    assert applied.code == 1 and data["counts"]["FAIL"] >= 1
    unknown = tbmigrate("validate", "migration", "9.9.9", "--json", database=target)
    assert unknown.code in (1, 2)
    json.loads(unknown.out)  # still exactly one document
    document(unknown, "validate")


def test_the_confirmation_prompt_under_json_keeps_stdout_one_document(target, tmp_path):
    """A real terminal on stdin: the question goes to stderr, the answer is read, stdout is JSON."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "a1")
    assert cli("run", database=target, scripts=scripts).returncode == 0
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, str(PROJECT / "manage.py"), "tbmigrate", "rollback", "--json"],
        cwd=PROJECT,
        env=cli_env(target, scripts),
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(secondary)
    os.write(primary, b"yes\n")
    out, err = process.communicate(timeout=120)
    os.close(primary)
    assert process.returncode == 0, err
    assert "Type 'yes' to continue:" in err and "1.0.0 create-a1" in err
    data = json.loads(out)
    assert errors(data, "run") == [] and data["steps"][0]["outcome"] == "success"
