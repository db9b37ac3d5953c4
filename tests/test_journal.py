"""Non-atomic steps are journaled before they run: killed or stopped at any point, the
record tells the truth, and after `repair` the next run reaches head with the right data.

Real processes, real signals, both databases.  Each trial starts `tbmigrate` as its own
process on a fresh database, watches the table from another connection, and kills the
process once the backfill has got to a chosen point (a loop over points through the
step, not one lucky timing).
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from migrator import history
from tests.conftest import rows, tbmigrate, write_script
from tests.test_concurrency import finish, start

pytestmark = pytest.mark.slow

ROWS = 300
BATCH = 10
# Rows done when the signal is sent: 0 means as soon as the step's journal row appears.
UP_POINTS = (0, 40, 150, 260)
DOWN_POINTS = (0, 60, 170, 280)


def scripts(folder, *, pause: float = 0.03):
    """1.0.0 makes `fills` with ROWS rows; 1.0.1 backfills `cents` in batches outside a
    transaction (its down empties it again, in batches); 1.0.2 is an ordinary step."""
    write_script(
        folder,
        "1.0.0",
        "fills",
        up=f"""
        db.execute(
            "CREATE TABLE fills (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL, cents INTEGER)"
        )
        for start in range(1, {ROWS} + 1, 100):
            db.execute(
                "INSERT INTO fills (id, amount) SELECT n, n FROM ("
                + " UNION ALL ".join(f"SELECT {{i}} AS n" for i in range(start, start + 100))
                + ") AS numbers"
            )
        """,
        down='db.execute("DROP TABLE fills")',
    )
    write_script(
        folder,
        "1.0.1",
        "backfill-cents",
        atomic=False,
        up=f'db.batched_update("fills", "cents = amount * 100", "cents IS NULL", '
        f"batch_size={BATCH}, pause={pause})",
        down=f'db.batched_update("fills", "cents = NULL", "cents IS NOT NULL", '
        f"batch_size={BATCH}, pause={pause})",
    )
    write_script(
        folder,
        "1.0.2",
        "after",
        up='db.execute("CREATE TABLE after_backfill (id INTEGER PRIMARY KEY)")',
        down='db.execute("DROP TABLE after_backfill")',
    )


def done_rows(database) -> int:
    return rows(database, "SELECT COUNT(*) FROM fills WHERE cents IS NOT NULL")[0][0]


def record_of(database, version="1.0.1"):
    found = [r for r in history.load(database.alias) if str(r.version) == version]
    return found[0] if found else None


def wait_for_point(database, process, *, up: bool, rows_done: int, timeout: float = 60):
    """Return once the step has journaled itself and reached ``rows_done`` (up) or undone
    ``rows_done`` (down); fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the process ended before the point:\n{out}\n{err}")
        try:
            record = record_of(database)
            count = done_rows(database)
        except Exception:  # the table or our tables do not exist yet
            time.sleep(0.005)
            continue
        journaled = record is not None and record.status == "in_progress"
        reached = count >= rows_done if up else ROWS - count >= rows_done
        if journaled and reached:
            return
        time.sleep(0.005)
    raise AssertionError("the point was never reached")


def assert_truthful(database, *, up: bool) -> str:
    """The record says exactly what happened; returns what it says."""
    record = record_of(database)
    count = done_rows(database)
    if record is None:
        # Never journaled (killed before it began), or a down that finished.
        assert count == 0, count
        return "none"
    if record.status == "applied":
        assert count == ROWS, "recorded as applied, but the backfill is not complete"
        return "applied"
    assert record.status == "in_progress", record.status
    assert record.direction == ("up" if up else "down")
    assert record.pid and record.started_at
    updates = (record.progress or {}).get("updates", [])
    recorded = updates[0]["rows_done"] if updates else 0
    # The progress is written in each batch's own transaction: it is exactly what committed.
    assert recorded == (count if up else ROWS - count), (recorded, count)
    return "in_progress"


def assert_interrupted_status(database):
    """What every command says of an interrupted step (in this process: quicker)."""
    data = json.loads(tbmigrate("status", "--json", database=database).out)
    (state,) = [m["state"] for m in data["migrations"] if m["version"] == "1.0.1"]
    assert state == "interrupted"
    assert tbmigrate("status", "--check", database=database).code == 1
    refused = tbmigrate("run", "--no-input", database=database)
    assert refused.code == 1 and "was interrupted while" in refused.err
    assert "tbmigrate repair VERSION" in refused.err
    check = tbmigrate("validate", "schema", database=database)
    assert check.code == 1 and "FAIL  history.interrupted" in check.out


