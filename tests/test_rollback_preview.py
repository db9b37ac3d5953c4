"""A rollback never destroys data without --force, non-atomic steps included; its dry run
and `validate rollback` reach the same verdict; a rename is not a loss.

On both databases, with real rows in real tables.  A plan with an `atomic = False` step is
measured on a copy (SQLite: an online-backup copy; PostgreSQL: a scratch database holding
the live schema, counted on the live one); a plan of atomic steps is measured in the
rollback's own transaction.
"""

from __future__ import annotations

import json

import pytest
from django.db import connections

from migrator import history
from migrator.database import Database
from tests.conftest import snapshot, table_script, tables_of, tbmigrate, write_script
from tests.validation_support import checks, unchanged


def applied(target):
    return [str(r.version) for r in history.load(target.alias)]


def concurrent_index(table: str, name: str) -> tuple[str, str]:
    """An up/down pair that needs atomic = False on PostgreSQL (CONCURRENTLY)."""
    return (
        f'db.create_index("{table}", ["label"], name="{name}", concurrently=db.is_postgresql)',
        f'db.drop_index("{name}", concurrently=db.is_postgresql)',
    )


@pytest.fixture
def mixed(target, scripts_dir):
    """1.0.0 fills (atomic, 4 rows), 1.0.1 an index built CONCURRENTLY (atomic = False),
    1.0.2 ledger (atomic = False, its down drops it; 2 rows), 1.0.3 reports (atomic, 5 rows)."""
    table_script(scripts_dir, "1.0.0", "fills")
    up, down = concurrent_index("fills", "fills_label_idx")
    write_script(scripts_dir, "1.0.1", "index-fills", up=up, down=down, atomic=False)
    write_script(
        scripts_dir,
        "1.0.2",
        "ledger",
        up='db.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, note VARCHAR(20))")',
        down='db.execute("DROP TABLE ledger")',
        atomic=False,
    )
    table_script(scripts_dir, "1.0.3", "reports")
    assert tbmigrate("run", database=target).code == 0
    db = Database(connections[target.alias])
    for n in range(4):
        db.execute("INSERT INTO fills (id, label) VALUES (%s, %s)", [n + 1, f"fill {n}"])
    for n in range(2):
        db.execute("INSERT INTO ledger (id, note) VALUES (%s, %s)", [n + 1, "entry"])
    for n in range(5):
        db.execute("INSERT INTO reports (id, label) VALUES (%s, %s)", [n + 1, "r"])
    return target


def test_a_rollback_through_non_atomic_steps_names_every_loss_and_refuses(mixed):
    before = unchanged(mixed)
    result = tbmigrate("rollback", "--to", "0", "--no-input", database=mixed)
    assert result.code == 1, result.out + result.err
    failures = [c[2] for c in checks(result, "FAIL")]
    assert any("table reports would be dropped with its 5 row(s) (by 1.0.3" in f for f in failures)
    assert any("table ledger would be dropped with its 2 row(s) (by 1.0.2" in f for f in failures)
    assert any("table fills would be dropped with its 4 row(s) (by 1.0.0" in f for f in failures)
    assert "rollback refused, 3 check(s) failed" in result.err
    assert "Reverting" not in result.out
    assert unchanged(mixed) == before and applied(mixed) == ["1.0.0", "1.0.1", "1.0.2", "1.0.3"]
    event = history.events(mixed.alias, limit=1)[0]
    assert (event["action"], event["outcome"]) == ("rollback", "refused")


def test_its_dry_run_and_validation_agree_with_the_real_rollback(mixed):
    before = unchanged(mixed)
    dry = tbmigrate("rollback", "--to", "0", "--dry-run", database=mixed)
    validated = tbmigrate("validate", "rollback", "1.0.0", database=mixed)
    real = tbmigrate("rollback", "--to", "0", "--no-input", database=mixed)
    assert dry.code == validated.code == real.code == 1
    losses = {c[2].split(" (by")[0] for c in checks(real, "FAIL")}
    assert {c[2].split(" (by")[0] for c in checks(dry, "FAIL")} == losses
    assert {
        c[2].split(" (by")[0] for c in checks(validated, "FAIL") if c[1] == "data_loss"
    } == losses
    assert unchanged(mixed) == before

    # Nothing lost: all three pass, and the real one reverts.
    db = Database(connections[mixed.alias])
    for table in ("reports", "ledger", "fills"):
        db.execute(f"DELETE FROM {table}")
    dry = tbmigrate("rollback", "--to", "0", "--dry-run", database=mixed)
    validated = tbmigrate("validate", "rollback", "1.0.0", database=mixed)
    assert dry.code == validated.code == 0, dry.out + dry.err + validated.out
    assert applied(mixed) == ["1.0.0", "1.0.1", "1.0.2", "1.0.3"]
    real = tbmigrate("rollback", "--to", "0", "--no-input", database=mixed)
    assert real.code == 0, real.out + real.err
    assert applied(mixed) == [] and not {"fills", "ledger", "reports"} & tables_of(mixed)
    assert "The database is now at no migration applied." in real.out


