"""`tbmigrate validate schema` on both databases: drift, integrity, history, scratch cleanup."""

import json
import os

import psycopg
import pytest
from django.db import connections

from migrator import history
from migrator.api import MigrationSystem
from migrator.database import Database
from tests.conftest import rows, table_script, tbmigrate, write_script
from tests.validation_support import checks, plain_user, scratch_databases


@pytest.fixture
def starter(target):
    """The starter scripts applied, with a little data."""
    assert tbmigrate("run", database=target).code == 0
    db = Database(connections[target.alias])
    db.execute("INSERT INTO users (username, email) VALUES (%s, %s)", ["ada", "ada@example.com"])
    user = db.scalar("SELECT id FROM users")
    db.execute(
        "INSERT INTO trades (user_id, symbol, side, quantity, price) VALUES (%s, %s, %s, %s, %s)",
        [user, "BTCUSD", "buy", "1", "2"],
    )
    return target


def test_a_clean_database_passes_and_leaves_no_scratch_database(starter, temp_dir):
    result = tbmigrate("validate", "schema", database=starter)
    assert result.code == 0, result.out + result.err
    assert checks(result)[0][:2] == ("PASS", "connectivity")
    drift = [c for c in checks(result) if c[1] == "drift"]
    assert drift[0][0] == "PASS"
    assert "matches the 5 applied script(s)" in drift[0][2]
    assert "6 tables" in drift[0][2] and "6 foreign keys" in drift[0][2]
    assert checks(result, "FAIL") == [] and checks(result, "WARN") == []
    assert "validate schema passed: 0 failed, 0 warning(s)" in result.out
    assert list(temp_dir.iterdir()) == []
    assert scratch_databases() == []


