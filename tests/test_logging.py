"""Structured step logs: `TBMIGRATE_LOG_FORMAT=json` gives one JSON object a stderr line.

Real processes on both databases, a step that succeeds and one that really fails;
every line is parsed and checked against ``log-record.schema.json``, and the password
of the database URL appears nowhere.
"""

from __future__ import annotations

import json

from tests.conftest import cli, table_script, write_script
from tests.schemas import errors

SECRET = "S3cret-in-the-log-test"


def with_password(url: str) -> str:
    """The test database's URL with a password in it (trust auth ignores it)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" in userinfo:
        return url
    return f"{scheme}://{userinfo}:{SECRET}@{host}"


def log_records(stderr: str) -> list[dict]:
    """Every JSON line of stderr; the only other line allowed is the final error."""
    lines = stderr.splitlines()
    if lines and lines[-1].startswith("CommandError: "):
        lines = lines[:-1]
    records = [json.loads(line) for line in lines]
    for record in records:
        assert errors(record, "log-record") == [], record
    return records


def steps(records: list[dict]) -> list[tuple]:
    return [
        (r["action"], r["version"], r["name"], r["outcome"], r["level"])
        for r in records
        if r["version"] is not None
    ]


def test_json_logs_record_each_step_start_success_and_failure(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "a1")
    write_script(
        scripts,
        "1.0.1",
        "boom",
        up=f'raise RuntimeError("cannot reach postgres://bob:{SECRET}@db/x")',
    )
    url = with_password(target.url) if target.vendor == "postgresql" else target.url
    env = {"TBMIGRATE_LOG_FORMAT": "json", "DATABASE_URL": url}
    result = cli("run", "--json", database=target, scripts=scripts, env=env)
    assert result.returncode == 1
    json.loads(result.stdout)  # stdout stays the one result document
    records = log_records(result.stderr)
    assert steps(records) == [
        ("apply", "1.0.0", "create-a1", "started", "INFO"),
        ("apply", "1.0.0", "create-a1", "success", "INFO"),
        ("apply", "1.0.1", "boom", "started", "INFO"),
        ("apply", "1.0.1", "boom", "failure", "ERROR"),
    ]
    success, failure = (r for r in records if r["outcome"] in ("success", "failure"))
    assert success["duration_ms"] >= 0 and success["error"] is None
    assert failure["duration_ms"] >= 0
    assert failure["error"].startswith("RuntimeError: cannot reach postgres://bob:***@db/x")
    assert {r["logger"] for r in records} == {"migrator.executor"}
    assert all(r["database"].startswith(target.vendor[:6]) for r in records)
    assert SECRET not in result.stdout + result.stderr

    rollback = cli("rollback", "--no-input", database=target, scripts=scripts, env=env)
    assert rollback.returncode == 0
    assert steps(log_records(rollback.stderr)) == [
        ("revert", "1.0.0", "create-a1", "started", "INFO"),
        ("revert", "1.0.0", "create-a1", "success", "INFO"),
    ]
    assert SECRET not in rollback.stdout + rollback.stderr


def test_text_mode_keeps_stderr_to_the_one_error_line(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    write_script(scripts, "1.0.0", "boom", up='raise RuntimeError("boom")')
    plain = cli("run", database=target, scripts=scripts)
    assert plain.returncode == 1
    assert plain.stderr.splitlines() == [
        "CommandError: 1.0.0 boom failed to apply: RuntimeError: boom "
        "(rolled back, nothing of it remains)"
    ]
    asked = cli("run", database=target, scripts=scripts, env={"TBMIGRATE_LOG_LEVEL": "INFO"})
    lines = asked.stderr.splitlines()
    assert "INFO migrator.executor: apply 1.0.0 boom started" in lines[0]
    assert "ERROR migrator.executor: apply 1.0.0 boom failed after" in lines[1]
    assert lines[2].startswith("CommandError: ")