def test_force_goes_on_and_the_audit_says_so(mixed):
    forced = tbmigrate("rollback", "1.0.2", "--no-input", "--force", database=mixed)
    assert forced.code == 0, forced.out + forced.err
    assert "--force: rolling back despite 2 failed check(s)" in forced.out
    assert applied(mixed) == ["1.0.0", "1.0.1"]
    event = next(e for e in history.events(mixed.alias) if e["action"] == "rollback")
    assert event["outcome"] == "success" and event["details"]["forced"] is True
    assert sorted(c["message"].split(" (by")[0] for c in event["details"]["failed_checks"]) == [
        "table ledger would be dropped with its 2 row(s)",
        "table reports would be dropped with its 5 row(s)",
    ]


def test_a_rollback_of_atomic_steps_is_all_or_nothing(target, scripts_dir):
    """The rollback is its own preview: one transaction; a failing down undoes it all."""
    table_script(scripts_dir, "1.0.0", "a")
    table_script(scripts_dir, "1.0.1", "b")
    write_script(
        scripts_dir,
        "1.0.2",
        "breaks-on-down",
        up='db.execute("CREATE TABLE c (id INTEGER)")',
        down='db.execute("DROP TABLE c")\nraise RuntimeError("down broke")',
    )
    table_script(scripts_dir, "1.0.3", "d")
    assert tbmigrate("run", database=target).code == 0
    before = unchanged(target)
    result = tbmigrate("rollback", "--to", "0", "--no-input", database=target)
    assert result.code == 1
    assert "1.0.2 breaks-on-down failed to revert: RuntimeError: down broke" in result.err
    assert "nothing was reverted" in result.err
    assert unchanged(target) == {**before, **{}}
    assert applied(target) == ["1.0.0", "1.0.1", "1.0.2", "1.0.3"]
    failure = next(e for e in history.events(target.alias) if e["action"] == "revert")
    assert failure["outcome"] == "failure" and "down broke" in failure["traceback"]


@pytest.mark.parametrize("atomic", [True, False])
def test_a_rename_the_down_undoes_is_no_loss(target, scripts_dir, atomic):
    table_script(scripts_dir, "1.0.0", "orders")
    write_script(
        scripts_dir,
        "1.0.1",
        "rename-orders",
        up="db.rename_table('orders', 'trade_orders')\ndb.rename_column('trade_orders', "
        "'label', 'side')",
        down="db.rename_column('trade_orders', 'side', 'label')\ndb.rename_table("
        "'trade_orders', 'orders')",
        atomic=atomic,
    )
    write_script(
        scripts_dir,
        "1.0.2",
        "rename-back",
        up="db.rename_table('trade_orders', 'all_orders')",
        down="db.rename_table('all_orders', 'trade_orders')",
    )
    assert tbmigrate("run", database=target).code == 0
    db = Database(connections[target.alias])
    for n in range(3):
        db.execute("INSERT INTO all_orders (id, side) VALUES (%s, %s)", [n + 1, "buy"])
    result = tbmigrate("validate", "rollback", "1.0.1", "--json", database=target)
    assert result.code == 0, result.out + result.err
    (check,) = [c for c in json.loads(result.out)["checks"] if c["name"] == "data_loss"]
    assert check["level"] == "PASS"
    assert "table all_orders renamed to orders" in " ".join(check["details"]["renamed"])
    assert "column" in " ".join(check["details"]["renamed"])
    rolled = tbmigrate("rollback", "1.0.1", "--no-input", database=target)
    assert rolled.code == 0, rolled.out + rolled.err
    assert db.scalar("SELECT COUNT(*) FROM orders WHERE label = 'buy'") == 3


def test_a_drop_the_meter_did_not_see_coming_is_counted_before_anything_goes(
    make_database, scripts_dir
):
    """PostgreSQL: a DO block drops a table whose name no statement spells out."""
    target = make_database("postgresql")
    table_script(scripts_dir, "1.0.0", "hidden_fills")
    write_script(
        scripts_dir,
        "1.0.1",
        "sneaky",
        up='db.execute("CREATE TABLE marker (id INTEGER)")',
        down='db.execute("DROP TABLE marker")\n'
        "db.execute(\"DO $$ BEGIN EXECUTE 'DROP TABLE ' || 'hidden' || '_fills'; END $$\")",
    )
    assert tbmigrate("run", database=target).code == 0
    Database(connections[target.alias]).execute(
        "INSERT INTO hidden_fills (id, label) VALUES (1, 'x'), (2, 'y')"
    )
    before = snapshot(target)
    result = tbmigrate("rollback", "--no-input", database=target)
    assert result.code == 1, result.out + result.err
    assert "table hidden_fills would be dropped with its 2 row(s)" in result.err
    assert {k: v for k, v in snapshot(target).items() if k != "tbmigrate_audit_event"} == {
        k: v for k, v in before.items() if k != "tbmigrate_audit_event"
    }
    Database(connections[target.alias]).execute("DELETE FROM hidden_fills")
    result = tbmigrate("rollback", "--no-input", database=target)
    assert result.code == 0, result.out + result.err
    assert "hidden_fills" not in tables_of(target)


