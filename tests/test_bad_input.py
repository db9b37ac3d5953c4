"""Bad input, one test each: one line saying what is wrong and what to do, a non-zero exit,
no traceback, and the database exactly as it was (every table, every row, compared).

Each test first brings the database to a known state (1.0.0 applied), then runs the
bad command as a user would (a real process) and compares `snapshot()` before/after.
Loader errors and usage errors also run in-process over every kind of script problem.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from migrator import history
from tests.conftest import (
    PROJECT,
    cli,
    cli_env,
    snapshot,
    table_script,
    tables_of,
    tbmigrate,
)


@pytest.fixture
def applied(target, tmp_path):
    """``target`` with 1.0.0 applied and 1.0.1 pending; returns (target, scripts folder)."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "accounts")
    table_script(scripts, "1.0.1", "orders")
    assert cli("run", "--to", "1.0.0", database=target, scripts=scripts).returncode == 0
    return target, scripts


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    message = result.stderr.strip()
    assert message.count("\n") == 0, message
    assert "Traceback" not in message and message.startswith("CommandError: ")
    return message


def test_a_malformed_url(applied):
    target, scripts = applied
    before = snapshot(target)
    for url, expected in (
        ("postgres://postgres:Pw-1x@127.0.0.1:notaport/db", "cannot be parsed"),
        ("just words Pw-1x", "DATABASE_URL is not a database URL (it has no scheme://)"),
        ("postgres://postgres:Pw-1x@127.0.0.1:5432", "names no database"),
        ("sqlite://tradingbot.sqlite3", "names no SQLite file, only a database in memory"),
    ):
        message = one_line_error(cli("run", scripts=scripts, env={"DATABASE_URL": url}))
        assert expected in message and "Pw-1x" not in message
    assert snapshot(target) == before


def test_an_unsupported_url(applied):
    target, scripts = applied
    before = snapshot(target)
    message = one_line_error(
        cli("run", scripts=scripts, env={"DATABASE_URL": "mysql://u:Pw-2x@127.0.0.1/db"})
    )
    assert "uses 'mysql', which tbmigrate does not support" in message
    assert "use a postgres:// (or postgresql://) or sqlite:/// URL" in message
    assert "Pw-2x" not in message
    assert snapshot(target) == before


def test_an_unreachable_server(applied):
    target, scripts = applied
    before = snapshot(target)
    url = "postgresql://postgres:Pw-3x@127.0.0.1:1/trading"
    message = one_line_error(cli("run", scripts=scripts, env={"DATABASE_URL": url}))
    assert "cannot use database postgresql://postgres:***@127.0.0.1:1/trading" in message
    assert "is the server running and the host and port right?" in message
    assert snapshot(target) == before


def test_wrong_credentials(make_database, tmp_path):
    """This server trusts 127.0.0.1, so a wrong *password* is accepted (shown below);
    the credential error it really produces is an unknown user."""
    target = make_database("postgresql")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "accounts")
    table_script(scripts, "1.0.1", "orders")
    assert cli("run", "--to", "1.0.0", database=target, scripts=scripts).returncode == 0
    before = snapshot(target)
    wrong_password = target.url.replace("postgres@", "postgres:Not-The-Password@")
    status = cli("status", scripts=scripts, env={"DATABASE_URL": wrong_password})
    assert status.returncode == 0  # trust auth: the password is never checked here
    unknown_user = target.url.replace("postgres@", "tbm_no_such_user:Pw-4x@")
    message = one_line_error(cli("run", scripts=scripts, env={"DATABASE_URL": unknown_user}))
    assert 'role "tbm_no_such_user" does not exist' in message
    assert "(check the user name in the URL)" in message and "Pw-4x" not in message
    assert snapshot(target) == before


def test_a_missing_database(applied):
    target, scripts = applied
    before = snapshot(target)
    if target.vendor == "postgresql":
        url = target.url.rsplit("/", 1)[0] + f"/{target.name}_missing"
        expected = f'database "{target.name}_missing" does not exist'
        hint = "create the database (createdb NAME) or fix the name in the URL"
    else:
        url = f"sqlite:///{Path(target.name).parent / 'no-such-folder' / 'db.sqlite3'}"
        expected = "no-such-folder does not exist"
        hint = "(create it or point DATABASE_URL elsewhere)"
    message = one_line_error(cli("run", scripts=scripts, env={"DATABASE_URL": url}))
    assert expected in message and hint in message
    assert snapshot(target) == before
    if target.vendor == "postgresql":
        from tests.conftest import pg_admin

        with pg_admin() as admin:
            found = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [f"{target.name}_missing"]
            ).fetchall()
        assert found == []  # nothing was created on the way


