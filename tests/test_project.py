"""The project's promises about itself: the README's commands, `run-tests` and `.ci/run` agree."""

import re

from tests.conftest import PROJECT


def quick_start_commands():
    text = (PROJECT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_the_quick_start_installs_the_command_runs_the_project_and_the_tests():
    install, project, tests = quick_start_commands()
    assert "pip install -q ." in install and install.endswith("tbmigrate --version")
    assert project.endswith("manage.py tbmigrate run")
    assert tests == "./run-tests"


def test_ci_runs_exactly_the_readmes_test_command():
    *_, tests = quick_start_commands()
    ci = (PROJECT / ".ci" / "run").read_text().splitlines()
    assert tests in ci


def test_the_test_command_makes_a_fresh_machine_ready():
    """PostgreSQL started when down, chromium installed when missing, then pytest."""
    script = (PROJECT / "run-tests").read_text()
    assert "pg_ctlcluster --skip-systemctl-redirect" in script
    assert "apt-get install -y -qq chromium" in script
    assert "command -v chromium" in script
    assert script.rstrip().endswith('exec .venv/bin/python -m pytest "$@"')
    assert (PROJECT / "run-tests").stat().st_mode & 0o111


def test_the_failed_migration_recipe_works_as_written(target, scripts_dir):
    """README, troubleshooting: "Failed migration recovery", step by step."""
    from tests.conftest import table_script, tbmigrate, write_script

    table_script(scripts_dir, "1.0.0", "users")
    table_script(scripts_dir, "1.0.1", "orders")
    bad = write_script(
        scripts_dir, "1.0.2", "broken", up='db.execute("INSERT INTO nosuch VALUES (1)")'
    )
    assert tbmigrate("run", database=target).code == 1
    status = tbmigrate("status", database=target)
    assert status.code == 0 and "2 applied, 1 pending" in status.out
    # nothing of 1.0.2 to roll back: the recipe says so, and so does tbmigrate
    assert tbmigrate("rollback", "1.0.2", "--no-input", database=target).code == 2
    assert tbmigrate("validate", "rollback", "1.0.1", database=target).code == 0
    back = tbmigrate("rollback", "--to", "1.0.0", "--no-input", database=target)
    assert back.code == 0, back.err
    bad.write_text(bad.read_text().replace("INSERT INTO nosuch VALUES (1)", "SELECT 1"))
    checked = tbmigrate("validate", "migration", "1.0.2", database=target)
    assert checked.code == 0, checked.out + checked.err
    assert tbmigrate("run", database=target).code == 0
    assert tbmigrate("status", "--check", database=target).code == 0
