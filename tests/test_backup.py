"""`tbmigrate backup`, `run --backup`, BACKUP_DATABASES, and restoring, on both databases.

Restoring is done exactly as the README says: SQLite, copy the backup file back over
the database; PostgreSQL, `pg_restore` into a new database.  The data is compared
row by row with the database as it was when the backup was taken.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from migrator import history
from tests.conftest import cli, rows, snapshot, table_script, tables_of, write_script
from tests.schemas import document

pytestmark = pytest.mark.slow


def accounts_scripts(folder: Path) -> None:
    write_script(
        folder,
        "1.0.0",
        "accounts",
        up="""
        db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT, cash NUMERIC)")
        db.execute("INSERT INTO accounts VALUES (1, 'ann', 100.5), (2, 'bob', 7)")
        """,
        down='db.execute("DROP TABLE accounts")',
    )


def destructive_script(folder: Path) -> None:
    write_script(
        folder,
        "1.0.1",
        "drop-accounts",
        up='db.execute("DROP TABLE accounts")',
        down='db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY)")',
    )


def restore(target, backup: Path, make_database):
    """Restore ``backup`` the README's way; return the database holding the restored data."""
    if target.vendor == "sqlite":
        from django.db import connections

        connections[target.alias].close()
        shutil.copyfile(backup, target.name)
        return target
    restored = make_database("postgresql")
    completed = subprocess.run(
        ["pg_restore", "--no-owner", f"--dbname={restored.url}", str(backup)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return restored


def backup_events(target):
    return [e for e in history.events(target.alias) if e["action"] == "backup"]


def test_backup_writes_a_private_file_and_audits_it(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    accounts_scripts(scripts)
    backups = tmp_path / "backups"
    assert cli("run", database=target, scripts=scripts).returncode == 0
    result = cli(
        "backup",
        "--json",
        database=target,
        scripts=scripts,
        env={"TBMIGRATE_BACKUP_DIR": str(backups)},
    )
    assert result.returncode == 0, result.stderr
    taken = document(result, "backup")
    assert taken["vendor"] == target.vendor and taken["summary"].startswith("Backed up to ")
    path = Path(taken["path"])
    assert path.parent == backups and path.exists()
    assert path.stat().st_size == taken["size_bytes"] > 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    expected = "sqlite backup API" if target.vendor == "sqlite" else "pg_dump --format=custom"
    assert taken["method"] == expected
    (event,) = backup_events(target)
    assert event["outcome"] == "success" and event["details"]["path"] == str(path)
    # A second backup in the same second never overwrites the first.
    again = cli(
        "backup", database=target, scripts=scripts, env={"TBMIGRATE_BACKUP_DIR": str(backups)}
    )
    assert again.returncode == 0 and "Backed up to " in again.stdout
    assert len(list(backups.iterdir())) == 2


def test_backup_then_restore_gives_back_every_row(target, tmp_path, make_database):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    accounts_scripts(scripts)
    backups = tmp_path / "backups"
    env = {"TBMIGRATE_BACKUP_DIR": str(backups)}
    assert cli("run", database=target, scripts=scripts).returncode == 0
    before = snapshot(target)
    result = cli("backup", "--json", database=target, scripts=scripts, env=env)
    assert result.returncode == 0, result.stderr
    backup = Path(json.loads(result.stdout)["path"])
    # Lose data after the backup.
    destructive_script(scripts)
    assert cli("run", database=target, scripts=scripts).returncode == 0
    assert "accounts" not in tables_of(target)
    restored = restore(target, backup, make_database)
    assert snapshot(restored) == before
    assert rows(restored, "SELECT owner FROM accounts ORDER BY id") == [("ann",), ("bob",)]


def test_run_backup_backs_up_before_the_first_step(target, tmp_path, make_database):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    accounts_scripts(scripts)
    backups = tmp_path / "backups"
    env = {"TBMIGRATE_BACKUP_DIR": str(backups)}
    assert cli("run", database=target, scripts=scripts).returncode == 0
    before = snapshot(target)
    destructive_script(scripts)
    result = cli("run", "--backup", database=target, scripts=scripts, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.index("Backed up ") < result.stdout.index("Applying 1.0.1")
    (backup,) = backups.iterdir()
    as_json = cli("run", "--backup", "--json", database=target, scripts=scripts, env=env)
    assert document(as_json, "run")["backup"] is None  # nothing to apply, no backup
    assert "accounts" not in tables_of(target)
    restored = restore(target, backup, make_database)
    assert snapshot(restored) == before


def test_backup_databases_setting_always_backs_up_that_alias(make_database, tmp_path):
    prod = make_database("sqlite")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    accounts_scripts(scripts)
    backups = tmp_path / "backups"
    env = {
        "PROD_DATABASE_URL": prod.url,
        "TBMIGRATE_BACKUP_DIR": str(backups),
        "TBMIGRATE_BACKUP_DATABASES": "prod",
    }
    result = cli("run", "--database", "prod", "--no-input", scripts=scripts, env=env)
    assert result.returncode == 0, result.stderr
    assert len(list(backups.iterdir())) == 1
    # Nothing to apply: no backup is needed, none is taken.
    result = cli("run", "--database", "prod", "--no-input", scripts=scripts, env=env)
    assert result.returncode == 0 and len(list(backups.iterdir())) == 1


def test_without_pg_dump_run_backup_stops_before_anything_runs(make_database, tmp_path):
    """PostgreSQL only: SQLite backups need no outside tool."""
    target = make_database("postgresql")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    accounts_scripts(scripts)
    no_tools = tmp_path / "bin"  # a PATH with no pg_dump on it
    no_tools.mkdir()
    before = snapshot(target)
    for args, extra in (
        (["run", "--backup"], {}),
        (["run"], {"TBMIGRATE_BACKUP_DATABASES": "default"}),
        (["backup"], {}),
    ):
        result = cli(*args, database=target, scripts=scripts, env={"PATH": str(no_tools), **extra})
        assert result.returncode == 1, args
        if args == ["backup"]:
            as_json = cli(
                "backup", "--json", database=target, scripts=scripts, env={"PATH": str(no_tools)}
            )
            assert "pg_dump is not installed" in document(as_json, "backup")["error"]
        message = result.stderr.strip()
        assert message.count("\n") == 0 and "Traceback" not in message
        assert "pg_dump is not installed (not found on PATH), so nothing was run" in message
        assert snapshot(target) == before == {}


def test_a_backup_that_cannot_be_written_stops_the_run(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    accounts_scripts(scripts)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the backups folder should be")
    result = cli(
        "run",
        "--backup",
        database=target,
        scripts=scripts,
        env={"TBMIGRATE_BACKUP_DIR": str(blocker / "backups")},
    )
    assert result.returncode == 1
    assert f"cannot back up {target.vendor}" in result.stderr
    assert "NotADirectoryError" in result.stderr and "nothing was run" in result.stderr
    assert "accounts" not in tables_of(target)
    assert history.load(target.alias) == []
    (event,) = backup_events(target)
    assert event["outcome"] == "failure"


def test_pg_dump_gets_the_password_from_its_environment_not_its_command_line(
    make_database, tmp_path
):
    """The real pg_dump runs behind a wrapper that writes down what it was given."""
    target = make_database("postgresql")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "a1")
    seen = tmp_path / "seen.json"
    wrapper = tmp_path / "pg_dump_wrapper"
    wrapper.write_text(
        "#!/usr/bin/env python3\n"
        "import json, os, sys\n"
        f"json.dump({{'argv': sys.argv, 'password': os.environ.get('PGPASSWORD')}}, "
        f"open({str(seen)!r}, 'w'))\n"
        f"os.execv({shutil.which('pg_dump')!r}, [{shutil.which('pg_dump')!r}] + sys.argv[1:])\n"
    )
    wrapper.chmod(0o755)
    url = target.url.replace("postgres@", "postgres:Visible-Only-In-Env-42@")
    result = cli(
        "backup",
        scripts=scripts,
        env={
            "DATABASE_URL": url,
            "TBMIGRATE_PG_DUMP": str(wrapper),
            "TBMIGRATE_BACKUP_DIR": str(tmp_path / "backups"),
        },
    )
    assert result.returncode == 0, result.stderr
    given = json.loads(seen.read_text())
    assert given["password"] == "Visible-Only-In-Env-42"
    assert not any("Visible-Only-In-Env-42" in arg for arg in given["argv"])
    assert "--format=custom" in given["argv"]
    assert os.path.getsize(next((tmp_path / "backups").iterdir())) > 0


def test_rollback_backup_keeps_what_the_rollback_drops(target, tmp_path, make_database):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    accounts_scripts(scripts)
    backups = tmp_path / "backups"
    assert cli("run", database=target, scripts=scripts).returncode == 0
    before = snapshot(target)
    # The rollback validation refuses to drop rows without --force: the case for a backup.
    result = cli(
        "rollback",
        "--no-input",
        "--force",
        "--backup",
        database=target,
        scripts=scripts,
        env={"TBMIGRATE_BACKUP_DIR": str(backups)},
    )
    assert result.returncode == 0, result.stderr
    assert "accounts" not in tables_of(target)
    (backup,) = backups.iterdir()
    restored = restore(target, backup, make_database)
    assert snapshot(restored) == before
