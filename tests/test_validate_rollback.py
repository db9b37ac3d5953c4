"""`tbmigrate validate rollback VERSION`, and `rollback` refusing (or --force) on its findings."""

import json

import psycopg
import pytest
from django.db import connections

from migrator import history
from migrator.database import Database
from tests.conftest import snapshot, table_script, tables_of, tbmigrate, write_script
from tests.schemas import document
from tests.validation_support import checks, hold_sqlite_write_lock, unchanged


def applied(target):
    return [str(r.version) for r in history.load(target.alias)]


@pytest.fixture
def fills(target, scripts_dir):
    """1.0.0 creates `a`; 1.0.1 creates `fills`, which holds 3 rows."""
    table_script(scripts_dir, "1.0.0", "a")
    table_script(scripts_dir, "1.0.1", "fills")
    assert tbmigrate("run", database=target).code == 0
    db = Database(connections[target.alias])
    for n in range(3):
        db.execute("INSERT INTO fills (id, label) VALUES (%s, %s)", [n + 1, f"fill {n}"])
    return target


def test_the_preview_names_a_table_that_would_lose_3_rows(fills):
    before = snapshot(fills)
    result = tbmigrate("validate", "rollback", "1.0.0", database=fills)
    assert result.code == 1
    loss = [c for c in checks(result) if c[1] == "data_loss"]
    assert loss == [
        (
            "FAIL",
            "data_loss",
            "table fills would be dropped with its 3 row(s) (by 1.0.1 create-fills); back the "
            "data up or move it first, or roll back anyway with --force",
        )
    ]
    assert {k: v for k, v in snapshot(fills).items() if k != "tbmigrate_audit_event"} == {
        k: v for k, v in before.items() if k != "tbmigrate_audit_event"
    }
    report = json.loads(tbmigrate("validate", "rollback", "1.0.0", "--json", database=fills).out)
    details = next(c for c in report["checks"] if c["name"] == "data_loss")["details"]
    assert details["dropped_tables"] == ["a", "fills"]
    assert {"table": "fills", "rows": 3, "by": "1.0.1 create-fills"} in details["losses"]
    assert {"table": "a", "rows": 0, "by": "1.0.0 create-a"} in details["losses"]


def test_empty_tables_pass_the_preview(fills):
    Database(connections[fills.alias]).execute("DELETE FROM fills")
    result = tbmigrate("validate", "rollback", "1.0.1", database=fills)
    assert result.code == 0, result.out + result.err
    assert (
        "PASS  data_loss: rolling back 1.0.1 create-fills drops table fills: no rows lost "
        "(1 statement(s) tried and rolled back)"
    ) in result.out
    assert "PASS  guard.active_trading_sessions: no trading_sessions table" in result.out


def test_a_preview_of_many_drops_names_the_first_twenty_in_its_line(target, scripts_dir):
    for n in range(25):
        table_script(scripts_dir, f"1.0.{n}", f"t{n:02d}")
    assert tbmigrate("run", database=target).code == 0
    result = tbmigrate("validate", "rollback", "1.0.0", "--json", database=target)
    assert result.code == 0, result.err
    (check,) = [c for c in json.loads(result.out)["checks"] if c["name"] == "data_loss"]
    assert "table t19, and 5 more (all in the audit event): no rows lost" in check["message"]
    assert "table t20" not in check["message"]
    assert len(check["details"]["dropped_tables"]) == 25


def test_dropped_column_values_and_deleted_rows_are_counted(fills, scripts_dir):
    write_script(
        scripts_dir,
        "1.0.2",
        "add-note",
        up="db.add_column('fills', 'note', \"VARCHAR(20) DEFAULT 'none'\")",
        down="db.drop_column('fills', 'note')",
    )
    write_script(
        scripts_dir,
        "1.0.3",
        "seed-a",
        up="db.execute(\"INSERT INTO a (id, label) VALUES (7, 'seeded')\")",
        down='db.execute("DELETE FROM a")',
    )
    assert tbmigrate("run", database=fills).code == 0
    db = Database(connections[fills.alias])
    db.execute("INSERT INTO a (id, label) VALUES (8, 'typed by a user')")
    result = tbmigrate("validate", "rollback", "1.0.2", database=fills)
    assert result.code == 1
    messages = [c[2] for c in checks(result, "FAIL")]
    assert messages[0].startswith("2 of the 2 row(s) of a would be deleted")
    assert len(messages) == 1  # every note still holds its default: nothing of it is lost
    db.execute("UPDATE fills SET note = %s WHERE id < 3", ["hand-written"])
    result = tbmigrate("validate", "rollback", "1.0.2", database=fills)
    messages = [c[2] for c in checks(result, "FAIL")]
    assert (
        "column fills.note would be dropped with its 3 non-null value(s) (2 differ from its "
        "default 'none'"
    ) in " ".join(messages)


