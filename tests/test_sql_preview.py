"""`tbmigrate sql VERSION [--backwards]` and `run --dry-run --sql FILE`: the statements
captured on a scratch replay, parameters shown, the database itself untouched."""

from __future__ import annotations

from tests.conftest import snapshot, table_script, tbmigrate, write_script


def scripts(folder):
    table_script(folder, "1.0.0", "users")
    write_script(
        folder,
        "1.0.1",
        "seed",
        up='db.execute("INSERT INTO users (id, label) VALUES (%s, %s)", [7, "seven"])\n'
        'if db.table_exists("users"):\n    db.execute("UPDATE users SET label = %s", ["x"])',
        down='db.execute("DELETE FROM users WHERE id = %s", [7])',
    )
    (folder / "2026-01-02T00-00-00-1.0.2-notes.up.sql").write_text(
        "-- Notes\nCREATE TABLE notes (id INTEGER); -- ; here\n"
        "CREATE INDEX notes_id ON notes (id);\n"
    )
    (folder / "2026-01-02T00-00-00-1.0.2-notes.down.sql").write_text("DROP TABLE notes;\n")


def test_sql_shows_the_statements_of_one_step_with_their_parameters(target, scripts_dir):
    scripts(scripts_dir)
    before = snapshot(target)
    result = tbmigrate("sql", "1.0.1", database=target)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "-- tbmigrate sql 1.0.1: 1.0.1 seed, up"
    assert "after replaying 1 earlier migration(s)" in lines[1]
    start = lines.index(next(line for line in lines if line.startswith("-- ==== 1.0.1 seed")))
    body = lines[start:]
    insert = body.index("INSERT INTO users (id, label) VALUES (%s, %s);")
    assert body[insert + 1] == "-- parameters: [7, 'seven']"
    assert "UPDATE users SET label = %s;" in body  # what the script decided, as it ran
    assert not any("tbmigrate_" in line for line in body)  # not our history writes
    assert snapshot(target) == before  # the database itself was not touched


def test_backwards_shows_the_down(target, scripts_dir):
    scripts(scripts_dir)
    result = tbmigrate("sql", "1.0.2", "--backwards", database=target)
    assert result.code == 0, result.err
    assert "-- ==== 1.0.2 notes (revert)" in result.out and "DROP TABLE notes;" in result.out
    assert "after replaying 3 earlier migration(s)" in result.out


def test_run_dry_run_sql_writes_one_commented_block_per_pending_step(target, scripts_dir, tmp_path):
    scripts(scripts_dir)
    assert tbmigrate("run", "--to", "1.0.0", database=target).code == 0
    before = snapshot(target)
    plan = tmp_path / "plan.sql"
    result = tbmigrate("run", "--dry-run", "--sql", str(plan), database=target)
    assert result.code == 0, result.err
    text = plan.read_text()
    assert text.count("-- ==== ") == 2
    assert "-- ==== 1.0.1 seed (apply)" in text and "-- ==== 1.0.2 notes (apply)" in text
    assert "CREATE INDEX notes_id ON notes (id);" in text
    assert "CREATE TABLE users" not in text  # applied already: replayed, not shown
    assert "after replaying 1 earlier migration(s)" in text
    assert snapshot(target) == before


def test_sql_needs_dry_run_and_a_known_version(target, scripts_dir):
    scripts(scripts_dir)
    assert tbmigrate("run", "--sql", "x.sql", database=target).code == 2
    unknown = tbmigrate("sql", "9.9.9", database=target)
    assert unknown.code == 2 and "there is no migration 9.9.9" in unknown.err
    write_script(scripts_dir, "1.0.3", "one-way", down=None)
    assert tbmigrate("sql", "1.0.3", "--backwards", database=target).code == 2


def test_a_step_that_fails_on_the_scratch_database_shows_its_error(target, scripts_dir):
    scripts(scripts_dir)
    (scripts_dir / "2026-01-03T00-00-00-1.0.3-bad.up.sql").write_text(
        "CREATE TABLE ok (id INTEGER);\nINSERT INTO nosuch VALUES (1);\n"
    )
    result = tbmigrate("sql", "1.0.3", database=target)
    assert result.code == 1
    assert "CREATE TABLE ok" in result.out and "-- FAILED on the scratch database" in result.out
    assert "statement 2, line 2" in result.err


def test_a_backfills_own_progress_writes_are_not_its_statements(target, scripts_dir):
    """A non-atomic batched_update records its progress in its journal row, in each
    batch's transaction: tbmigrate's write, not the script's, so not in its SQL."""
    write_script(
        scripts_dir,
        "1.0.0",
        "fills",
        up='db.execute("CREATE TABLE fills (id INTEGER PRIMARY KEY, cents INTEGER)")\n'
        'db.execute("INSERT INTO fills (id) VALUES (1), (2), (3)")',
    )
    write_script(
        scripts_dir,
        "1.0.1",
        "backfill",
        atomic=False,
        up='db.batched_update("fills", "cents = 100", "cents IS NULL", batch_size=1, '
        "progress=False)",
    )
    result = tbmigrate("sql", "1.0.1", database=target)
    assert result.code == 0, result.err
    assert result.out.count("UPDATE ") == 3  # three batches of one row
    assert "tbmigrate_" not in result.out


def test_tbmigrates_own_session_settings_are_not_a_steps_statements(target, scripts_dir):
    """A patient CREATE INDEX CONCURRENTLY raises the session's lock wait and puts it back:
    tbmigrate's doing, not the script's, so neither its SQL nor its audit event shows it."""
    write_script(
        scripts_dir,
        "1.0.0",
        "fills",
        up='db.execute("CREATE TABLE fills (id INTEGER PRIMARY KEY, cents INTEGER)")',
    )
    write_script(
        scripts_dir,
        "1.0.1",
        "index",
        atomic=False,
        up='db.create_index("fills", ["cents"], concurrently=True)',
    )
    preview = tbmigrate("sql", "1.0.1", database=target)
    assert preview.code == 0, preview.err
    assert "CREATE INDEX" in preview.out and "SET " not in preview.out
    assert tbmigrate("run", database=target).code == 0
    from migrator import history

    (event,) = [
        e
        for e in history.events(target.alias)
        if e["action"] == "apply" and e["version"] == "1.0.1" and e["outcome"] == "success"
    ]
    assert [s["sql"].split()[0] for s in event["statements"]] == ["CREATE"]
