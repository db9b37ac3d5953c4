"""The CircleCI pipeline (`.circleci/config.yml`): its structure, and its migrate steps run.

CircleCI itself is not here, so the file is read as CircleCI would (YAML, reusable
``commands`` expanded with their parameters and ``when`` conditions), its structure is
checked against what the README promises, and the migrate job's own steps are run
with bash, in order, against a real PostgreSQL database, as the job would run them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator import history
from tests.conftest import PROJECT, cli_env, tbmigrate
from tests.test_json_output import require_subcommand
from tests.test_project import quick_start_commands

CONFIG_PATH = PROJECT / ".circleci" / "config.yml"
RELEASE = "v1.4.2"
NOT_RELEASES = ["1.4.2", "v1.4", "v1.4.2-rc.1", "release-1.4.2", "v1.4.2.1"]
WORKFLOW = "test-build-migrate-deploy"
PARAMETER = re.compile(r"<<\s*parameters\.([\w-]+)\s*>>")


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG_PATH.read_text())


def workflow_jobs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    jobs = config["workflows"][WORKFLOW]["jobs"]
    return {name: (spec or {}) for job in jobs for name, spec in _item(job)}


def _item(step: Any) -> list[tuple[str, Any]]:
    return [(step, {})] if isinstance(step, str) else list(step.items())


def substitute(value: Any, parameters: dict[str, Any]) -> Any:
    """Fill ``<< parameters.x >>`` as CircleCI does (a lone placeholder keeps its type)."""
    if isinstance(value, str):
        whole = PARAMETER.fullmatch(value.strip())
        if whole:
            return parameters[whole.group(1)]
        return PARAMETER.sub(lambda m: str(parameters[m.group(1)]), value)
    if isinstance(value, list):
        return [substitute(item, parameters) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, parameters) for key, item in value.items()}
    return value


def expand(config: dict[str, Any], steps: list[Any]) -> list[tuple[str, Any]]:
    """A job's steps with reusable commands and ``when`` blocks expanded."""
    result: list[tuple[str, Any]] = []
    commands = config.get("commands", {})
    for step in steps:
        for name, args in _item(step):
            if name in commands:
                declared = commands[name].get("parameters", {})
                values = {key: spec.get("default") for key, spec in declared.items()}
                unknown = set(args or {}) - set(declared)
                assert not unknown, f"{name} has no parameter {unknown}"
                values.update(args or {})
                assert None not in values.values(), f"{name}: a parameter has no value"
                result += expand(config, substitute(commands[name]["steps"], values))
            elif name == "when":
                if args["condition"] is True:
                    result += expand(config, args["steps"])
            else:
                result.append((name, args))
    return result


def run_steps(config: dict[str, Any], job: str) -> list[dict[str, str]]:
    """The ``run`` steps of a job, each as {"name", "command"}."""
    steps = []
    for name, args in expand(config, config["jobs"][job]["steps"]):
        if name == "run":
            steps.append(args if isinstance(args, dict) else {"name": args, "command": args})
    return steps


def tbmigrate_calls(config: dict[str, Any], job: str) -> list[str]:
    """Every `manage.py ...` invocation of a job's commands, in order."""
    calls = []
    for step in run_steps(config, job):
        calls += re.findall(r"python manage\.py ([^\n|>;&)]+)", step["command"])
    return [call.strip() for call in calls]


def tag_filter(spec: dict[str, Any]) -> str | None:
    return ((spec.get("filters") or {}).get("tags") or {}).get("only")


def runs_on_release_tag(spec: dict[str, Any]) -> bool:
    pattern = tag_filter(spec)
    return bool(pattern) and bool(re.fullmatch(pattern.strip("/"), RELEASE))


# -- structure -------------------------------------------------------------------------


def test_the_config_is_circleci_2_1_with_the_six_jobs(config):
    assert config["version"] == 2.1
    assert set(config["jobs"]) == {
        "test",
        "build",
        "migrate-qa-database",
        "migrate-production-database",
        "deploy-qa",
        "deploy-production",
    }
    assert set(workflow_jobs(config)) == set(config["jobs"])


