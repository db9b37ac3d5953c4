"""The `tbmigrate` command (console script) in a folder of its own, as a new user runs it:
built-in settings, paths from the working directory, options before the subcommand,
and a start-up that sets nothing up for --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT, tables_of

TBMIGRATE = Path(sys.executable).parent / "tbmigrate"
STAMP = "2026-01-01T00-00-00"


def console(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    return subprocess.run(
        [str(TBMIGRATE), *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def mixed_scripts(folder: Path) -> None:
    """A Python script, an .up.sql/.down.sql pair and a dbmate-style single file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{STAMP}-1.0.0-users.py").write_text(
        'version = "1.0.0"\n\n\ndef up(db):\n'
        '    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")\n\n\n'
        'def down(db):\n    db.execute("DROP TABLE users")\n'
    )
    (folder / f"{STAMP}-1.0.1-orders.up.sql").write_text(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users (id));\n"
    )
    (folder / f"{STAMP}-1.0.1-orders.down.sql").write_text("DROP TABLE orders;\n")
    (folder / f"{STAMP}-1.0.2-notes.sql").write_text(
        "-- migrate:up\nCREATE TABLE notes (id INTEGER, body TEXT);\n"
        "-- migrate:down\nDROP TABLE notes;\n"
    )


def test_version_is_tbmigrates(tmp_path):
    import migrator

    result = console("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"tbmigrate {migrator.__version__}"


def test_help_lists_every_subcommand_with_examples_and_sets_nothing_up(tmp_path):
    from migrator import cli

    result = console("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: tbmigrate ")
    for name in cli.SUBCOMMANDS:
        assert f"    {name} " in result.stdout
    assert "examples:" in result.stdout and "tbmigrate --database qa run" in result.stdout
    # Start-up: --help imports neither the engine nor the ORM (bench/startup.py times it).
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom migrator.console import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('migrator.api', 'django.db.models', 'django.contrib.admin') "
            "if m in sys.modules]\nprint('HEAVY', heavy)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
    )
    assert "HEAVY []" in probe.stdout, probe.stdout + probe.stderr


