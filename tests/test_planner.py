"""The planner alone: scripts and history rows in, states and plans out, no database.

As Alembic's version-traversal tests do, these build the inputs by hand (``Script``
and ``Record`` values) and check every rule of ``migrator.planner`` without a
connection, a file or a lock.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from migrator import planner
from migrator.errors import HistoryConflict, RollbackRefused, UsageError
from migrator.history import Record
from migrator.scripts import Script
from migrator.states import STATES, RecordStatus, State
from migrator.versions import Version

WHEN = datetime(2026, 12, 1, 19, 46, 17, tzinfo=UTC)


def script(version: str, *, down: bool = True, phase: str = "expand", checksum: str = "") -> Script:
    v = Version.parse(version)
    return Script(
        version=v,
        name=f"s{v.patch}",
        description="",
        path=Path(f"/scripts/{version}.py"),
        checksum=checksum or f"sum-{version}",
        up=lambda db: None,
        down=(lambda db: None) if down else None,
        phase=phase,
    )


def record(version: str, status: str = "applied", *, checksum: str = "", **extra: object) -> Record:
    v = Version.parse(version)
    return Record(
        v,
        f"s{v.patch}",
        "",
        checksum or f"sum-{version}",
        status,
        WHEN,
        1.0,
        "alice",
        "box",
        "",
        **extra,  # type: ignore[arg-type]
    )


def test_states_merge_scripts_and_records_in_version_order():
    found = planner.states(
        [script("1.0.10"), script("1.0.9"), script("1.0.2", checksum="edited")],
        [record("1.0.2"), record("1.0.1"), record("1.0.9")],
    )
    assert [(str(s.version), s.state) for s in found] == [
        ("1.0.1", State.MISSING),
        ("1.0.2", State.CHANGED),
        ("1.0.9", State.APPLIED),
        ("1.0.10", State.PENDING),
    ]


def test_an_in_progress_record_is_interrupted_unless_someone_holds_the_lock():
    rows = [record("1.0.0", RecordStatus.IN_PROGRESS, direction="up", started_at=WHEN, pid=42)]
    (alone,) = planner.states([script("1.0.0")], rows)
    assert alone.state == State.INTERRUPTED and not alone.is_applied
    (busy,) = planner.states([script("1.0.0")], rows, running=True)
    assert busy.state == State.RUNNING
    phrase = planner.describe_problem(alone)
    assert "interrupted while applying" in phrase and "pid 42" in phrase
    assert "2026-12-01 19:46:17 UTC" in phrase and "alice on box" in phrase


def test_a_pending_version_older_than_the_newest_applied_one_is_out_of_order():
    found = planner.states([script("1.0.0"), script("1.0.1"), script("1.0.2")], [record("1.0.2")])
    assert [s.out_of_order for s in found] == [True, True, False]
    plan = planner.plan_run(found)
    assert not plan.ok and isinstance(plan.refusal(), HistoryConflict)
    assert "--out-of-order" in plan.refusals[0].message
    assert planner.plan_run(found, out_of_order=True).labels == ["1.0.0 s0", "1.0.1 s1"]


def test_run_plans_pending_scripts_up_to_the_target():
    found = planner.states([script(f"1.0.{i}") for i in range(4)], [record("1.0.0")])
    plan = planner.plan_run(found, to="1.0.2")
    assert plan.ok and plan.direction == "up"
    assert plan.labels == ["1.0.1 s1", "1.0.2 s2"] and plan.target == "1.0.2"
    unknown = planner.plan_run(found, to="9.9.9")
    assert isinstance(unknown.refusal(), UsageError) and unknown.steps == ()
    assert "no migration 9.9.9" in unknown.refusals[0].message


def test_run_refuses_while_a_problem_state_exists_and_says_how_to_fix_each():
    found = planner.states(
        [script("1.0.0", checksum="edited"), script("1.0.2")],
        [record("1.0.0"), record("1.0.1"), record("1.0.2", RecordStatus.FAILED)],
    )
    plan = planner.plan_run(found)
    message = plan.refusals[0].message
    assert isinstance(plan.refusal(), HistoryConflict)
    assert "1.0.0 s0 was edited" in message and "1.0.1 s1 is applied but its script" in message
    assert "repair --checksums" in message and "repair --missing" in message
    assert "repair VERSION" in message


def test_phase_expand_stops_before_the_first_contract_script():
    found = planner.states(
        [script("1.0.0"), script("1.0.1", phase="contract"), script("1.0.2")], []
    )
    assert planner.plan_run(found, phase="expand").labels == ["1.0.0 s0"]
    assert planner.plan_run(found).labels == ["1.0.0 s0", "1.0.1 s1", "1.0.2 s2"]


def test_rollback_plans_newest_first_and_says_where_the_database_lands():
    found = planner.states(
        [script(f"1.0.{i}") for i in range(4)], [record(f"1.0.{i}") for i in range(4)]
    )
    assert planner.plan_rollback(found).labels == ["1.0.3 s3"]
    plan = planner.plan_rollback(found, version="1.0.1")
    assert plan.labels == ["1.0.3 s3", "1.0.2 s2", "1.0.1 s1"] and plan.target == "1.0.0"
    assert planner.plan_rollback(found, to="1.0.2").labels == ["1.0.3 s3"]
    everything = planner.plan_rollback(found, to="0")
    assert len(everything.steps) == 4 and everything.target == "0"
    both = planner.plan_rollback(found, version="1.0.1", to="1.0.0")
    assert isinstance(both.refusal(), UsageError)


def test_rollback_refuses_a_step_without_down_and_a_version_not_applied():
    found = planner.states([script("1.0.0"), script("1.0.1", down=False)], [record("1.0.1")])
    plan = planner.plan_rollback(found)
    assert (
        isinstance(plan.refusal(), RollbackRefused) and "has no down()" in plan.refusals[0].message
    )
    not_applied = planner.plan_rollback(found, version="1.0.0")
    assert isinstance(not_applied.refusal(), UsageError)
    assert "not applied" in not_applied.refusals[0].message


def test_repair_clears_failed_and_interrupted_records_only():
    found = planner.states(
        [script("1.0.0"), script("1.0.1"), script("1.0.2")],
        [
            record("1.0.0"),
            record("1.0.1", RecordStatus.FAILED),
            record("1.0.2", RecordStatus.IN_PROGRESS, direction="down", started_at=WHEN),
        ],
    )
    assert [s.kind for s in planner.plan_repair(found, "1.0.1").steps] == [planner.CLEAR_FAILED]
    (step,) = planner.plan_repair(found, "1.0.2").steps
    assert "interrupted" in step.summary
    refused = planner.plan_repair(found, "1.0.0")
    assert isinstance(refused.refusal(), UsageError) and "not failed" in refused.refusals[0].message
    assert isinstance(planner.plan_repair(found).refusal(), UsageError)
    running = planner.states([script("1.0.2")], [found[2].record], running=True)  # type: ignore[list-item]
    assert isinstance(planner.plan_repair(running, "1.0.2").refusal(), HistoryConflict)


@pytest.mark.parametrize("state", list(State))
def test_every_state_says_whether_it_is_applied_a_problem_and_what_to_do(state):
    meaning = state.meaning
    assert meaning.summary and meaning.style in ("SUCCESS", "WARNING", "ERROR", "NOTICE")
    assert (meaning.fix != "") == (state.is_problem or state == State.PENDING)


def test_the_status_json_schema_lists_exactly_the_states_of_the_type():
    schema = json.loads(
        (Path(__file__).parent.parent / "migrator/schemas/status.schema.json").read_text()
    )
    found: list[list[str]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "enum" in node and "pending" in node["enum"]:
                found.append(node["enum"])
            if node.get("required") and "interrupted" in node["required"]:
                found.append(node["required"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    assert found and all(names == [str(s) for s in STATES] for names in found)