def recover_and_finish(database):
    repaired = tbmigrate("repair", "1.0.1", "--no-input", database=database)
    assert repaired.code == 0, repaired.err
    done = tbmigrate("run", "--no-input", database=database)
    assert done.code == 0, done.out + done.err
    assert rows(database, "SELECT COUNT(*) FROM fills WHERE cents = amount * 100") == [(ROWS,)]
    assert tbmigrate("status", "--check", database=database).code == 0


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_non_atomic_up_stopped_at_any_point_is_recorded_truthfully(
    vendor, make_database, tmp_path, settings, how
):
    outcomes = []
    for point in UP_POINTS:
        database = make_database(vendor)
        folder = tmp_path / f"up-{how}-{point}"
        folder.mkdir()
        scripts(folder)
        settings.TBMIGRATE_SCRIPTS_DIR = str(folder)
        assert tbmigrate("run", "--to", "1.0.0", database=database).code == 0
        process = start("run", "--no-input", database=database, scripts=folder)
        wait_for_point(database, process, up=True, rows_done=point)
        process.send_signal(getattr(signal, how))
        code, out, err = finish(process)
        said = assert_truthful(database, up=True)
        outcomes.append(said)
        if how == "SIGTERM":
            assert code == 143, (code, out, err)
            lines = [line for line in err.strip().splitlines() if line.startswith("CommandError")]
            assert len(lines) == 1 and "interrupted by SIGTERM" in lines[0]
            assert "tbmigrate repair 1.0.1" in lines[0]
            event = history.events(database.alias, limit=2)
            stopped = [e for e in event if e["action"] == "apply"]
            assert stopped and stopped[0]["outcome"] == "interrupted"
            progress = stopped[0]["details"].get("progress") or {"updates": [{"rows_done": 0}]}
            assert progress["updates"][0]["rows_done"] == done_rows(database)
        else:
            assert code == -signal.SIGKILL
        if said == "in_progress":
            if point == UP_POINTS[1]:
                assert_interrupted_status(database)
            left = ROWS - done_rows(database)
            recover_and_finish(database)
            # The rerun resumed after the last committed key instead of walking it again.
            success = next(
                e
                for e in history.events(database.alias)
                if e["action"] == "apply" and e["version"] == "1.0.1" and e["outcome"] == "success"
            )
            updates = [s for s in success["statements"] if s["sql"].startswith("UPDATE")]
            assert len(updates) <= -(-left // BATCH) + 1, (len(updates), left)
        else:
            assert tbmigrate("run", "--no-input", database=database).code == 0
    assert outcomes.count("in_progress") >= len(UP_POINTS) - 1, outcomes


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_non_atomic_down_stopped_at_any_point_is_recorded_truthfully(
    vendor, make_database, tmp_path, settings, how
):
    outcomes = []
    for point in DOWN_POINTS:
        database = make_database(vendor)
        folder = tmp_path / f"down-{how}-{point}"
        folder.mkdir()
        scripts(folder)
        settings.TBMIGRATE_SCRIPTS_DIR = str(folder)
        assert tbmigrate("run", "--no-input", database=database).code == 0
        process = start("rollback", "1.0.1", "--no-input", database=database, scripts=folder)
        wait_for_point(database, process, up=False, rows_done=point)
        process.send_signal(getattr(signal, how))
        code, out, err = finish(process)
        said = assert_truthful(database, up=False)
        outcomes.append(said)
        assert code == (143 if how == "SIGTERM" else -signal.SIGKILL), (code, out, err)
        if said == "in_progress":
            if point == DOWN_POINTS[1]:
                assert_interrupted_status(database)
                refused = tbmigrate("rollback", "--no-input", database=database)
                assert refused.code == 1 and "interrupted" in refused.err
            recover_and_finish(database)
    assert outcomes.count("in_progress") >= len(DOWN_POINTS) - 1, outcomes


def interrupted_events(database) -> list[dict]:
    """The audit events of 1.0.1's interrupted apply (the failure's own event)."""
    return [
        e
        for e in history.events(database.alias)
        if e["action"] == "apply" and e["outcome"] == "interrupted" and str(e["version"]) == "1.0.1"
    ]


def test_sigterm_at_random_moments_never_records_more_than_committed(
    vendor, make_database, tmp_path, settings
):
    """Batches of one row every few milliseconds, and SIGTERM at a random moment of each
    trial: the record and the `interrupted` event's progress (where a rerun resumes)
    both say exactly what committed, never a batch more (a signal can land between a
    batch's progress write and its commit)."""
    import random

    chance = random.Random(20261207)
    for trial in range(6):
        database = make_database(vendor)
        folder = tmp_path / f"random-{trial}"
        folder.mkdir()
        scripts(folder, pause=0.002)
        (path,) = folder.glob("*-1.0.1-*.py")
        path.write_text(path.read_text().replace(f"batch_size={BATCH}", "batch_size=1"))
        settings.TBMIGRATE_SCRIPTS_DIR = str(folder)
        assert tbmigrate("run", "--to", "1.0.0", database=database).code == 0
        process = start("run", "--no-input", database=database, scripts=folder)
        wait_for_point(database, process, up=True, rows_done=0)
        time.sleep(chance.uniform(0, 0.4))
        process.send_signal(signal.SIGTERM)
        code, out, err = finish(process)
        said = assert_truthful(database, up=True)
        if said != "in_progress":
            continue
        assert code == 143, (code, out, err)
        stopped = interrupted_events(database)
        if not stopped:
            # The failure's event could not reach the database within its budget (3 s
            # after a signal) and was spooled, as the run says; the next command writes it.
            assert "audit event was kept in" in err, (out, err, history.events(database.alias))
            assert tbmigrate("status", database=database).code in (0, 1)
            stopped = interrupted_events(database)
        assert len(stopped) == 1, (out, err, history.events(database.alias))
        progress = stopped[0]["details"].get("progress") or {"updates": [{"rows_done": 0}]}
        assert progress["updates"][0]["rows_done"] == done_rows(database)
        recover_and_finish(database)


def test_sigterm_in_an_atomic_step_rolls_it_back_audits_it_and_exits_143(target, tmp_path):
    folder = tmp_path / "scripts"
    folder.mkdir()
    ready = tmp_path / "ready"
    slow = (
        'db.execute("SELECT pg_sleep(30)")'
        if target.vendor == "postgresql"
        # A long statement in SQLite's C code: only the progress handler can stop it.
        else 'db.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c '
        'WHERE x < 1000000000) SELECT COUNT(*) FROM c")'
    )
    write_script(
        folder,
        "1.0.0",
        "slow",
        up=f"""
        db.execute("CREATE TABLE made_by_slow (id INTEGER)")
        open({str(ready)!r}, "w").close()
        {slow}
        """,
        down='db.execute("DROP TABLE made_by_slow")',
    )
    process = start("run", "--no-input", database=target, scripts=folder)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code, out, err = finish(process)
    assert time.monotonic() - sent < 10, "the running statement was not stopped"
    assert code == 143, (code, out, err)
    assert "interrupted by SIGTERM" in err and "rolled back, nothing of it remains" in err
    assert history.load(target.alias) == []
    tables = rows(
        target,
        "SELECT COUNT(*) FROM sqlite_master WHERE name = 'made_by_slow'"
        if target.vendor == "sqlite"
        else "SELECT COUNT(*) FROM pg_class WHERE relname = 'made_by_slow'",
    )
    assert tables == [(0,)]
    (event,) = [e for e in history.events(target.alias) if e["action"] == "apply"]
    assert event["outcome"] == "interrupted" and event["version"] == "1.0.0"


def test_the_deploy_check_reports_an_interrupted_step(target, tmp_path, settings):
    from django.core.checks import run_checks

    folder = tmp_path / "scripts"
    folder.mkdir()
    scripts(folder, pause=0.05)
    settings.TBMIGRATE_SCRIPTS_DIR = str(folder)
    assert tbmigrate("run", "--to", "1.0.0", database=target).code == 0
    process = start("run", "--no-input", database=target, scripts=folder)
    wait_for_point(target, process, up=True, rows_done=30)
    process.send_signal(signal.SIGKILL)
    finish(process)
    found = run_checks(include_deployment_checks=True, databases=[target.alias])
    (error,) = [m for m in found if m.id == "migrator.E007"]
    assert "1.0.1 backfill-cents was interrupted while applying" in error.msg
    assert "rows done" in error.msg