def test_the_sqlite_rebuild_in_a_preview_keeps_the_children(target):
    """1.0.4's down rebuilds users on SQLite; the preview must not cascade into its children."""
    assert tbmigrate("run", database=target).code == 0
    db = Database(connections[target.alias])
    db.execute("INSERT INTO users (username, email) VALUES ('ada', 'a@example.com')")
    user = db.scalar("SELECT id FROM users")
    db.execute(
        "INSERT INTO trades (user_id, symbol, side, quantity, price) VALUES (%s, 'X', 'buy', 1, 1)",
        [user],
    )
    db.execute("INSERT INTO user_preferences (user_id) VALUES (%s)", [user])
    result = tbmigrate("validate", "rollback", "1.0.4", database=target)
    assert result.code == 0, result.out + result.err
    assert "drops column users.timezone (1 value(s), all its default" in result.out
    assert db.scalar("SELECT COUNT(*) FROM trades") == 1
    assert db.scalar("SELECT COUNT(*) FROM user_preferences") == 1
    assert "timezone" in db.columns("users")


@pytest.fixture
def trading(target):
    """The starter scripts, with one active trading session."""
    assert tbmigrate("run", database=target).code == 0
    db = Database(connections[target.alias])
    db.execute("INSERT INTO users (username, email) VALUES ('ada', 'a@example.com')")
    user = db.scalar("SELECT id FROM users")
    db.execute("INSERT INTO trading_sessions (user_id, status) VALUES (%s, 'active')", [user])
    db.execute("INSERT INTO trading_sessions (user_id, status) VALUES (%s, 'closed')", [user])
    return target


def test_an_active_trading_session_blocks_validate_rollback(trading):
    result = tbmigrate("validate", "rollback", "1.0.3", database=trading)
    assert result.code == 1
    guard = next(c for c in checks(result) if c[1] == "guard.active_trading_sessions")
    assert guard[0] == "FAIL"
    assert guard[2].startswith("1 trading session(s) are active (status 'active', ids ")


def test_an_active_trading_session_blocks_rollback_until_forced(trading):
    before = unchanged(trading)
    refused = tbmigrate("rollback", "1.0.3", "--no-input", database=trading)
    assert refused.code == 1
    assert "rollback refused, 1 check(s) failed: guard.active_trading_sessions" in refused.err
    assert "FAIL  guard.active_trading_sessions" in refused.out
    assert "Reverting" not in refused.out
    assert applied(trading)[-2:] == ["1.0.3", "1.0.4"]
    assert unchanged(trading) == before
    event = history.events(trading.alias, limit=1)[0]
    assert (event["action"], event["outcome"]) == ("rollback", "refused")
    assert [c["name"] for c in event["details"]["failed_checks"]] == [
        "guard.active_trading_sessions"
    ]

    forced = tbmigrate("rollback", "1.0.3", "--no-input", "--force", database=trading)
    assert forced.code == 0, forced.err
    assert "--force: rolling back despite 1 failed check(s)" in forced.out
    assert applied(trading)[-1] == "1.0.2"
    assert "notifications" not in tables_of(trading)
    event = next(e for e in history.events(trading.alias) if e["action"] == "rollback")
    assert event["outcome"] == "success"
    assert event["details"]["forced"] is True
    assert event["details"]["done"] == ["1.0.4", "1.0.3"]
    assert [c["name"] for c in event["details"]["failed_checks"]] == [
        "guard.active_trading_sessions"
    ]


def test_a_rollback_that_would_lose_rows_is_refused(fills):
    result = tbmigrate("rollback", "--no-input", database=fills)
    assert result.code == 1
    assert "table fills would be dropped with its 3 row(s)" in result.err
    assert "fills" in tables_of(fills) and applied(fills) == ["1.0.0", "1.0.1"]
    result = tbmigrate("rollback", "--no-input", "--force", "--json", database=fills)
    assert result.code == 0
    data = document(result, "run")  # valid against run.schema.json, with its validation
    assert data["ok"] is True and data["validation"]["ok"] is False
    assert data["validation"]["counts"]["FAIL"] == 1
    assert applied(fills) == ["1.0.0"]