def test_the_test_job_runs_the_readmes_command_against_a_postgres_service(config):
    job = config["jobs"]["test"]
    primary, *services = job["docker"]
    assert primary["image"].startswith("cimg/python:3.11")
    assert any(s["image"].startswith("cimg/postgres:15.") for s in services)
    url = primary["environment"]["TBMIGRATE_TEST_POSTGRES_URL"]
    assert url == "postgresql://postgres@localhost:5432/postgres"  # a throwaway, no password
    *_, test_command = quick_start_commands()
    commands = [step["command"] for step in run_steps(config, "test")]
    assert test_command in commands
    assert ".venv/bin/ruff check . && .venv/bin/ruff format --check ." in commands


def test_the_build_job_builds_the_sdist_and_wheel(config):
    commands = " ".join(step["command"] for step in run_steps(config, "build"))
    assert "python -m build" in commands
    assert ("persist_to_workspace", {"root": ".", "paths": ["dist"]}) in expand(
        config, config["jobs"]["build"]["steps"]
    )


def test_qa_migrates_after_test_and_build_and_before_its_deploy(config):
    jobs = workflow_jobs(config)
    assert sorted(jobs["migrate-qa-database"]["requires"]) == ["build", "test"]
    assert jobs["migrate-qa-database"]["context"] == "tbmigrate-qa"
    assert jobs["deploy-qa"]["requires"] == ["migrate-qa-database"]
    for name in ("migrate-qa-database", "deploy-qa"):
        assert jobs[name]["filters"] == {"branches": {"only": "main"}}
        assert not runs_on_release_tag(jobs[name])


def test_production_migrates_only_on_release_tags_before_its_deploy(config):
    jobs = workflow_jobs(config)
    assert sorted(jobs["migrate-production-database"]["requires"]) == ["build", "test"]
    assert jobs["migrate-production-database"]["context"] == "tbmigrate-production"
    assert jobs["deploy-production"]["requires"] == ["migrate-production-database"]
    for name in ("migrate-production-database", "deploy-production"):
        assert jobs[name]["filters"]["branches"] == {"ignore": "/.*/"}
        assert runs_on_release_tag(jobs[name])
        pattern = tag_filter(jobs[name]).strip("/")
        assert not [tag for tag in NOT_RELEASES if re.fullmatch(pattern, tag)]


def test_every_job_upstream_of_a_tag_job_runs_on_tags_too(config):
    """CircleCI skips a tag-filtered job whose required jobs have no tag filter."""
    jobs = workflow_jobs(config)
    todo = [name for name, spec in jobs.items() if runs_on_release_tag(spec)]
    seen = set()
    while todo:
        name = todo.pop()
        seen.add(name)
        assert runs_on_release_tag(jobs[name]), f"{name} would not run for {RELEASE}"
        todo += [r for r in jobs[name].get("requires", []) if r not in seen]
    assert {"test", "build", "migrate-production-database"} <= seen


@pytest.mark.parametrize(
    "job, alias, backup",
    [("migrate-qa-database", "qa", False), ("migrate-production-database", "prod", True)],
)
def test_each_migrate_job_checks_preflights_backs_up_runs_and_verifies(config, job, alias, backup):
    calls = tbmigrate_calls(config, job)
    expected = [
        f"tbmigrate status --database {alias}",
        f"check --deploy --database {alias}",
        f"tbmigrate status --pending --database {alias}",
        f'tbmigrate validate migration "$version" --database {alias}',
        *([f"tbmigrate backup --database {alias}"] if backup else []),
        f"tbmigrate run --no-input --database {alias}",
        f"tbmigrate status --json --database {alias}",
        f"tbmigrate status --check --database {alias}",
    ]
    assert calls == expected
    text = " ".join(step["command"] for step in run_steps(config, job))
    assert "DATABASE_URL" not in text  # one way of choosing the database: the alias


