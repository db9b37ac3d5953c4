"""`python manage.py tbmigrate` as real processes: exit codes, one-line errors, --traceback."""

from migrator import history
from tests.conftest import cli, snapshot, table_script, write_script


def test_the_guides_workflow_as_a_user_runs_it(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    created = cli(
        "create",
        "1.0.3",
        "add-trading-sessions",
        "--description",
        "Add sessions",
        database=target,
        scripts=scripts,
    )
    assert created.returncode == 0, created.stderr
    assert "Created " in created.stdout and "1.0.3-add-trading-sessions.py" in created.stdout
    path = next(scripts.glob("*-1.0.3-add-trading-sessions.py"))
    # an unwritten template refuses to run rather than recording an empty migration
    unwritten = cli("run", database=target, scripts=scripts)
    assert unwritten.returncode == 1
    assert "NotImplementedError: write up() of 1.0.3 add-trading-sessions" in unwritten.stderr
    text = path.read_text()
    text = text.replace(
        'raise NotImplementedError("write up() of 1.0.3 add-trading-sessions")',
        'db.execute("CREATE TABLE trading_sessions (id INTEGER PRIMARY KEY)")',
    )
    text = text.replace(
        'raise NotImplementedError("write down() of 1.0.3 add-trading-sessions")',
        'db.execute("DROP TABLE trading_sessions")',
    )
    path.write_text(text)
    assert cli("run", database=target, scripts=scripts).returncode == 0
    status = cli("status", "--check", database=target, scripts=scripts)
    assert status.returncode == 0 and "1.0.3    add-trading-sessions  applied" in status.stdout
    assert cli("rollback", "1.0.3", "--no-input", database=target, scripts=scripts).returncode == 0
    assert cli("status", "--check", database=target, scripts=scripts).returncode == 1


def test_a_script_error_is_one_line_without_traceback_and_changes_nothing(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "fine")
    (scripts / "2026-01-01T00-00-00-1.0.1-typo.py").write_text(
        'version = "1.0.1"\ndef up(db)\n    pass\n'
    )
    before = snapshot(target)
    result = cli("run", database=target, scripts=scripts)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr
    assert "1.0.1-typo.py, line 2: syntax error" in result.stderr
    assert snapshot(target) == before


def test_traceback_shows_the_traceback(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    write_script(scripts, "1.0.0", "boom", up='raise RuntimeError("boom")')
    plain = cli("run", database=target, scripts=scripts)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    traced = cli("run", "--traceback", database=target, scripts=scripts)
    assert traced.returncode == 1 and "Traceback (most recent call last)" in traced.stderr
    assert 'raise RuntimeError("boom")' in traced.stderr


def test_argparse_errors_exit_2(tmp_path):
    result = cli("rollback", "--bogus", scripts=tmp_path)
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in result.stderr
    result = cli("create", "1.0.0", scripts=tmp_path)
    assert result.returncode == 2


def test_unreachable_server_is_one_line_with_the_password_masked(tmp_path):
    url = "postgres://trader:Pa55-unreachable@127.0.0.1:1/trading"
    result = cli("status", scripts=tmp_path, env={"DATABASE_URL": url})
    assert result.returncode == 1
    assert (
        "cannot use database postgresql://trader:***@127.0.0.1:1/trading (DATABASE_URL)"
        in result.stderr
    )
    assert "is the server running" in result.stderr
    assert "Pa55-unreachable" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_missing_sqlite_folder_is_explained(tmp_path):
    result = cli(
        "run", scripts=tmp_path, env={"SQLITE_DB_PATH": str(tmp_path / "no" / "db.sqlite3")}
    )
    assert result.returncode == 1
    assert "does not exist (create it or point SQLITE_DB_PATH elsewhere)" in result.stderr


def test_an_unsupported_url_is_explained(tmp_path):
    result = cli("run", scripts=tmp_path, env={"DATABASE_URL": "mysql://u:Hidden99@h/db"})
    assert result.returncode == 1
    assert "uses 'mysql', which tbmigrate does not support" in result.stderr
    assert "Hidden99" not in result.stderr


def test_options_go_after_the_subcommand_and_verbosity_zero_is_quiet(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "quiet")
    result = cli("run", "-v", "0", "--no-input", database=target, scripts=scripts)
    assert result.returncode == 0 and result.stdout == ""
    assert [str(r.version) for r in history.load(target.alias)] == ["1.0.0"]