def test_a_non_atomic_down_that_deletes_rows_fails_closed_on_postgresql(make_database, scripts_dir):
    """A scratch copy is empty: rows a down deletes from a live table cannot be counted."""
    target = make_database("postgresql")
    table_script(scripts_dir, "1.0.0", "journal")
    write_script(
        scripts_dir,
        "1.0.1",
        "seed-journal",
        up="db.execute(\"INSERT INTO journal (id, label) VALUES (100, 'seeded')\")",
        down='db.execute("DELETE FROM journal WHERE id >= 100")',
        atomic=False,
    )
    assert tbmigrate("run", database=target).code == 0
    Database(connections[target.alias]).execute("INSERT INTO journal (id, label) VALUES (1, 'u')")
    result = tbmigrate("rollback", "--no-input", database=target)
    assert result.code == 1
    assert "deletes or changes rows of journal (2 row(s) now)" in result.err
    assert "fails closed" in result.out
    forced = tbmigrate("rollback", "--no-input", "--force", database=target)
    assert forced.code == 0, forced.err
    assert Database(connections[target.alias]).scalar("SELECT COUNT(*) FROM journal") == 1


# -- a database tbmigrate adopted: tables no script made ---------------------------------
@pytest.fixture
def adopted(target, scripts_dir):
    """``trades`` (3 rows) made by hand, no script knows it; 1.0.0 (atomic = False) adds
    ``trades.fee`` and indexes it, its down drops both; 2 fees are filled in."""
    concurrently = target.vendor == "postgresql"
    Database(connections[target.alias]).execute(
        "CREATE TABLE trades (id INTEGER PRIMARY KEY, qty INTEGER)"
    )
    write_script(
        scripts_dir,
        "1.0.0",
        "trade-fee",
        up=(
            'db.add_column("trades", "fee", "INTEGER")\n'
            f'db.create_index("trades", ["fee"], name="trades_fee", concurrently={concurrently})'
        ),
        down=(
            f'db.drop_index("trades_fee", concurrently={concurrently})\n'
            'db.drop_column("trades", "fee")'
        ),
        atomic=False,
    )
    db = Database(connections[target.alias])
    for n in range(3):
        db.execute("INSERT INTO trades (id, qty) VALUES (%s, %s)", [n + 1, n])
    assert tbmigrate("run", database=target).code == 0
    db.execute("UPDATE trades SET fee = id * 10 WHERE id <= 2")
    return target


def test_a_non_atomic_down_on_an_adopted_table_is_measured_and_refused(adopted):
    """The preview meets the live schema (on PostgreSQL a scratch copy of it; on SQLite a
    backup copy): the column the down drops is named with its values, and nothing goes
    without --force.  Replaying the scripts on an empty database could not even build
    1.0.0 (no trades there), and the rollback used to go through on that."""
    before = unchanged(adopted)
    for command in (
        ("rollback", "--to", "0", "--dry-run"),
        ("rollback", "--to", "0", "--no-input"),
    ):
        result = tbmigrate(*command, database=adopted)
        assert result.code == 1, result.out + result.err
        failures = [c[2] for c in checks(result, "FAIL")]
        assert any(
            "column trades.fee would be dropped with its 2 non-null value(s)" in f for f in failures
        ), result.out
    assert unchanged(adopted) == before and applied(adopted) == ["1.0.0"]
    forced = tbmigrate("rollback", "--to", "0", "--no-input", "--force", database=adopted)
    assert forced.code == 0, forced.out + forced.err
    assert applied(adopted) == [] and "trades" in tables_of(adopted)


def test_without_pg_dump_a_preview_that_cannot_be_built_fails_closed(adopted, settings):
    """No pg_dump: the applied scripts are replayed instead, and 1.0.0 cannot be built on an
    empty database; what the down would destroy is unknown, so the rollback is refused
    (it used to be a non-blocking 'down fails' and went on, dropping trades.fee)."""
    settings.TBMIGRATE_PG_DUMP = "/nonexistent/pg_dump"
    before = unchanged(adopted)
    result = tbmigrate("rollback", "--to", "0", "--no-input", database=adopted)
    assert result.code == 1, result.out + result.err
    if adopted.vendor == "postgresql":
        assert "could not be previewed on a scratch copy of the schema" in result.out
        assert 'relation "trades" does not exist' in result.out
        # 1.0.0 is non-atomic: the advice for one that failed (repair) is the live
        # database's, not the scratch copy's
        assert "1.0.0 trade-fee failed to apply" in result.out
        assert "on a scratch database, thrown away after" in result.out
        assert "tbmigrate repair" not in result.out + result.err
    else:  # SQLite's copy is a backup of the file: pg_dump plays no part
        assert "column trades.fee would be dropped with its 2 non-null value(s)" in result.out
    assert unchanged(adopted) == before and applied(adopted) == ["1.0.0"]
