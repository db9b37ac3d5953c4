"""A real PostgreSQL role's password never appears in output, logs, or any row tbmigrate writes.

A role with a distinctive password is created for the test and owns a fresh database;
every command is run as a user would, with that password in DATABASE_URL (and in
PROD_DATABASE_URL), with debug logging on, including failing steps whose own error
messages and SQL carry the URL.  Then every byte of output, every row of every table
(and a plain-SQL dump of the database and of each backup) is searched for it.

This server trusts 127.0.0.1 (pg_hba.conf: `host all all 127.0.0.1/32 trust`), so a
*wrong* password is accepted: the test shows that, and uses the error paths that are
real here instead (a port nothing listens on, a database that does not exist).
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import (
    POSTGRES_URL,
    cli,
    drop_database,
    pg_admin,
    snapshot,
    table_script,
    with_dbname,
    write_script,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def secret_role(make_database):
    """(database, url, password): a fresh database owned by a new role with a password."""
    token = secrets.token_hex(4)
    role = f"tbm_secret_{token}"
    password = f"Qx7-{token}-NeverPrintMe"
    database = make_database("postgresql")
    with pg_admin() as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        admin.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(database.name), sql.Identifier(role)
            )
        )
    with psycopg.connect(with_dbname(POSTGRES_URL, database.name), autocommit=True) as owner:
        owner.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(role)))
    host = POSTGRES_URL.split("@", 1)[1].rsplit("/", 1)[0]
    url = f"postgresql://{role}:{password}@{host}/{database.name}"
    try:
        yield database, url, password
    finally:
        drop_database(database)
        with pg_admin() as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def leaky_scripts(folder: Path) -> None:
    """Scripts that try hard to leak the URL: in SQL parameters, errors and tracebacks."""
    table_script(folder, "1.0.0", "accounts")
    write_script(
        folder,
        "1.0.1",
        "token-check",
        header="import os",
        up="""
        db.execute("SELECT %s AS api_token", [os.environ["DATABASE_URL"]])
        db.execute("SELECT %s AS note", [os.environ["DATABASE_URL"]])
        """,
    )
    write_script(
        folder,
        "1.0.2",
        "fails-loudly",
        header="import os",
        up='raise RuntimeError("cannot reach " + os.environ["DATABASE_URL"])',
    )


def non_atomic_leaky(folder: Path) -> None:
    (next(folder.glob("*-1.0.2-fails-loudly.py"))).unlink()
    write_script(
        folder,
        "1.0.2",
        "half-way",
        header="import os",
        atomic=False,
        up="""
        db.execute("CREATE TABLE half (id INTEGER)")
        raise RuntimeError("stopped; url was " + os.environ["DATABASE_URL"])
        """,
    )


def test_the_password_of_a_real_role_appears_nowhere(secret_role, tmp_path):
    database, url, password = secret_role
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    leaky_scripts(scripts)
    backups = tmp_path / "backups"
    env = {
        "DATABASE_URL": url,
        "PROD_DATABASE_URL": url,
        "TBMIGRATE_LOG_LEVEL": "DEBUG",
        "TBMIGRATE_BACKUP_DIR": str(backups),
    }
    outputs: list[str] = []

    def run(*args: str, code: int | None = None, **extra: str) -> subprocess.CompletedProcess:
        result = cli(*args, scripts=scripts, env={**env, **extra})
        outputs.append(f"$ {' '.join(args)}\n{result.stdout}\n{result.stderr}")
        if code is not None:
            assert result.returncode == code, outputs[-1]
        return result

    run("status", code=0)
    run("status", "--json", code=0)
    run("status", "--check", code=1)
    failing = run("run", code=1)
    assert "1.0.2 fails-loudly failed to apply: RuntimeError: cannot reach" in failing.stderr
    assert "postgresql://tbm_secret_" in failing.stderr and ":***@" in failing.stderr
    run("run", "--json", code=1)
    traced = run("run", "--traceback", code=1)
    assert "Traceback (most recent call last)" in traced.stderr
    assert 'raise RuntimeError("cannot reach " + os.environ["DATABASE_URL"])' in traced.stderr
    run("rollback", "--no-input", "--json", code=0)
    run("run", "--to", "1.0.1", "--backup", code=0)
    run("rollback", "--no-input", "--traceback", code=0)
    run("run", "--to", "1.0.1", "--database", "prod", "--no-input", code=0)
    run("backup", code=0)
    run("backup", "--json", code=0)
    non_atomic_leaky(scripts)
    run("run", code=1)
    run("status", "--json", code=0)
    run("repair", "1.0.2", "--json", code=0)
    run("rollback", "--to", "0", "--no-input", "--dry-run", code=0)
    for validation in (
        ["validate", "schema"],
        ["validate", "schema", "--json"],
        ["validate", "migration", "1.0.2"],
        ["validate", "rollback", "1.0.0", "--json"],
        ["validate", "scripts", "--traceback"],
    ):
        checked = run(*validation)
        assert checked.returncode in (0, 1), outputs[-1]
        assert ("Traceback" in checked.stderr) is ("--traceback" in validation), outputs[-1]
    run("rollback", "9.9.9", "--no-input", "--traceback", code=2)
    # A wrong password is *accepted* here (trust auth on 127.0.0.1): say so, don't pretend.
    wrong = url.replace(password, f"Wrong-{password}")
    assert run("status", DATABASE_URL=wrong).returncode == 0
    # The error paths that are real on this server, with the real password in the URL.
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    closed_port = url.replace(host_port, "127.0.0.1:1")
    for args in (("status",), ("run", "--traceback"), ("status", "--json")):
        refused = run(*args, DATABASE_URL=closed_port)
        assert refused.returncode == 1 and "cannot use database" in refused.stderr
    missing_db = url.rsplit("/", 1)[0] + "/tbm_no_such_database"
    for args in (("status",), ("backup", "--traceback")):
        missing = run(*args, DATABASE_URL=missing_db)
        assert missing.returncode == 1 and "does not exist" in missing.stderr

    everything = "\n".join(outputs)
    assert password not in everything
    assert "***" in everything  # the URL was shown, masked

    stored = repr(snapshot(database))
    assert "tbmigrate_audit_event" in stored and "tbm_secret_" in stored
    assert password not in stored
    dumped = subprocess.run(
        ["pg_dump", "--format=plain", f"--dbname={with_dbname(POSTGRES_URL, database.name)}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "tbmigrate_audit_event" in dumped and password not in dumped
    taken = sorted(backups.iterdir())
    assert len(taken) == 3
    for backup in taken:
        restored_sql = subprocess.run(
            ["pg_restore", "--file=-", str(backup)], capture_output=True, text=True, check=True
        ).stdout
        assert "CREATE TABLE" in restored_sql and password not in restored_sql


@pytest.fixture
def reviewed_with_password(secret_role, tmp_path, settings, request):
    """The role's database after failing, repaired and backed-up runs, as the admin's alias."""
    from migrator import targets
    from tests.test_admin import allow, every_page

    database, url, password = secret_role
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    leaky_scripts(scripts)
    env = {"DATABASE_URL": url, "TBMIGRATE_BACKUP_DIR": str(tmp_path / "backups")}
    assert cli("run", scripts=scripts, env=env).returncode == 1
    assert cli("backup", scripts=scripts, env=env).returncode == 0
    non_atomic_leaky(scripts)
    assert cli("run", scripts=scripts, env=env).returncode == 1
    assert cli("repair", "1.0.2", scripts=scripts, env=env).returncode == 0
    alias = targets.add("role_with_password", url)
    request.addfinalizer(lambda: targets.remove(alias))
    settings.TBMIGRATE_SCRIPTS_DIR = str(scripts)
    settings.TBMIGRATE_ADMIN_DATABASE = alias
    pages = every_page(database)
    allow(request, alias)
    return pages, password


def test_the_admin_pages_never_show_the_password(reviewed_with_password, admin_client):
    pages, password = reviewed_with_password
    assert len(pages) > 10  # every history row and every audit event has its own page
    masked = 0
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert password not in body, url
        masked += ":***@" in body
    assert masked
