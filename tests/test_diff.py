"""`tbmigrate diff VERSION`: the script as it ran against the file now, on SQLite and PostgreSQL.

Exit codes as `git diff --exit-code`: 0 the same, 1 different (or gone), 2 bad usage.
"""

from __future__ import annotations

from tests.conftest import cli, rows, table_script, tbmigrate


def test_an_unchanged_script_has_no_diff_and_exits_0(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "orders")
    assert tbmigrate("run", database=target).code == 0
    result = tbmigrate("diff", "1.0.0", database=target)
    assert result.code == 0, result.err
    assert result.out.strip().startswith("1.0.0 create-orders: the file is the script that ran")
    assert "---" not in result.out


def test_an_edited_script_prints_a_unified_diff_and_exits_1(target, scripts_dir):
    path = table_script(scripts_dir, "1.0.0", "orders")
    assert tbmigrate("run", database=target).code == 0
    path.write_text(
        path.read_text().replace("label VARCHAR(50)", "label VARCHAR(80)") + "# tuned later\n"
    )
    result = tbmigrate("diff", "1.0.0", "--no-color", database=target)
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[0] == "--- 1.0.0 as applied"
    assert lines[1].startswith("+++ ") and lines[1].endswith(f"{path.name} now")
    removed = [line for line in lines if line.startswith("-") and not line.startswith("---")]
    added = [line for line in lines if line.startswith("+") and not line.startswith("+++")]
    assert removed == [
        '-    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, label VARCHAR(50))")'
    ]
    assert added == [
        '+    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, label VARCHAR(80))")',
        "+# tuned later",
    ]
    assert "1.0.0 create-orders: the file was edited after it ran" in result.err


def test_a_deleted_script_shows_everything_that_ran_as_removed(target, scripts_dir):
    path = table_script(scripts_dir, "1.0.0", "orders")
    assert tbmigrate("run", database=target).code == 0
    ran = path.read_text().splitlines()
    path.unlink()
    result = tbmigrate("diff", "1.0.0", database=target)
    assert result.code == 1 and "its file is gone" in result.err
    removed = [line[1:] for line in result.out.splitlines() if line.startswith("-")][1:]
    assert removed == ran


def forget_texts(database) -> None:  # type: ignore[no-untyped-def]
    """The history as rows applied before tbmigrate kept scripts' text look: migration 0002
    added ``script_text`` as NULL to every row that existed then."""
    rows(database, "UPDATE tbmigrate_applied_migration SET script_text = NULL RETURNING id")


def test_a_row_from_before_the_text_was_kept_says_so(target, scripts_dir):
    path = table_script(scripts_dir, "1.0.0", "orders")
    assert tbmigrate("run", database=target).code == 0
    forget_texts(target)
    assert tbmigrate("diff", "1.0.0", database=target).code == 0  # the checksum still matches
    path.write_text(path.read_text() + "# edited\n")
    result = tbmigrate("diff", "1.0.0", database=target)
    assert result.code == 1 and result.out == ""
    assert "the text that ran was not kept" in result.err


def test_bad_usage_is_one_line_and_exit_2_and_changes_nothing(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "orders")
    table_script(scripts_dir, "1.0.1", "fills")
    assert tbmigrate("run", "--to", "1.0.0", database=target).code == 0
    before = rows(target, "SELECT COUNT(*) FROM tbmigrate_audit_event")
    pending = tbmigrate("diff", "1.0.1", database=target)
    assert pending.code == 2
    assert "1.0.1 has no history row on this database" in pending.err
    junk = cli("diff", "one.two", database=target, scripts=scripts_dir)
    assert junk.returncode == 2 and "Traceback" not in junk.stderr
    assert "'one.two' is not a semantic version" in junk.stderr
    assert len(junk.stderr.strip().splitlines()) == 1
    assert rows(target, "SELECT COUNT(*) FROM tbmigrate_audit_event") == before


def test_diff_from_the_command_line_as_a_user_runs_it(target, scripts_dir):
    path = table_script(scripts_dir, "1.0.0", "orders")
    assert cli("run", database=target, scripts=scripts_dir).returncode == 0
    path.write_text(path.read_text() + "# edited\n")
    result = cli("diff", "1.0.0", database=target, scripts=scripts_dir)
    assert result.returncode == 1, result.stderr
    assert "+# edited" in result.stdout.splitlines()
    assert "\x1b[" not in result.stdout  # no colour codes when stdout is not a terminal