def as_nobody(*args: str, database_url: str, scripts: Path) -> subprocess.CompletedProcess[str]:
    """Run tbmigrate as the unprivileged user `nobody` (the tests run as root, for whom
    file permissions do not stop writes)."""
    env = cli_env(None, scripts, DATABASE_URL=database_url, HOME="/nonexistent")
    return subprocess.run(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            sys.executable,
            str(PROJECT / "manage.py"),
            "tbmigrate",
            *args,
        ],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def shared_folder():
    """A folder `nobody` can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="tbm-ro-", dir="/tmp"))
    folder.chmod(0o777)
    yield folder
    folder.chmod(0o777)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_a_read_only_sqlite_file(make_database, shared_folder):
    """The file belongs to root and is mode 444; `nobody` runs tbmigrate on it."""
    scripts = shared_folder / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "accounts")
    table_script(scripts, "1.0.1", "orders")
    for path in (scripts, *scripts.iterdir()):
        path.chmod(0o755)
    path = shared_folder / "trading.sqlite3"
    url = f"sqlite:///{path}"
    assert cli("run", "--to", "1.0.0", scripts=scripts, env={"DATABASE_URL": url}).returncode == 0
    Path(f"{path}.tbmigrate.lock").unlink()
    path.chmod(0o444)
    database = make_database("sqlite")
    from migrator import targets

    targets.add(database.alias, url)
    before = snapshot(database)
    status = as_nobody("status", database_url=url, scripts=scripts)
    assert status.returncode == 0, status.stderr  # reading is fine
    message = one_line_error(as_nobody("run", database_url=url, scripts=scripts))
    assert f"cannot use database sqlite:///{path} (DATABASE_URL): the file is read-only" in message
    assert "Permission denied" in message and "fix its permissions" in message
    assert snapshot(database) == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o444


@pytest.mark.slow
def test_a_read_only_folder_for_the_lock_file(make_database, shared_folder):
    """The SQLite file is writable but its folder is not (no lock file, no journal)."""
    scripts = shared_folder / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "accounts")
    table_script(scripts, "1.0.1", "orders")
    for path in (scripts, *scripts.iterdir()):
        path.chmod(0o755)
    data = shared_folder / "data"
    data.mkdir()
    path = data / "trading.sqlite3"
    url = f"sqlite:///{path}"
    assert cli("run", "--to", "1.0.0", scripts=scripts, env={"DATABASE_URL": url}).returncode == 0
    Path(f"{path}.tbmigrate.lock").unlink()
    path.chmod(0o666)
    data.chmod(0o555)
    database = make_database("sqlite")
    from migrator import targets

    targets.add(database.alias, url)
    before = snapshot(database)
    message = one_line_error(as_nobody("run", database_url=url, scripts=scripts))
    assert f"cannot create the lock file {path}.tbmigrate.lock: Permission denied" in message
    assert "(the folder of the SQLite file must be writable)" in message
    assert snapshot(database) == before


def test_a_missing_scripts_folder(applied, tmp_path):
    target, _scripts = applied
    before = snapshot(target)
    for command in (["status"], ["run"], ["rollback", "--no-input"]):
        message = one_line_error(cli(*command, database=target, scripts=tmp_path / "nowhere"))
        assert "the scripts folder" in message and "nowhere does not exist" in message
        assert "set TBMIGRATE_SCRIPTS_DIR" in message
    assert snapshot(target) == before


LOADER_ERRORS = {
    "syntax-error": (
        'version = "1.0.2"\ndef up(db)\n    pass\n',
        "1.0.2-syntax-error.py, line 2: syntax error",
    ),
    "import-error": (
        'import no_such_module_here\nversion = "1.0.2"\ndef up(db): pass\n',
        "1.0.2-import-error.py: importing it raised ModuleNotFoundError",
    ),
    "raises-on-import": (
        'version = "1.0.2"\nraise ValueError("boom at import")\ndef up(db): pass\n',
        "importing it raised ValueError: boom at import",
    ),
    "no-version": ("def up(db): pass\n", 'defines no `version` (add version = "1.0.2")'),
    "bad-version": ('version = "one"\ndef up(db): pass\n', "'one' is not a semantic version"),
    "version-mismatch": (
        'version = "1.0.3"\ndef up(db): pass\n',
        "declares version 1.0.3 but its file name says 1.0.2",
    ),
    "name-mismatch": (
        'version = "1.0.2"\nname = "other"\ndef up(db): pass\n',
        "declares name 'other' but its file name says 'name-mismatch'",
    ),
    "no-up": ('version = "1.0.2"\n', "defines no up(db) function"),
    "down-not-callable": (
        'version = "1.0.2"\ndef up(db): pass\ndown = "DROP TABLE x"\n',
        "`down` must be a function down(db)",
    ),
    "atomic-not-bool": (
        'version = "1.0.2"\natomic = "no"\ndef up(db): pass\n',
        "`atomic` must be True or False, not 'no'",
    ),
}


@pytest.mark.parametrize("problem", sorted(LOADER_ERRORS))
def test_each_loader_error_stops_run_and_rollback_and_changes_nothing(target, scripts_dir, problem):
    table_script(scripts_dir, "1.0.0", "accounts")
    table_script(scripts_dir, "1.0.1", "orders")
    assert tbmigrate("run", database=target).code == 0
    text, expected = LOADER_ERRORS[problem]
    (scripts_dir / f"2026-01-02T00-00-00-1.0.2-{problem}.py").write_text(text)
    before = snapshot(target)
    for command in (["run"], ["rollback", "--no-input"], ["status"]):
        result = tbmigrate(*command, database=target)
        assert result.code == 1, (command, result.err)
        assert expected in result.err, result.err
        assert result.err.strip().count("\n") == 0
    assert snapshot(target) == before


def test_loader_errors_in_a_real_process_are_one_line(applied):
    target, scripts = applied
    (scripts / "2026-01-02T00-00-00-1.0.2-broken.py").write_text('version = "1.0.2"\ndef up(db)\n')
    (scripts / "2026-01-02T00-00-00-1.0.3-BadName.py").write_text('version = "1.0.3"\n')
    table_script(scripts, "1.0.1", "orders-again", stamp="2026-02-02T00-00-00")
    before = snapshot(target)
    message = one_line_error(cli("run", database=target, scripts=scripts))
    assert "3 migration script problems" in message
    assert "1.0.2-broken.py, line 2: syntax error" in message
    assert "1.0.3-BadName.py: the file name must look like" in message
    assert "version 1.0.1 is used by both" in message
    assert snapshot(target) == before


def test_an_unknown_alias(applied):
    target, scripts = applied
    before = snapshot(target)
    for command in (["status"], ["run"], ["backup"], ["repair", "--checksums"]):
        message = one_line_error(
            cli(*command, "--database", "staging", database=None, scripts=scripts), code=2
        )
        assert "unknown database alias 'staging' (configured: default)" in message
    message = one_line_error(cli("run", "--database", "prod", scripts=scripts), code=2)
    assert "set PROD_DATABASE_URL to define it" in message
    assert snapshot(target) == before


def test_an_unknown_rollback_target(applied):
    target, scripts = applied
    before = snapshot(target)
    cases = [
        (["rollback", "9.9.9"], "rollback: there is no migration 9.9.9"),
        (["rollback", "1.0.1"], "rollback: 1.0.1 is not applied, so there is nothing to roll back"),
        (["rollback", "one"], "rollback: 'one' is not a semantic version"),
        (["rollback", "--to", "9.9.9"], "--to: there is no migration 9.9.9"),
        (["rollback", "1.0.0", "--to", "0"], "give either a VERSION or --to, not both"),
    ]
    for args, expected in cases:
        message = one_line_error(cli(*args, "--no-input", database=target, scripts=scripts), code=2)
        assert expected in message, message
    assert snapshot(target) == before
    assert [str(r.version) for r in history.load(target.alias)] == ["1.0.0"]


def test_a_bad_to(applied):
    target, scripts = applied
    before = snapshot(target)
    for value, expected in (
        ("7.0.0", "--to: there is no migration 7.0.0 (known: 1.0.0 to 1.0.1, 2 in all)"),
        ("seven", "--to: 'seven' is not a semantic version"),
        ("", "--to: '' is not a semantic version"),
    ):
        message = one_line_error(cli("run", "--to", value, database=target, scripts=scripts), 2)
        assert expected in message, message
    assert "orders" not in tables_of(target)
    assert snapshot(target) == before


def test_bad_option_values_are_usage_errors(applied):
    target, scripts = applied
    before = snapshot(target)
    for args in (
        ["run", "--lock-timeout", "soon"],
        ["run", "--pg-lock-retries", "1.5"],
        ["rollback", "--to"],
        ["repair", "--checksums", "--bogus"],
    ):
        result = cli(*args, database=target, scripts=scripts)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr
    assert snapshot(target) == before
