"""Exit codes and the one-line summary that ends every command, as CI sees them.

0 success; 1 a failure, a refusal or `status --check` finding work; 2 bad usage.  In
text mode the last stdout line says what happened; an error adds one stderr line.
"""

from __future__ import annotations

from tests.conftest import cli, table_script, tbmigrate, write_script


def last_line(text: str) -> str:
    return text.rstrip("\n").splitlines()[-1]


def test_a_release_cycle_exit_codes_and_last_lines(target, scripts_dir):
    created = tbmigrate("create", "1.0.0", "add-a", "--description", "Add a")
    assert created.code == 0
    assert last_line(created.out).startswith("Created ")
    assert last_line(created.out).endswith("-1.0.0-add-a.py")
    next(scripts_dir.glob("*-1.0.0-add-a.py")).unlink()  # an unwritten template would fail
    table_script(scripts_dir, "1.0.0", "a1")
    table_script(scripts_dir, "1.0.1", "a2")

    status = tbmigrate("status", database=target)
    assert (status.code, last_line(status.out)) == (0, "2 migrations: 2 pending.")
    check = tbmigrate("status", "--check", database=target)
    assert check.code == 1 and last_line(check.out) == "2 migrations: 2 pending."
    assert check.err == "status --check: not up to date (2 migrations: 2 pending)"

    dry = tbmigrate("run", "--dry-run", database=target)
    assert dry.code == 0
    assert last_line(dry.out) == "Dry run: 2 migration(s) would be applied; nothing was changed."
    run = tbmigrate("run", database=target)
    assert run.code == 0 and last_line(run.out).startswith("Applied 2 migration(s) in ")
    nothing = tbmigrate("run", database=target)
    assert last_line(nothing.out) == "No migrations to apply; the database is up to date."
    assert tbmigrate("status", "--check", database=target).code == 0

    back = tbmigrate("rollback", "--no-input", database=target)
    assert back.code == 0 and last_line(back.out).startswith("Rolled back 1 migration(s) in ")
    dry_back = tbmigrate("rollback", "--dry-run", database=target)
    assert (
        last_line(dry_back.out)
        == "Dry run: 1 migration(s) would be rolled back; nothing was changed."
    )

    write_script(scripts_dir, "1.0.2", "boom", up='raise RuntimeError("boom")')
    failed = tbmigrate("run", database=target)
    assert failed.code == 1
    assert last_line(failed.out) == "Run failed at 1.0.2 boom: 1 of 2 migration(s) applied."
    assert "1.0.2 boom failed to apply: RuntimeError: boom" in failed.err

    assert tbmigrate("run", "--to", "4.0.0", database=target).code == 2
    assert tbmigrate("rollback", "4.0.0", "--no-input", database=target).code == 2
    assert tbmigrate("create", "1.0.1", "again").code == 2  # version taken


def test_process_exit_codes_for_usage_errors_and_refusals(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    write_script(scripts, "1.0.0", "one-way", down=None)
    assert cli("run", database=target, scripts=scripts).returncode == 0
    refused = cli("rollback", "--no-input", database=target, scripts=scripts)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "CommandError: rollback refused: 1.0.0 one-way has no down() and cannot be reverted; "
        "nothing was rolled back (write a down() or roll back to a later version)"
    ]
    assert cli("status", "--nope", database=target, scripts=scripts).returncode == 2
    assert cli("run", "--to", "x.y", database=target, scripts=scripts).returncode == 2
    unknown_alias = cli("status", "--database", "qa", scripts=scripts)
    assert unknown_alias.returncode == 2
    assert "set QA_DATABASE_URL to define it" in unknown_alias.stderr