@pytest.mark.parametrize("name", ["run", "rollback", "sql", "import", "create"])
def test_each_subcommands_help_shows_examples(tmp_path, name):
    result = console(name, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "examples:" in result.stdout and f"tbmigrate {name}" in result.stdout


def test_in_an_empty_folder_everything_is_relative_to_it(tmp_path, vendor, make_database):
    """run on a mix of .py, .up.sql/.down.sql and -- migrate:up files, status --check,
    rollback, sql: from the folder, with only the database's variable set."""
    mixed_scripts(tmp_path / "migration_scripts")
    if vendor == "sqlite":
        env = {"SQLITE_DB_PATH": "data/app.sqlite3"}  # relative: from the working directory
        (tmp_path / "data").mkdir()
        database = None
    else:
        database = make_database("postgresql")
        env = {"DATABASE_URL": database.url}
    run = console("run", cwd=tmp_path, **env)
    assert run.returncode == 0, run.stderr
    assert "Applied 3 migration(s)" in run.stdout
    if vendor == "sqlite":
        assert (tmp_path / "data" / "app.sqlite3").is_file()
        assert f"sqlite:///{tmp_path}/data/app.sqlite3" in run.stdout
    else:
        assert {"users", "orders", "notes"} <= tables_of(database)
    assert console("status", "--check", cwd=tmp_path, **env).returncode == 0
    sql = console("sql", "1.0.1", cwd=tmp_path, **env)
    assert sql.returncode == 0, sql.stderr
    assert "CREATE TABLE orders" in sql.stdout and "-- ==== 1.0.1 orders (apply)" in sql.stdout
    back = console("--no-input", "rollback", cwd=tmp_path, **env)  # an option before it
    assert back.returncode == 0, back.stderr
    status = console("--database", "default", "status", "--json", cwd=tmp_path, **env)
    states = {m["version"]: m["state"] for m in json.loads(status.stdout)["migrations"]}
    assert states == {"1.0.0": "applied", "1.0.1": "applied", "1.0.2": "pending"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["migration_scripts", *(["data"] if vendor == "sqlite" else [])]
    )


def test_the_scripts_folder_variable_is_relative_to_the_working_directory(tmp_path):
    mixed_scripts(tmp_path / "db" / "steps")
    result = console(
        "status", cwd=tmp_path, SQLITE_DB_PATH="x.sqlite3", TBMIGRATE_SCRIPTS_DIR="db/steps"
    )
    assert result.returncode == 0, result.stderr
    assert f"Scripts:  {tmp_path}/db/steps" in result.stdout and "3 pending" in result.stdout


def test_without_a_scripts_folder_it_says_what_to_do(tmp_path):
    result = console("status", cwd=tmp_path, SQLITE_DB_PATH="x.sqlite3")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "TBMIGRATE_SCRIPTS_DIR" in result.stderr


def test_an_unknown_settings_module_is_one_line(tmp_path):
    result = console("status", cwd=tmp_path, DJANGO_SETTINGS_MODULE="nosuch.settings")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot import the settings module 'nosuch.settings'" in result.stderr


def test_manage_py_tbmigrate_keeps_working_with_options_before_the_subcommand(tmp_path):
    mixed_scripts(tmp_path / "scripts")
    env = {
        "PATH": os.environ["PATH"],
        "SQLITE_DB_PATH": str(tmp_path / "p.sqlite3"),
        "TBMIGRATE_SCRIPTS_DIR": str(tmp_path / "scripts"),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "tbmigrate", "--database", "default", "run"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    version = subprocess.run(
        [sys.executable, "manage.py", "tbmigrate", "--version"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert version.stdout.startswith("tbmigrate ")


def test_create_warns_about_a_version_older_than_the_newest_applied(tmp_path):
    mixed_scripts(tmp_path / "migration_scripts")
    env = {"SQLITE_DB_PATH": "x.sqlite3"}
    assert console("run", cwd=tmp_path, **env).returncode == 0
    result = console("create", "0.9.0", "early", cwd=tmp_path, **env)
    assert result.returncode == 0
    assert "warning: 0.9.0 is older than 1.0.2, the newest migration applied" in result.stderr
    assert "next free version after it is 1.0.3" in result.stderr


def test_create_warns_without_a_database_about_a_version_older_than_the_newest_script(tmp_path):
    mixed_scripts(tmp_path / "migration_scripts")
    result = console("create", "1.0.1", "between", cwd=tmp_path, SQLITE_DB_PATH="none.sqlite3")
    assert result.returncode == 2  # 1.0.1 exists
    result = console("create", "0.0.1", "first", cwd=tmp_path, SQLITE_DB_PATH="none.sqlite3")
    assert result.returncode == 0
    assert "older than 1.0.2, the newest script" in result.stderr
    assert not (tmp_path / "none.sqlite3").exists()  # create never creates the database


def test_a_name_too_long_for_the_file_system_is_bad_usage(tmp_path):
    (tmp_path / "migration_scripts").mkdir()
    name = "-".join(["word"] * 60)
    result = console("create", "1.0.0", name, cwd=tmp_path, SQLITE_DB_PATH="x.sqlite3")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "this file system allows; choose a shorter NAME" in result.stderr
    assert list((tmp_path / "migration_scripts").iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--lock-timeout", "-1"],
        ["rollback", "--lock-timeout=-0.5"],
        ["run", "--pg-lock-timeout", "-1"],
        ["run", "--pg-statement-timeout", "-3"],
        ["run", "--pg-lock-retries", "-1"],
    ],
)
def test_negative_timeouts_are_refused_as_bad_usage(tmp_path, args):
    mixed_scripts(tmp_path / "migration_scripts")
    result = console(*args, cwd=tmp_path, SQLITE_DB_PATH="x.sqlite3")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "0 or more" in result.stderr
    assert not (tmp_path / "x.sqlite3").exists()


def test_relative_sqlite_urls_are_taken_from_the_working_directory(tmp_path):
    import sqlite3

    mixed_scripts(tmp_path / "migration_scripts")
    result = console("run", cwd=tmp_path, DATABASE_URL="sqlite:///rel.sqlite3")
    assert result.returncode == 0, result.stderr
    assert f"sqlite:///{tmp_path}/rel.sqlite3" in result.stdout
    with sqlite3.connect(tmp_path / "rel.sqlite3") as connection:
        assert connection.execute("SELECT COUNT(*) FROM users").fetchone() == (0,)


def test_a_projects_settings_are_used_when_named(tmp_path):
    (tmp_path / "mysite").mkdir()
    (tmp_path / "mysite" / "__init__.py").write_text("")
    (tmp_path / "mysite" / "settings.py").write_text(
        'from migrator.console_settings import *  # noqa: F403\nTBMIGRATE_SCRIPTS_DIR = "steps"\n'
    )
    mixed_scripts(tmp_path / "steps")
    result = console(
        "status", cwd=tmp_path, DJANGO_SETTINGS_MODULE="mysite.settings", SQLITE_DB_PATH="x.db"
    )
    assert result.returncode == 0, result.stderr
    assert f"Scripts:  {tmp_path}/steps" in result.stdout
    flag = console("--settings", "mysite.settings", "status", cwd=tmp_path, SQLITE_DB_PATH="x.db")
    assert flag.returncode == 0 and "3 pending" in flag.stdout
