"""The fleet recipes (`recipes/fleet/`): a CircleCI matrix and a Kubernetes Indexed Job.

Neither CircleCI nor a cluster is here, so each file is read as its engine would read
it and its structure checked (the names it schedules are the fleet file's, in order;
nothing secret is written in it), then the commands each cell or pod runs are run with
the shell, as the engine would run them, against real PostgreSQL databases and SQLite
files, followed by the `fleet status` gate.
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

from migrator import fleet, history
from tests.conftest import PROJECT, cli_env
from tests.test_circleci import expand, substitute
from tests.test_fleet import PASSWORD, scripts_for_fleet, with_password

RECIPES = PROJECT / "recipes" / "fleet"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def example() -> fleet.Fleet:
    return fleet.load(RECIPES / "tbmigrate.fleet.toml")


@pytest.fixture(scope="module")
def circleci() -> dict[str, Any]:
    return yaml.safe_load((RECIPES / "circleci.yml").read_text())


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    documents = list(yaml.safe_load_all((RECIPES / "kubernetes.yaml").read_text()))
    return {doc["kind"]: doc for doc in documents}


def test_the_example_fleet_file_names_four_databases_by_their_variables(example):
    assert example.names() == ["exchange-a", "exchange-b", "tenant-eu-1", "tenant-us-1"]
    assert [e.url_env for e in example.entries] == [
        "EXCHANGE_A_DATABASE_URL",
        "EXCHANGE_B_DATABASE_URL",
        "TENANT_EU_1_DATABASE_URL",
        "TENANT_US_1_DATABASE_URL",
    ]


@pytest.fixture
def fleet_workdir(make_database, tmp_path, example, postgres_available):
    """A checkout as the recipes expect it: the example fleet file and the scripts at
    its root; the four variables set to real databases (two of each vendor)."""
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "tbmigrate.fleet.toml").write_text((RECIPES / "tbmigrate.fleet.toml").read_text())
    (work / "migration_scripts").mkdir()
    scripts_for_fleet(work / "migration_scripts")
    databases, env = {}, {}
    for entry, vendor in zip(example.entries, ["postgresql", "sqlite"] * 2, strict=True):
        database = make_database(vendor)
        databases[entry.name] = database
        env[entry.url_env] = with_password(database.url)
    base = {k: v for k, v in cli_env(None, None).items() if k != "DJANGO_SETTINGS_MODULE"}
    base["PATH"] = f"{BIN}{os.pathsep}{base['PATH']}"
    return work, databases, {**base, **env}


def shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert PASSWORD not in done.stdout + done.stderr
    return done


# -- CircleCI ------------------------------------------------------------------------------
def workflow(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    jobs = config["workflows"]["migrate-fleet"]["jobs"]
    return {name: spec for job in jobs for name, spec in job.items()}


def cell_commands(config: dict[str, Any], job: str, database: str | None = None) -> list[str]:
    """The `run` commands of one job (one matrix cell), as CircleCI would run them."""
    steps = substitute(config["jobs"][job]["steps"], {"database": database})
    commands = []
    for name, args in expand(config, steps):
        if name == "run" and not args["name"].startswith("Install"):
            commands.append(args["command"])
    return commands


def test_the_circleci_matrix_covers_the_fleet_in_order_canary_first(circleci, example):
    assert circleci["version"] == 2.1
    jobs = workflow(circleci)
    canary = jobs["migrate-canary"]["database"]
    cells = jobs["migrate-fleet-database"]["matrix"]["parameters"]["database"]
    assert [canary, *cells] == example.names()
    assert jobs["migrate-fleet-database"]["requires"] == ["migrate-canary"]
    assert jobs["fleet-status"]["requires"] == ["migrate-fleet-database"]  # every cell
    assert {spec["context"] for spec in jobs.values()} == {"tbmigrate-fleet"}


def test_each_cell_runs_tbmigrate_run_on_its_database_and_the_gate_is_fleet_status(circleci):
    for job in ("migrate-canary", "migrate-fleet-database"):
        commands = cell_commands(circleci, job, "exchange-b")
        assert commands[-1] == "tbmigrate run --database exchange-b --no-input"
    gate = cell_commands(circleci, "fleet-status")
    assert gate[-1].strip().splitlines()[-1] == "tbmigrate fleet status"


def test_no_secret_is_in_the_recipes_and_every_variable_is_named_for_the_context(example):
    for name in ("circleci.yml", "kubernetes.yaml", "tbmigrate.fleet.toml"):
        text = (RECIPES / name).read_text()
        assert set(re.findall(r"://[^/\s:@]+:([^@\s]+)@", text)) <= {"PASSWORD"}, name
    header = (RECIPES / "circleci.yml").read_text()
    for entry in example.entries:
        assert entry.url_env in header


@pytest.mark.slow
def test_the_circleci_cells_then_the_gate_migrate_a_real_fleet(circleci, fleet_workdir):
    work, databases, env = fleet_workdir
    env = {**env, "CIRCLE_PROJECT_REPONAME": "trading", "CIRCLE_BUILD_NUM": "77"}
    jobs = workflow(circleci)
    cells = [("migrate-canary", jobs["migrate-canary"]["database"])] + [
        ("migrate-fleet-database", name)
        for name in jobs["migrate-fleet-database"]["matrix"]["parameters"]["database"]
    ]
    for job, name in cells:
        bash_env = work / f"bash_env_{name}"  # each cell is a fresh container
        bash_env.write_text("")
        for command in cell_commands(circleci, job, name):
            done = shell(command, work, {**env, "BASH_ENV": str(bash_env)})
            assert done.returncode == 0, f"{name}: {done.stdout}\n{done.stderr}"
    for name, database in databases.items():
        records = history.load(database.alias)
        assert [str(r.version) for r in records] == ["1.0.0", "1.0.1", "1.0.2"], name
        assert {r.applied_by for r in records} == {"circleci trading build 77"}
    bash_env = work / "bash_env_gate"
    bash_env.write_text("")
    (gate,) = cell_commands(circleci, "fleet-status")
    done = shell(gate, work, {**env, "BASH_ENV": str(bash_env)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "4 database(s) (latest 1.0.2): 4 at head."
    assert (work / "results" / "fleet-status.json").exists()


@pytest.mark.slow
def test_the_circleci_gate_fails_when_a_cell_could_not_migrate_its_database(
    circleci, fleet_workdir
):
    work, databases, env = fleet_workdir
    # tenant-eu-1 already has the table 1.0.1 creates: its cell fails at 1.0.1.
    from django.db import connections

    with connections[databases["tenant-eu-1"].alias].cursor() as cursor:
        cursor.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    command = cell_commands(circleci, "migrate-fleet-database", "tenant-eu-1")[-1]
    failed = shell(command, work, env)
    assert failed.returncode == 1
    assert "Run failed at 1.0.1 orders" in failed.stdout
    (gate,) = cell_commands(circleci, "fleet-status")
    done = shell(gate, work, env)
    assert done.returncode == 1
    assert "tenant-eu-1" in done.stdout and "4 database(s) (latest 1.0.2): 4 behind." in done.stdout


# -- Kubernetes ----------------------------------------------------------------------------
def test_the_indexed_job_has_one_index_per_fleet_entry(manifests, example):
    config_map, job = manifests["ConfigMap"], manifests["Job"]
    assert set(manifests) == {"ConfigMap", "Job"}
    (key, text) = next(iter(config_map["data"].items()))
    in_cluster = fleet.parse(text, Path(key))
    assert in_cluster.entries == example.entries  # the same fleet as the file beside it
    spec = job["spec"]
    assert job["apiVersion"] == "batch/v1"
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == len(example.entries)
    assert 1 <= spec["parallelism"] <= spec["completions"]
    assert spec["backoffLimitPerIndex"] == 0  # a failed migration is not retried blindly
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # required by backoffLimitPerIndex
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    (mount,) = container["volumeMounts"]
    assert env["TBMIGRATE_FLEET_FILE"] == f"{mount['mountPath']}/{key}"
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert container["envFrom"] == [{"secretRef": {"name": "tbmigrate-fleet-urls"}}]
    assert not any(item["name"].endswith("DATABASE_URL") for item in container["env"])
    script = container["args"][0]
    assert 'tbmigrate fleet names --index "$JOB_COMPLETION_INDEX"' in script
    assert 'exec tbmigrate run --database "$name" --no-input' in script


@pytest.mark.slow
def test_every_index_of_the_job_migrates_its_own_database(manifests, fleet_workdir, tmp_path):
    work, databases, env = fleet_workdir
    config_map, job = manifests["ConfigMap"], manifests["Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    mounted = tmp_path / "etc-tbmigrate"  # the ConfigMap as the pod sees it
    mounted.mkdir()
    for key, text in config_map["data"].items():
        (mounted / key).write_text(text)
    pod_env = {item["name"]: item["value"] for item in container["env"]}
    pod_env["TBMIGRATE_FLEET_FILE"] = pod_env["TBMIGRATE_FLEET_FILE"].replace(
        "/etc/tbmigrate", str(mounted)
    )
    pod_env["TBMIGRATE_SCRIPTS_DIR"] = pod_env["TBMIGRATE_SCRIPTS_DIR"].replace("/app", str(work))
    elsewhere = tmp_path / "pod-cwd"  # the pod's working directory holds no fleet file
    elsewhere.mkdir()
    for index in range(job["spec"]["completions"]):
        done = subprocess.run(
            [*container["command"], container["args"][0]],
            cwd=elsewhere,
            env={**env, **pod_env, "JOB_COMPLETION_INDEX": str(index)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"index {index}: {done.stdout}\n{done.stderr}"
        assert PASSWORD not in done.stdout + done.stderr
        assert '"outcome": "success"' in done.stderr  # the JSON log records of its steps
    for name, database in databases.items():
        records = history.load(database.alias)
        assert [str(r.version) for r in records] == ["1.0.0", "1.0.1", "1.0.2"], name
        assert {r.applied_by for r in records} == {"kubernetes job tbmigrate-fleet"}
    gate = subprocess.run(
        [str(BIN / "tbmigrate"), "fleet", "status"],
        cwd=elsewhere,
        env={**env, **pod_env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert gate.returncode == 0, gate.stdout + gate.stderr
    beyond = subprocess.run(
        [*container["command"], container["args"][0]],
        cwd=elsewhere,
        env={**env, **pod_env, "JOB_COMPLETION_INDEX": "4"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert beyond.returncode == 2 and "the index is 0 to 3" in beyond.stderr
