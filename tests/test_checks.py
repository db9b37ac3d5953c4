"""Django system checks (`manage.py check --deploy`) on real databases, both vendors."""

from __future__ import annotations

import subprocess
import sys

from django.core.checks import run_checks
from django.test import override_settings

from tests.conftest import PROJECT, cli_env, table_script, tbmigrate, write_script


def ours(target, deploy: bool = True) -> list[tuple[str, str]]:
    """(id, message) of every migrator check message for ``target``."""
    messages = run_checks(include_deployment_checks=deploy, databases=[target.alias])
    return [(m.id, m.msg) for m in messages if m.id.startswith("migrator.")]


def ids(target) -> list[str]:
    return [id_ for id_, _ in ours(target)]


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_up_to_date_database_raises_nothing(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    table_script(scripts_dir, "1.0.1", "a2")
    assert tbmigrate("run", database=target).code == 0
    assert ours(target) == []


def test_pending_migrations_warn_w001_and_name_them(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    table_script(scripts_dir, "1.0.1", "a2")
    tbmigrate("run", "--to", "1.0.0", database=target)
    [(id_, message)] = ours(target)
    assert id_ == "migrator.W001"
    assert message.startswith("1 migration(s) pending on ") and message.endswith("1.0.1 create-a2")


def test_a_changed_applied_script_is_e001(target, scripts_dir):
    path = table_script(scripts_dir, "1.0.0", "a1")
    tbmigrate("run", database=target)
    path.write_text(path.read_text().replace("VARCHAR(50)", "VARCHAR(80)"))
    [(id_, message)] = ours(target)
    assert id_ == "migrator.E001" and "1.0.0 create-a1 was edited after it was applied" in message


def test_a_script_that_cannot_load_is_e002(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    tbmigrate("run", database=target)
    (scripts_dir / "2026-01-01T00-00-00-1.0.1-typo.py").write_text(
        'version = "1.0.1"\ndef up(db)\n    pass\n'
    )
    [(id_, message)] = ours(target)
    assert id_ == "migrator.E002" and "1.0.1-typo.py, line 2: syntax error" in message


def test_missing_and_failed_migrations_are_e004_and_e005(target, scripts_dir):
    gone = table_script(scripts_dir, "1.0.0", "a1")
    write_script(
        scripts_dir,
        "1.0.1",
        "half-way",
        atomic=False,
        up='db.execute("CREATE TABLE a2 (id INTEGER)")\nraise RuntimeError("stopped")',
    )
    assert tbmigrate("run", database=target).code == 1
    gone.unlink()
    assert sorted(ids(target)) == ["migrator.E004", "migrator.E005"]


def test_a_bad_database_url_is_e003_on_every_command(target, scripts_dir):
    problem = "QA_DATABASE_URL=mysql://u:***@h/x uses 'mysql', which tbmigrate does not support"
    with override_settings(TBMIGRATE_DATABASE_ERRORS={"qa": problem}):
        # not only under --deploy: it costs nothing and breaks everything that uses qa
        assert ("migrator.E003", problem) in ours(target, deploy=False)


def test_the_deploy_check_only_runs_under_deploy(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    assert ours(target, deploy=False) == []
    assert ids(target) == ["migrator.W001"]


def test_manage_check_deploy_as_ci_runs_it(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "a1")
    env = cli_env(None, scripts, QA_DATABASE_URL=target.url)
    pending = manage("check", "--deploy", "--database", "qa", env=env)
    assert pending.returncode == 0, pending.stderr  # a warning does not fail...
    assert "database 'qa': (migrator.W001) 1 migration(s) pending" in pending.stderr
    strict = manage("check", "--deploy", "--database", "qa", "--fail-level", "WARNING", env=env)
    assert strict.returncode == 1  # ...unless asked to
    ran = manage("tbmigrate", "run", "--database", "qa", "--no-input", env=env)
    assert ran.returncode == 0, ran.stderr
    clean = manage("check", "--deploy", "--database", "qa", env=env)
    assert clean.returncode == 0 and "migrator." not in clean.stderr


def test_an_unreachable_database_is_a_message_not_a_crash(tmp_path):
    url = "postgres://trader:Pw-check-unreachable@127.0.0.1:1/trading"
    env = cli_env(None, tmp_path, DATABASE_URL=url)
    deploy = manage("check", "--deploy", env=env)
    assert deploy.returncode == 1
    assert "(migrator.E006) cannot read the migration state: cannot use database" in deploy.stderr
    assert "Traceback" not in deploy.stderr
    assert "Pw-check-unreachable" not in deploy.stdout + deploy.stderr
    # without --deploy nothing connects: an everyday command is not held up
    everyday = manage("check", env=env)
    assert everyday.returncode == 0 and "migrator." not in everyday.stderr


def test_a_bad_url_stops_manage_check_with_e003(tmp_path):
    env = cli_env(None, tmp_path, QA_DATABASE_URL="mysql://u:Pw-e003-hidden@h/x")
    result = manage("check", env=env)
    assert result.returncode == 1
    assert "database 'qa': (migrator.E003) QA_DATABASE_URL=mysql://u:***@h/x" in result.stderr
    assert "Pw-e003-hidden" not in result.stdout + result.stderr
