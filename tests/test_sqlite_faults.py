"""SQLite's own faults: another writer holding the file, the file deleted under a run, a
file that does not exist yet; and what `status` and `--json` say after a failure.

Real processes hold real locks; the file is really deleted by the step itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from migrator import history
from tests.conftest import cli, rows, table_script, tbmigrate, write_script
from tests.schemas import document


def hold_write_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process takes SQLite's write lock, keeps it ``seconds``, then commits."""
    code = textwrap.dedent(f"""
        import sqlite3, time
        conn = sqlite3.connect({str(path)!r}, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        time.sleep({seconds})
        conn.execute("COMMIT")
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.slow
def test_a_run_waits_for_another_writer_up_to_the_lock_timeout(make_database, tmp_path):
    database = make_database("sqlite")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "first")
    assert cli("run", database=database, scripts=scripts).returncode == 0
    table_script(scripts, "1.0.1", "second")
    # sqlite3 alone gives up after 5 s; held for 7 s, the run must still succeed.
    holder = hold_write_lock(Path(database.name), 7)
    started = time.monotonic()
    waited = cli("run", database=database, scripts=scripts)
    holder.wait()
    assert waited.returncode == 0, waited.stderr
    assert time.monotonic() - started > 6
    # With a short lock timeout it gives up, saying who is in the way.
    table_script(scripts, "1.0.2", "third")
    holder = hold_write_lock(Path(database.name), 8)
    try:
        refused = cli("run", "--lock-timeout", "1", database=database, scripts=scripts)
    finally:
        holder.kill()
        holder.wait()
    assert refused.returncode == 1
    assert "locked by another writer and stayed locked for 1 s" in refused.stderr
    assert "check that the server accepts connections" not in refused.stderr
    assert [str(r.version) for r in history.load(database.alias)] == ["1.0.0", "1.0.1"]


def test_a_database_file_deleted_during_a_run_is_named_as_such(make_database, tmp_path):
    database = make_database("sqlite")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "first")
    write_script(
        scripts,
        "1.0.1",
        "lose-the-file",
        up=f"import os\nos.unlink({database.name!r})\ndb.execute('CREATE TABLE t (id INTEGER)')",
    )
    table_script(scripts, "1.0.2", "third")
    result = cli("run", database=database, scripts=scripts)
    assert result.returncode == 1
    assert f"the SQLite file {database.name} was deleted while tbmigrate was using it" in (
        result.stderr
    )
    assert "unreachable" not in result.stderr.split("was deleted")[0]
    assert not os.path.exists(database.name)
    # The failure could not go into the lost file: it waits in the spool beside it.
    assert Path(database.name + ".tbmigrate-spool.jsonl").exists()


def test_read_only_commands_never_create_a_missing_database_file(make_database, tmp_path):
    database = make_database("sqlite")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "first")
    assert not os.path.exists(database.name)
    status = cli("status", database=database, scripts=scripts)
    assert status.returncode == 0 and "1.0.0    create-first  pending" in status.stdout
    for command in (
        ["status", "--json"],
        ["validate", "schema"],
        ["validate", "migration", "1.0.0"],
    ):
        result = cli(*command, database=database, scripts=scripts)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert not os.path.exists(database.name), command
    assert not list(Path(database.name).parent.glob("*.sqlite3*"))
    assert cli("run", database=database, scripts=scripts).returncode == 0
    assert os.path.exists(database.name)


def test_status_notes_when_a_pending_step_last_failed(target, scripts_dir):
    write_script(
        scripts_dir,
        "1.0.0",
        "breaks",
        up='db.execute("CREATE TABLE half (id INTEGER)")\ndb.execute("SELECT * FROM nowhere")',
    )
    assert tbmigrate("run", database=target).code == 1
    status = tbmigrate("status", database=target)
    assert "pending" in status.out
    line = next(line for line in status.out.splitlines() if line.startswith("1.0.0"))
    assert "last attempt failed at " in line and " UTC: " in line and "nowhere" in line
    data = document(tbmigrate("status", "--json", database=target), "status")
    (entry,) = data["migrations"]
    assert entry["state"] == "pending" and "nowhere" in entry["last_failure"]["error"]
    # Once it succeeds the note goes.
    (next(scripts_dir.glob("*-1.0.0-*"))).write_text(
        '"""Fixed."""\nversion = "1.0.0"\nname = "breaks"\n\n\ndef up(db):\n'
        '    db.execute("CREATE TABLE half (id INTEGER)")\n\n\ndef down(db):\n'
        '    db.execute("DROP TABLE half")\n'
    )
    assert tbmigrate("run", database=target).code == 0
    data = document(tbmigrate("status", "--json", database=target), "status")
    assert data["migrations"][0]["last_failure"] is None


def test_run_json_is_one_document_when_scripts_print(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    write_script(
        scripts,
        "1.0.0",
        "chatty",
        up='print("hello from the script")\ndb.execute("CREATE TABLE chatty (id INTEGER)")',
        down='db.execute("DROP TABLE chatty")',
    )
    result = cli("run", "--json", database=target, scripts=scripts)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # the whole of stdout is one document
    assert data["ok"] is True and "hello from the script" in result.stderr
    (event,) = [e for e in history.events(target.alias) if e["action"] == "apply"]
    assert event["details"]["output"] == "hello from the script\n"
    plain = cli("rollback", "--no-input", database=target, scripts=scripts)
    assert plain.returncode == 0
    again = cli("run", database=target, scripts=scripts)
    assert "hello from the script" in again.stdout  # without --json it stays on stdout
    assert rows(target, "SELECT COUNT(*) FROM tbmigrate_applied_migration") == [(1,)]