def test_a_brand_new_database_passes(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a")
    result = tbmigrate("validate", "schema", database=target)
    assert result.code == 0, result.out + result.err
    assert "the live schema matches the 0 applied script(s)" in result.out


def _nullable_title(target):
    if target.vendor == "postgresql":
        return ["ALTER TABLE notifications ALTER COLUMN title DROP NOT NULL"]
    # SQLite cannot alter a column: rebuild the table as a person would, title now nullable.
    return [
        "CREATE TABLE notifications_new (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "user_id BIGINT NOT NULL REFERENCES users (id), title TEXT, message TEXT NOT NULL, "
        "read BOOLEAN NOT NULL DEFAULT FALSE, "
        "created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        "INSERT INTO notifications_new SELECT * FROM notifications",
        "DROP TABLE notifications",
        "ALTER TABLE notifications_new RENAME TO notifications",
        'CREATE INDEX "notifications_user_id_read_idx" ON "notifications" ("user_id", "read")',
    ]


DRIFTS = {
    "dropped index": (
        lambda t: ["DROP INDEX trades_user_id_idx"],
        "index trades_user_id_idx on trades (user_id) is missing (created by 1.0.0 initial-schema)",
    ),
    "added column": (
        lambda t: ["ALTER TABLE users ADD COLUMN nickname VARCHAR(30)"],
        "column users.nickname is not created by any applied script",
    ),
    "dropped column": (
        lambda t: ["ALTER TABLE orders DROP COLUMN limit_price"],
        "column orders.limit_price is missing (created by 1.0.0 initial-schema)",
    ),
    "changed nullability": (
        _nullable_title,
        "column notifications.title: allows NULL, expected NOT NULL "
        "(as set by 1.0.3 add-notifications)",
    ),
    "extra table": (
        lambda t: ["CREATE TABLE scratchpad (id INTEGER)"],
        "table scratchpad is not created by any applied script",
    ),
}


@pytest.mark.parametrize("case", sorted(DRIFTS))
def test_drift_behind_the_tools_back_fails_naming_the_object(starter, temp_dir, case):
    make, message = DRIFTS[case]
    db = Database(connections[starter.alias])
    for sql in make(starter):
        db.execute(sql)
    result = tbmigrate("validate", "schema", database=starter)
    assert result.code == 1
    assert ("FAIL", "drift", message) in checks(result)
    assert [c for c in checks(result, "FAIL")] == [("FAIL", "drift", message)]
    assert "validate schema failed: 1 failed" in result.err
    assert list(temp_dir.iterdir()) == [] and scratch_databases() == []


def test_a_changed_column_type_is_drift(starter):
    db = Database(connections[starter.alias])
    if starter.vendor == "postgresql":
        db.execute("ALTER TABLE users ALTER COLUMN email TYPE TEXT")
        expected = "type is text, expected character varying(254)"
    else:  # SQLite cannot alter a column type: rebuild the (unreferenced) table with TEXT
        db.execute("DROP TABLE user_preferences")
        db.execute(
            "CREATE TABLE user_preferences (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "user_id TEXT NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE, "
            "theme VARCHAR(20) NOT NULL DEFAULT 'light', "
            "email_notifications BOOLEAN NOT NULL DEFAULT TRUE, "
            "default_risk_percent NUMERIC(5, 2) NOT NULL DEFAULT 1.00, "
            "updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        expected = "column user_preferences.user_id: type is TEXT, expected BIGINT"
    result = tbmigrate("validate", "schema", "--json", database=starter)
    assert result.code == 1
    report = json.loads(result.out)
    drift = [c for c in report["checks"] if c["name"] == "drift"]
    assert len(drift) == 1 and drift[0]["level"] == "FAIL"
    assert expected in drift[0]["message"]
    assert all(
        {"object", "table", "change", "expected", "actual"} <= set(c["details"]) for c in drift
    )


def test_the_scratch_database_is_removed_when_a_script_raises_during_replay(
    target, scripts_dir, temp_dir, monkeypatch, tmp_path
):
    marker = tmp_path / "scratch-name.txt"
    write_script(
        scripts_dir,
        "1.0.0",
        "breaks-on-replay",
        header="import os",
        up="""
            db.execute("CREATE TABLE t1 (id INTEGER PRIMARY KEY)")
            if os.environ.get("TBM_REPLAY_MARKER"):
                with open(os.environ["TBM_REPLAY_MARKER"], "w") as handle:
                    handle.write(str(db.connection.settings_dict["NAME"]))
                raise RuntimeError("replay broke")
        """,
    )
    assert tbmigrate("run", database=target).code == 0
    monkeypatch.setenv("TBM_REPLAY_MARKER", str(marker))
    result = tbmigrate("validate", "schema", database=target)
    assert result.code == 1
    drift = [c for c in checks(result) if c[1] == "drift"]
    assert drift[0][0] == "FAIL"
    assert "replaying the applied scripts on an empty database failed" in drift[0][2]
    assert "RuntimeError: replay broke" in drift[0][2]
    scratch = marker.read_text()
    assert "tbmigrate_scratch_" in scratch  # the replay really ran on a scratch database
    assert list(temp_dir.iterdir()) == []
    assert scratch_databases() == []
    if target.vendor == "sqlite":
        assert not os.path.exists(scratch)
    # the live database is untouched by the replay
    assert [str(r.version) for r in history.load(target.alias)] == ["1.0.0"]


def test_the_scratch_database_is_removed_on_ctrl_c(target, scripts_dir, temp_dir, monkeypatch):
    write_script(
        scripts_dir,
        "1.0.0",
        "interrupted",
        header="import os",
        up="""
            db.execute("CREATE TABLE t1 (id INTEGER PRIMARY KEY)")
            if os.environ.get("TBM_INTERRUPT"):
                raise KeyboardInterrupt
        """,
    )
    assert tbmigrate("run", database=target).code == 0
    monkeypatch.setenv("TBM_INTERRUPT", "1")
    with pytest.raises(KeyboardInterrupt):
        MigrationSystem(target.alias).validate_schema()
    assert list(temp_dir.iterdir()) == []
    assert scratch_databases() == []


def _make_orphans(target):
    """Two trades pointing at a user that does not exist, past the database's guard."""
    insert = (
        "INSERT INTO trades (user_id, symbol, side, quantity, price) "
        "VALUES (999, 'ETHUSD', 'buy', 1, 1), (998, 'ETHUSD', 'sell', 1, 1)"
    )
    if target.vendor == "sqlite":
        db = Database(connections[target.alias])
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute(insert)
        db.execute("PRAGMA foreign_keys = ON")
    else:
        with psycopg.connect(target.url, autocommit=True) as conn:
            conn.execute("ALTER TABLE trades DROP CONSTRAINT trades_user_id_fkey")
            conn.execute(insert)
            conn.execute(
                "ALTER TABLE trades ADD CONSTRAINT trades_user_id_fkey "
                "FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID"
            )


def test_orphans_the_database_does_not_prevent_are_counted(starter):
    _make_orphans(starter)
    result = tbmigrate("validate", "schema", "--json", database=starter)
    assert result.code == 1
    report = json.loads(result.out)
    by_name = {c["name"]: c for c in report["checks"]}
    orphans = by_name["integrity.orphans"]
    assert orphans["level"] == "FAIL"
    assert "2 row(s) of trades.user_id point at no users.id" in orphans["message"]
    assert "user_id 998, 999" in orphans["message"] or "user_id 999, 998" in orphans["message"]
    found = orphans["details"]["orphans"]
    assert [(o["table"], o["orphans"]) for o in found] == [("trades", 2)]
    drift = [c for c in report["checks"] if c["name"] == "drift"]
    if starter.vendor == "sqlite":
        assert [c["level"] for c in drift] == ["PASS"]  # the same key, only not enforced
        check = by_name["integrity.foreign_key_check"]
        assert check["level"] == "FAIL"
        assert "2 row(s) of trades point at missing rows of users" in check["message"]
        assert "integrity.sqlite" in by_name and by_name["integrity.sqlite"]["level"] == "PASS"
    else:
        # re-added NOT VALID: the same key, but no longer validated, which is drift
        assert [c["message"] for c in drift] == [
            "foreign key trades (user_id) -> users (id): is NOT VALID (rows older than it were "
            "never checked), expected validated (as set by 1.0.0 initial-schema)"
        ]
        constraints = by_name["integrity.constraints"]
        assert constraints["level"] == "WARN"
        assert "trades_user_id_fkey on trades" in constraints["message"]


def test_an_invalid_index_left_by_a_failed_concurrent_build_is_reported(starter):
    if starter.vendor == "sqlite":
        # SQLite's counterpart: a damaged file, found by PRAGMA integrity_check.
        # The index's definition is rewritten under it, so its entries no longer match.
        db = Database(connections[starter.alias])
        db.execute("PRAGMA writable_schema = ON")
        db.execute(
            "UPDATE sqlite_master SET sql = replace(sql, '(\"user_id\")', '(\"symbol\")') "
            "WHERE name = 'trades_user_id_idx'"
        )
        db.execute("PRAGMA writable_schema = OFF")
        connections[starter.alias].close()  # reload the schema
        name, expected = "integrity.sqlite", "PRAGMA integrity_check found"
    else:
        with psycopg.connect(starter.url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO trades (user_id, symbol, side, quantity, price) "
                "SELECT user_id, symbol, side, quantity, price FROM trades"
            )
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute("CREATE UNIQUE INDEX CONCURRENTLY trades_symbol_uq ON trades (symbol)")
        name, expected = "integrity.indexes", "1 invalid index(es): trades_symbol_uq on trades"
    result = tbmigrate("validate", "schema", database=starter)
    assert result.code == 1
    failing = {c[1]: c[2] for c in checks(result, "FAIL")}
    assert expected in failing[name]


def test_history_problems_are_reported(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "t0")
    table_script(scripts_dir, "1.0.2", "t2")
    assert tbmigrate("run", database=target).code == 0
    table_script(scripts_dir, "1.0.1", "t1")
    assert tbmigrate("run", "--out-of-order", database=target).code == 0
    edited = next(scripts_dir.glob("*-1.0.1-*"))
    edited.write_text(edited.read_text() + "# edited\n")
    next(scripts_dir.glob("*-1.0.2-*")).unlink()
    table_script(scripts_dir, "0.9.0", "late")  # pending, older than the applied ones
    result = tbmigrate("validate", "schema", database=target)
    assert result.code == 1
    found = {c[1]: c for c in checks(result)}
    assert found["history.checksums"][0] == "FAIL"
    assert "1 applied script(s) were edited after they ran: 1.0.1 create-t1" in result.out
    assert found["history.files"][0] == "FAIL"
    assert "1 applied migration(s) have no script file: 1.0.2 create-t2" in result.out
    assert found["history.order"][0] == "WARN"
    assert "1.0.1 create-t1 was applied after 1.0.2" in found["history.order"][2]
    assert "0.9.0 create-late is pending but newer versions are applied" in result.out
    # the missing file cannot be replayed: its table is not created by any applied script
    assert ("FAIL", "drift", "table t2 is not created by any applied script") in checks(result)


def test_validate_writes_an_audit_event(starter):
    Database(connections[starter.alias]).execute("DROP INDEX trades_user_id_idx")
    assert tbmigrate("validate", "schema", database=starter).code == 1
    event = history.events(starter.alias, limit=1)[0]
    assert (event["action"], event["outcome"]) == ("validate", "failure")
    assert event["details"]["validation"] == "schema"
    failed = [c for c in event["details"]["checks"] if c["level"] == "FAIL"]
    assert [c["name"] for c in failed] == ["drift"]
    assert tbmigrate("validate", "schema", database=starter).code == 1
    assert len([e for e in history.events(starter.alias) if e["action"] == "validate"]) == 2


def test_validating_a_database_tbmigrate_never_touched_creates_nothing(target, scripts_dir):
    Database(connections[target.alias]).execute("CREATE TABLE legacy (id INTEGER)")
    result = tbmigrate("validate", "schema", database=target)
    assert result.code == 1 and "table legacy is not created by any applied script" in result.out
    assert rows(target, "SELECT COUNT(*) FROM legacy") == [(0,)]
    assert not history.tables_exist(target.alias)


def test_without_createdb_drift_is_a_warning_saying_why(make_database, scripts_dir):
    database = make_database("postgresql")
    table_script(scripts_dir, "1.0.0", "a")
    assert tbmigrate("run", database=database).code == 0
    with plain_user(database) as alias:
        result = tbmigrate("validate", "schema", "--database", alias)
    assert result.code == 0, result.out + result.err
    drift = next(c for c in checks(result) if c[1] == "drift")
    assert drift[0] == "WARN"
    assert "cannot create a scratch database" in drift[2]
    assert "give the user the CREATEDB privilege" in drift[2]


def test_orphans_with_numeric_keys_are_reported_and_audited(target, scripts_dir):
    """Sampled keys may be Decimals (PostgreSQL NUMERIC): the report and the audit keep them."""
    write_script(
        scripts_dir,
        "1.0.0",
        "numeric-keys",
        up="""
            db.execute("CREATE TABLE parent (code NUMERIC(10, 2) PRIMARY KEY)")
            db.execute(
                "CREATE TABLE child (id NUMERIC(10, 2) PRIMARY KEY, "
                "code NUMERIC(10, 2) REFERENCES parent (code))"
            )
        """,
    )
    assert tbmigrate("run", database=target).code == 0
    if target.vendor == "sqlite":
        db = Database(connections[target.alias])
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("INSERT INTO child VALUES (1.5, 9.25)")
        db.execute("PRAGMA foreign_keys = ON")
    else:
        with psycopg.connect(target.url, autocommit=True) as conn:
            conn.execute("ALTER TABLE child DROP CONSTRAINT child_code_fkey")
            conn.execute("INSERT INTO child VALUES (1.5, 9.25)")
            conn.execute(
                "ALTER TABLE child ADD CONSTRAINT child_code_fkey "
                "FOREIGN KEY (code) REFERENCES parent (code) NOT VALID"
            )
    result = tbmigrate("validate", "schema", database=target)
    assert result.code == 1, result.err
    assert "1 row(s) of child.code point at no parent.code (e.g. code 9.25 in rows id = 1.5" in (
        result.out
    )
    event = history.events(target.alias, limit=1)[0]
    orphans = next(c for c in event["details"]["checks"] if c["name"] == "integrity.orphans")
    sample = orphans["details"]["orphans"][0]["samples"][0]
    assert float(sample["code"]) == 9.25 and float(sample["row"]) == 1.5


# -- reading only what each step changed ----------------------------------------------------
TRACKED = {
    "postgresql": [
        (
            ["CREATE TABLE a (id SERIAL PRIMARY KEY, v TEXT)", "CREATE TYPE mood AS ENUM ('x')"],
            ["DROP TABLE a", "DROP TYPE mood"],
        ),
        (
            [
                "CREATE TABLE b (id SERIAL PRIMARY KEY, a_id INT REFERENCES a (id), m mood)",
                "CREATE VIEW a_v AS SELECT a.id, b.m FROM a JOIN b ON b.a_id = a.id",
                "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; "
                "END $$",
                "CREATE TRIGGER b_t BEFORE UPDATE ON b FOR EACH ROW EXECUTE FUNCTION f()",
            ],
            ["DROP VIEW a_v", "DROP TABLE b", "DROP FUNCTION f()"],
        ),
        # cascades: the statements do not name what goes with them
        (["DROP FUNCTION f() CASCADE"], ["SELECT 1"]),
        (["DROP TABLE a CASCADE"], ["SELECT 1"]),
        (["DROP TYPE mood CASCADE"], ["SELECT 1"]),
        (["ALTER TABLE b RENAME TO c", "ALTER TABLE c RENAME COLUMN a_id TO x"], ["SELECT 1"]),
        # a partitioned table clones an index, a trigger and a foreign key onto its
        # partitions, which no statement names
        (
            [
                "CREATE TABLE p (id INT, k INT, a_id INT) PARTITION BY RANGE (k)",
                "CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (10)",
                "CREATE TABLE p2 PARTITION OF p FOR VALUES FROM (10) TO (20)",
            ],
            ["DROP TABLE p"],
        ),
        (["CREATE INDEX p_k ON p (k)"], ["DROP INDEX p_k"]),
        (
            [
                "CREATE TRIGGER p_t BEFORE UPDATE ON p FOR EACH ROW EXECUTE FUNCTION "
                "suppress_redundant_updates_trigger()"
            ],
            ["DROP TRIGGER p_t ON p"],
        ),
        (["ALTER TABLE p ADD FOREIGN KEY (a_id) REFERENCES c (id)"], ["SELECT 1"]),
        # dynamic SQL: a DO block makes tables no statement names
        (
            [
                "DO $$ BEGIN FOR i IN 1..3 LOOP EXECUTE format("
                "'CREATE TABLE part_%s (id INT PRIMARY KEY)', i); END LOOP; END $$"
            ],
            ["SELECT 1"],
        ),
    ],
    "sqlite": [
        (["CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)"], ["DROP TABLE a"]),
        (
            [
                "CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INT REFERENCES a (id))",
                "CREATE VIEW a_v AS SELECT a.id FROM a JOIN b ON b.a_id = a.id",
                "CREATE TRIGGER b_t AFTER UPDATE ON b BEGIN SELECT 1; END",
                "CREATE INDEX b_a ON b (a_id)",
            ],
            ["DROP VIEW a_v", "DROP TABLE b"],
        ),
        (["ALTER TABLE a RENAME TO z"], ["SELECT 1"]),  # rewrites b's foreign key and a_v
        (["ALTER TABLE b RENAME COLUMN a_id TO z_id"], ["SELECT 1"]),
        (["DROP TABLE b"], ["SELECT 1"]),  # its index and trigger go with it
    ],
}


def test_reading_only_what_each_step_changed_equals_reading_everything(target, scripts_dir):
    from migrator.executor import Executor
    from migrator.scripts import load_scripts
    from migrator.validation.introspect import introspect
    from migrator.validation.tracker import Tracker
    from tests.validation_support import statements_script

    for n, (up, down) in enumerate(TRACKED[target.vendor]):
        statements_script(scripts_dir, f"1.0.{n}", f"step-{n}", up, down)
    history.ensure_schema(target.alias)
    connection = connections[target.alias]
    tracker = Tracker(connection)
    reads = tracker.reads
    with Executor(target.alias) as executor:
        for script in load_scripts(scripts_dir):
            with tracker.step() as changes:
                executor.apply(script)
            assert tracker.objects == introspect(connection).objects, script.label
            assert changes, f"{script.label} changed nothing?"
    assert tracker.reads == reads + len(TRACKED[target.vendor])  # one reading per step
    if target.vendor == "postgresql":
        assert {("table", f"part_{i}") for i in (1, 2, 3)} <= set(tracker.objects)


# -- journaled steps that never finished ------------------------------------------------------
def _journal_in_progress(target, scripts_dir):
    """A non-atomic step journaled as in progress, as the executor leaves one when its
    process dies: the row written through ``migrator.history``, then the journal's fields
    set as a dying run leaves them."""
    from migrator.versions import Version

    table_script(scripts_dir, "1.0.0", "fills")
    write_script(
        scripts_dir,
        "1.0.1",
        "backfill",
        up="db.batched_update('fills', \"label = 'x'\", progress=False)",
        atomic=False,
    )
    assert tbmigrate("run", "--to", "1.0.0", database=target).code == 0
    history.record_applied(
        target.alias,
        version=Version.parse("1.0.1"),
        name="backfill",
        description="test backfill",
        checksum="0" * 64,
        duration_ms=0,
        status=history.IN_PROGRESS,
    )
    Database(connections[target.alias]).execute(
        "UPDATE tbmigrate_applied_migration SET direction = 'up', pid = 4242, "
        "applied_by = 'ci', host = 'runner-7', started_at = %s, progress = %s "
        "WHERE version = '1.0.1'",
        [
            "2026-11-28 09:15:00" if target.vendor == "sqlite" else "2026-11-28 09:15:00+00",
            '{"table": "fills", "rows_done": 120000, "last_key": 120000}',
        ],
    )


def test_an_interrupted_step_fails_saying_when_who_and_how_far(target, scripts_dir):
    _journal_in_progress(target, scripts_dir)
    result = tbmigrate("validate", "schema", "--json", database=target)
    assert result.code == 1, result.out
    report = json.loads(result.out)
    found = [c for c in report["checks"] if c["name"] == "history.interrupted"]
    assert [c["level"] for c in found] == ["FAIL"]
    message = found[0]["message"]
    assert message.startswith(
        "1 migration(s) were interrupted: 1.0.1 backfill was interrupted while applying "
        "(started 2026-11-28 09:15:00 UTC, by ci on runner-7, pid 4242, batched_update of "
        "fills: 120,000 rows done, last key 120000) and needs checking"
    ), message
    assert "`tbmigrate repair VERSION`" in message
    assert found[0]["details"][0]["pid"] == 4242
    assert found[0]["details"][0]["state"] == "interrupted"


def test_a_step_running_right_now_is_a_warning(target, scripts_dir):
    _journal_in_progress(target, scripts_dir)
    if target.vendor == "postgresql":
        from migrator.locking import PG_LOCK_KEY

        holder = psycopg.connect(target.url, autocommit=True)
        holder.execute("SELECT pg_advisory_lock(%s)", [PG_LOCK_KEY])
    else:
        import fcntl

        holder = open(f"{target.name}.tbmigrate.lock", "a+")  # noqa: SIM115
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        result = tbmigrate("validate", "schema", database=target)
    finally:
        holder.close()
    running = [c for c in checks(result) if c[1] == "history.running"]
    assert running and running[0][0] == "WARN", result.out
    assert "1.0.1 backfill is being applied right now (started 2026-11-28" in running[0][2]
    assert not [c for c in checks(result) if c[1] == "history.interrupted"]


def test_renames_are_recognised_in_the_schemas_of_a_dry_run(target, scripts_dir):
    """``introspect.renames`` on the ``columns_only`` schemas the rollback preview has."""
    from migrator.validation.dryrun import dry_run
    from migrator.validation.introspect import Rename, renames
    from tests.validation_support import statements_script

    statements_script(
        scripts_dir,
        "1.0.0",
        "fees",
        ["CREATE TABLE fees (id INTEGER PRIMARY KEY, amount NUMERIC NOT NULL, note TEXT)"],
        ["DROP TABLE fees"],
    )
    assert tbmigrate("run", database=target).code == 0

    def found(step):
        run = dry_run(target.alias, [("step", step)], columns_only=True)
        assert run.ok, run.error
        return renames(run.before, run.after)

    assert found(lambda db: db.rename_table("fees", "charges")) == [
        Rename("table", "fees", "fees", "charges")
    ]
    assert found(lambda db: db.rename_column("fees", "note", "memo")) == [
        Rename("column", "fees", "note", "memo")
    ]
    assert found(lambda db: db.rename_column("fees", "note", "memo"))[0].describe() == (
        "column fees.note renamed to memo"
    )
    # dropped and replaced by another shape: no rename, it is data loss
    assert (
        found(
            lambda db: (
                db.execute("DROP TABLE fees"),
                db.execute("CREATE TABLE charges (id INTEGER PRIMARY KEY, amount TEXT)"),
            )
        )
        == []
    )


@pytest.mark.slow
def test_a_step_killed_half_way_fails_validation_with_its_journal(target, tmp_path, settings):
    """The real thing: `run` killed by SIGKILL in the middle of a non-atomic backfill."""
    import signal

    from tests.test_concurrency import finish, start
    from tests.test_journal import done_rows, record_of, scripts, wait_for_point

    folder = tmp_path / "journal"
    folder.mkdir()
    scripts(folder)
    settings.TBMIGRATE_SCRIPTS_DIR = str(folder)
    assert tbmigrate("run", "--to", "1.0.0", database=target).code == 0
    process = start("run", "--no-input", database=target, scripts=folder)
    wait_for_point(target, process, up=True, rows_done=40)
    process.send_signal(signal.SIGKILL)
    finish(process)
    record = record_of(target)
    assert record is not None and record.status == "in_progress"
    result = tbmigrate("validate", "schema", "--json", database=target)
    assert result.code == 1, result.out
    report = json.loads(result.out)
    (found,) = [c for c in report["checks"] if c["name"] == "history.interrupted"]
    assert found["level"] == "FAIL"
    message = found["message"]
    started = record.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"1.0.1 backfill-cents was interrupted while applying (started {started}" in message
    assert f"pid {process.pid}" in message and f"by {record.applied_by}" in message
    assert f"batched_update of fills: {done_rows(target):,} rows done" in message
    # what the backfill did is in the database: the column it fills is no drift (1.0.0
    # made it), and nothing else is reported but the interruption
    assert [c["name"] for c in report["checks"] if c["level"] == "FAIL"] == ["history.interrupted"]
