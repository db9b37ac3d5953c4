"""`tbmigrate validate ...` as a user runs it: output, JSON contract, exit codes."""

import json

from tests.conftest import cli, table_script, tbmigrate
from tests.schemas import document

JSON_KEYS = {"validation", "database", "vendor", "target", "ok", "counts", "checks", "summary"}


def test_each_validation_as_a_real_process(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "a")
    table_script(scripts, "1.0.1", "b")
    assert cli("run", "--to", "1.0.0", database=target, scripts=scripts).returncode == 0
    runs = {
        "schema": cli("validate", "schema", database=target, scripts=scripts),
        "migration": cli("validate", "migration", "1.0.1", database=target, scripts=scripts),
        "rollback": cli("validate", "rollback", "1.0.0", database=target, scripts=scripts),
        "scripts": cli("validate", "scripts", database=target, scripts=scripts),
    }
    for kind, run in runs.items():
        assert run.returncode == 0, (kind, run.stdout, run.stderr)
        lines = run.stdout.strip().splitlines()
        assert lines[0].startswith("Database: ")
        assert all(line[:6] in ("PASS  ", "WARN  ", "FAIL  ") for line in lines[1:-1])
        assert lines[-1].startswith(f"validate {kind}") and " passed: 0 failed" in lines[-1]
        assert "Traceback" not in run.stderr


def test_json_is_exactly_the_documented_shape(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a")
    for args, kind, version in [
        (["schema"], "schema", None),
        (["migration", "1.0.0"], "migration", "1.0.0"),
        (["scripts"], "scripts", None),
    ]:
        result = tbmigrate("validate", *args, "--json", database=target)
        assert result.code == 0, result.err
        report = document(result, "validate")
        assert set(report) == JSON_KEYS
        assert (report["validation"], report["target"], report["vendor"]) == (
            kind,
            version,
            target.vendor,
        )
        assert report["ok"] is True
        assert set(report["counts"]) == {"PASS", "WARN", "FAIL"}
        assert sum(report["counts"].values()) == len(report["checks"])
        for check in report["checks"]:
            assert set(check) == {"name", "level", "message", "details"}
            assert check["level"] in ("PASS", "WARN", "FAIL")
            assert isinstance(check["details"], dict | list)
        assert report["summary"].startswith(f"validate {kind}")


def test_details_show_at_verbosity_2(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a")
    plain = tbmigrate("validate", "migration", "1.0.0", database=target)
    verbose = tbmigrate("validate", "migration", "1.0.0", "-v", "2", database=target)
    assert "      statements: " not in plain.out
    assert "      statements: " in verbose.out and "CREATE TABLE a" in verbose.out


def test_bad_usage_exits_2_and_a_failure_exits_1(target, scripts_dir, tmp_path):
    table_script(scripts_dir, "1.0.0", "a")
    for args, message in [
        (["validate", "schema", "1.0.0"], "validate schema takes no VERSION (got '1.0.0')"),
        (["validate", "migration"], "validate migration needs a VERSION"),
        (["validate", "rollback", "2.0.0"], "there is no migration 2.0.0"),
    ]:
        result = tbmigrate(*args, database=target)
        assert result.code == 2 and message in result.err, result.err
    unknown = cli("validate", "everything", scripts=tmp_path)
    assert unknown.returncode == 2 and "invalid choice: 'everything'" in unknown.stderr
    url = "postgres://trader:S3cret-pw@127.0.0.1:1/trading"
    down = cli("validate", "schema", "--json", scripts=scripts_dir, env={"DATABASE_URL": url})
    assert down.returncode == 1
    report = json.loads(down.stdout)
    assert report["checks"][0]["name"] == "connectivity" and report["checks"][0]["level"] == "FAIL"
    assert report["database"] == "postgresql://trader:***@127.0.0.1:1/trading"
    assert "S3cret-pw" not in down.stdout + down.stderr
    assert "Traceback" not in down.stderr