def test_a_clean_rollback_validates_and_records_it(fills):
    Database(connections[fills.alias]).execute("DELETE FROM fills")
    result = tbmigrate("rollback", "--no-input", database=fills)
    assert result.code == 0, result.err
    assert "PASS  data_loss: rolling back 1.0.1 create-fills drops table fills" in result.out
    event = next(e for e in history.events(fills.alias) if e["action"] == "rollback")
    assert event["details"]["validation"] == {
        "ok": True,
        "counts": {"PASS": 2, "WARN": 0, "FAIL": 0},
    }
    assert "forced" not in event["details"]


def test_the_steps_must_be_applied_reversible_and_unchanged(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a")
    write_script(
        scripts_dir, "1.0.1", "one-way", up='db.execute("CREATE TABLE b (id INT)")', down=None
    )
    table_script(scripts_dir, "1.0.2", "c")
    table_script(scripts_dir, "1.0.3", "d")
    assert tbmigrate("run", "--to", "1.0.2", database=target).code == 0
    edited = next(scripts_dir.glob("*-1.0.2-*"))
    edited.write_text(edited.read_text() + "# edited\n")
    result = tbmigrate("validate", "rollback", "1.0.1", database=target)
    assert result.code == 1
    found = {c[1]: c for c in checks(result)}
    assert (
        found["reversible"][0] == "FAIL" and "1.0.1 one-way has no down()" in found["reversible"][2]
    )
    assert found["unchanged"][0] == "FAIL" and "1.0.2 create-c was edited" in found["unchanged"][2]
    not_applied = tbmigrate("validate", "rollback", "1.0.3", database=target)
    assert not_applied.code == 1
    assert "FAIL  target: 1.0.3 create-d is not applied (pending)" in not_applied.out
    for args, message in [
        (["9.9.9"], "validate rollback: there is no migration 9.9.9"),
        ([], "validate rollback needs a VERSION"),
    ]:
        bad = tbmigrate("validate", "rollback", *args, database=target)
        assert bad.code == 2 and message in bad.err


def test_a_down_that_raises_fails_the_preview(target, scripts_dir):
    write_script(
        scripts_dir,
        "1.0.0",
        "bad-down",
        up='db.execute("CREATE TABLE k (id INTEGER)")',
        down='db.execute("DROP TABLE k")\nraise RuntimeError("down broke")',
    )
    assert tbmigrate("run", database=target).code == 0
    result = tbmigrate("validate", "rollback", "1.0.0", database=target)
    assert result.code == 1
    assert "FAIL  dry_run: down of 1.0.0 bad-down fails: RuntimeError: down broke" in result.out
    assert "k" in tables_of(target)


def broken_guard(db, steps):
    raise ValueError(f"cannot judge {len(steps)} step(s)")


def quiet_guard(db, steps):
    return None


def test_guards_come_from_the_setting_and_a_broken_one_fails(fills, settings):
    Database(connections[fills.alias]).execute("DELETE FROM fills")
    settings.TBMIGRATE_ROLLBACK_GUARDS = [
        "tests.test_validate_rollback.quiet_guard",
        "tests.test_validate_rollback.broken_guard",
        "tests.no_such_module.guard",
    ]
    result = tbmigrate("validate", "rollback", "1.0.1", database=fills)
    assert result.code == 1
    found = [(c[0], c[1]) for c in checks(result) if c[1].startswith("guard.")]
    assert found == [
        ("PASS", "guard.quiet_guard"),
        ("FAIL", "guard.broken_guard"),
        ("FAIL", "guard.guard"),
    ]
    assert "raised ValueError: cannot judge 1 step(s)" in result.out
    assert "cannot import tests.no_such_module.guard" in result.out


def test_a_locked_table_fails_the_preview(fills, settings):
    settings.TBMIGRATE_PREFLIGHT_LOCK_TIMEOUT = 0.5
    Database(connections[fills.alias]).execute("DELETE FROM fills")
    if fills.vendor == "postgresql":
        other = psycopg.connect(fills.url)
        other.execute("LOCK TABLE fills IN ACCESS EXCLUSIVE MODE")
        try:
            result = tbmigrate("validate", "rollback", "1.0.1", database=fills)
        finally:
            other.rollback()
            other.close()
    else:
        holder = hold_sqlite_write_lock(fills.name)
        try:
            result = tbmigrate("validate", "rollback", "1.0.1", database=fills)
        finally:
            holder.kill()
            holder.wait()
    assert result.code == 1
    locks = next(c for c in checks(result) if c[1] == "locks")
    assert locks[0] == "FAIL"
    assert "fills" in tables_of(fills)
