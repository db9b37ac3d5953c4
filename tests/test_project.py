"""The project's promises about itself: the README's commands and `.ci/run` agree."""

import re

from tests.conftest import PROJECT


def quick_start_commands():
    text = (PROJECT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_the_quick_start_has_exactly_two_commands():
    main, tests = quick_start_commands()
    assert main.endswith("manage.py tbmigrate run")
    assert tests.endswith("-m pytest")


def test_ci_runs_exactly_the_readmes_test_command():
    _, tests = quick_start_commands()
    ci = (PROJECT / ".ci" / "run").read_text().splitlines()
    assert tests in ci


def test_ci_starts_postgresql_when_it_is_down():
    ci = (PROJECT / ".ci" / "run").read_text()
    assert "pg_ctlcluster --skip-systemctl-redirect" in ci