def test_no_secret_is_written_in_the_file(config):
    text = CONFIG_PATH.read_text()
    passwords = re.findall(r"://[^/\s:@]+:([^@\s]+)@", text)
    assert set(passwords) <= {"PASSWORD"}, "a URL with a password (only the placeholder may be)"
    for name, job in config["jobs"].items():
        for image in job.get("docker", []):
            for key in image.get("environment", {}):
                assert not key.endswith("DATABASE_URL"), f"{name} sets {key}: use a context"
    contexts = {spec.get("context") for spec in workflow_jobs(config).values()} - {None}
    assert contexts == {"tbmigrate-qa", "tbmigrate-production"}


# -- the migrate job, run -----------------------------------------------------------------


def run_job(config, job: str, env: dict[str, str], workdir: Path) -> list[tuple[str, Any]]:
    """Run a job's steps with bash as CircleCI would (BASH_ENV sourced by every step).

    Installing (checkout, pip, apt-get) is what the test environment already did, so
    those steps are left out; every other `run` step runs, and the first failure stops
    the job as it would in CircleCI.
    """
    (workdir / "manage.py").symlink_to(PROJECT / "manage.py")
    bash_env = workdir / "bash_env"
    bash_env.write_text("")
    full_env = {
        **env,
        "BASH_ENV": str(bash_env),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        "CIRCLE_PROJECT_REPONAME": "tbmigrate",
        "CIRCLE_BUILD_NUM": "4242",
        "CIRCLE_BRANCH": "main",
    }
    ran = []
    for step in run_steps(config, job):
        if step["name"].startswith("Install"):
            continue
        done = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", step["command"]],
            cwd=workdir,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        ran.append((step["name"], done))
        assert done.returncode == 0, f"{step['name']}: {done.stdout}\n{done.stderr}"
    return ran


def test_the_qa_migrate_job_runs_against_a_real_postgres_database(config, make_database, tmp_path):
    require_subcommand("validate")
    qa = make_database("postgresql")
    env = cli_env(None, None, QA_DATABASE_URL=qa.url)
    ran = dict(run_job(config, "migrate-qa-database", env, tmp_path))
    preflight = ran["Preflight every pending migration"].stdout
    assert "Pending: 1.0.0 1.0.1 1.0.2 1.0.3 1.0.4" in preflight
    assert "(migrator.W001) 5 migration(s) pending" in (
        ran["Check connectivity and the migration state"].stderr
    )
    records = history.load(qa.alias)
    assert [str(r.version) for r in records] == ["1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4"]
    assert all(r.applied_by == "circleci tbmigrate build 4242 main" for r in records)
    assert '"outcome": "success"' in ran["Apply the migrations"].stderr  # JSON step logs
    assert (tmp_path / "results" / "status.json").exists()
    assert tbmigrate("status", "--check", database=qa).code == 0


def test_the_qa_migrate_job_stops_on_an_unreachable_database(config, tmp_path):
    env = cli_env(None, None, QA_DATABASE_URL="postgres://ci:Pw-ci-unreachable@127.0.0.1:1/qa")
    with pytest.raises(AssertionError, match="Check connectivity") as failed:
        run_job(config, "migrate-qa-database", env, tmp_path)
    assert "cannot use database postgresql://ci:***@127.0.0.1:1/qa" in str(failed.value)
    assert "Pw-ci-unreachable" not in str(failed.value)


def test_the_production_migrate_job_backs_up_first(config, make_database, tmp_path):
    require_subcommand("validate")
    require_subcommand("backup")
    prod = make_database("postgresql")
    env = cli_env(None, None, PROD_DATABASE_URL=prod.url)
    ran = [name for name, _ in run_job(config, "migrate-production-database", env, tmp_path)]
    assert ran.index("Back up the database") < ran.index("Apply the migrations")
    assert tbmigrate("status", "--check", database=prod).code == 0
