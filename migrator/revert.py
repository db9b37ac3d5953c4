"""Carrying out a rollback, and previewing one: the same code, so the two always agree.

Before anything is reverted, a rollback must name every table, column and row count it
would destroy, and refuse without ``--force``.  Running every ``down`` once to find out
and once more to do it would cost two passes; instead the preview *is* the rollback:

- **One pass** (every step atomic, and the database rolls DDL back): all the downs run
  in ONE transaction, each writing its own history change and audit event, while a
  ``LossMeter`` counts what each destructive statement is about to destroy.  Then the
  losses are judged (``validation/rollback.py``): refused (or a preview: ``validate
  rollback``, ``rollback --dry-run``), the transaction is undone and nothing was
  reverted; allowed, it commits.  A rollback is therefore all or nothing.  A person at
  a terminal is asked only after seeing the verdict, so there the pass runs twice:
  once undone, to show it, and once for real (nobody holds locks while a human thinks).
- **Preview on a copy** (some step is ``atomic = False``: it cannot run inside a
  transaction that is undone): SQLite — the real rollback runs on an online-backup copy
  of the file and is measured there; PostgreSQL — the live schema is copied, no rows,
  into a scratch database (the applied scripts replayed there where it cannot be), the
  downs run on it, and what they drop is counted on the live database.  What the copy
  cannot tell (rows a ``down`` deletes from a table that is empty in the scratch copy; a
  down that fails there; a scratch database that cannot be built) fails closed.  Then
  the steps are reverted one by one as usual.

Both return a ``Report`` with the ``data_loss`` checks and the guards.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connections

from migrator import conf, history, redact, targets, timeouts, vendors
from migrator.errors import MigrationFailed, MigratorError
from migrator.executor import Executor, Progress, StepResult
from migrator.planner import MigrationState, Plan
from migrator.validation import rollback as judge
from migrator.validation.base import Report
from migrator.validation.loss import Loss, LossMeter, Measured, count_now, read_columns


@dataclass
class Pass:
    """A rollback pass: its verdict, its steps (when kept), whether it committed."""

    report: Report
    steps: list[StepResult] = field(default_factory=list)
    kept: bool = False
    measured: Measured | None = None


class _Statements:
    """The statements the downs ran, for the report's details (first N kept)."""

    def __init__(self) -> None:
        self.limit = int(conf.get("MAX_STATEMENTS_KEPT"))
        self.kept: list[dict[str, Any]] = []
        self.count = 0
        self.step = ""

    def __call__(self, execute, sql, params, many, context):
        if '"tbmigrate_' not in str(sql):
            self.count += 1
            if len(self.kept) < self.limit:
                self.kept.append({"step": self.step, "sql": redact.scrub(str(sql))})
        return execute(sql, params, many, context)


class _Undo(Exception):
    """Undo the pass's transaction (a preview, a refusal, or losses to count again)."""


def needs_copy(alias: str, steps: Sequence[MigrationState]) -> bool:
    """Whether the rollback must be previewed on a copy (a step cannot run inside a
    transaction that is undone)."""
    vendor = vendors.of(connections[alias])
    return not vendor.can_rollback_ddl or any(
        s.script is not None and not s.script.atomic for s in steps
    )


def report_for(alias: str, steps: Sequence[MigrationState]) -> Report:
    target = str(min(s.version for s in steps)) if steps else None
    return Report("rollback", targets.describe(alias), targets.vendor(alias), target)


# -- one pass ----------------------------------------------------------------------------
def one_pass(
    alias: str,
    steps: Sequence[MigrationState],
    *,
    guard_results: list[Any],
    keep: Callable[[Report], bool],
    step_timeouts: timeouts.StepTimeouts | None = None,
    progress: Progress | None = None,
    lock: Any = None,
    busy_seconds: float | None = None,
    script_output: Any = None,
) -> Pass:
    """Revert ``steps`` (newest first) in one transaction, measured; ``keep(report)``
    decides, inside it, whether it commits.  A failing step raises ``MigrationFailed``
    after the transaction is undone (and its failure audited)."""
    preload: list[str] = []
    counted: list[Loss] = []
    for attempt in (1, 2):
        result = _pass(
            alias,
            steps,
            guard_results,
            keep,
            preload,
            counted,
            attempt == 2,
            step_timeouts,
            progress,
            lock,
            busy_seconds,
            script_output,
        )
        measured = result.measured
        if result.kept or measured is None or not measured.unmeasured or attempt == 2:
            return result
        # Something went that no statement named (a DO block, a function, a cascade):
        # the transaction is undone and it is back, so count it now, and go again with
        # it counted beforehand (once: a second miss is judged as it stands).
        connection = connections[alias]
        counted = [count_now(connection, loss) for loss in measured.unmeasured]
        preload = sorted({loss.table for loss in measured.unmeasured})
    return result


def _pass(
    alias: str,
    steps: Sequence[MigrationState],
    guard_results: list[Any],
    keep: Callable[[Report], bool],
    preload: list[str],
    counted: list[Loss],
    final: bool,
    step_timeouts: timeouts.StepTimeouts | None,
    progress: Progress | None,
    lock: Any,
    busy_seconds: float | None,
    script_output: Any,
) -> Pass:
    told = progress or Progress()
    executor = Executor(
        alias,
        Progress(on_message=told.on_message),
        step_timeouts,
        lock=lock,
        busy_seconds=busy_seconds,
        script_output=script_output,
    )
    statements = _Statements()
    done: list[StepResult] = []
    outcome = Pass(report_for(alias, steps))
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(executor.one_transaction())
            meter = LossMeter(connections[alias], preload=preload)
            stack.enter_context(executor.wrapping(meter))
            stack.enter_context(executor.wrapping(statements))
            for state in steps:
                assert state.script is not None
                meter.step = statements.step = state.label
                done.append(executor.revert(state.script))
            measured = meter.measure()
            _merge_counted(measured, counted)
            outcome.measured = measured
            outcome.report.add(
                judge.data_loss(
                    measured,
                    steps,
                    statements=statements.kept,
                    statement_count=statements.count,
                    how="run" if not measured.unmeasured else "tried and rolled back",
                )
            )
            outcome.report.add(guard_results)
            if (measured.unmeasured and not final) or not keep(outcome.report):
                raise _Undo()
        outcome.kept = True
        outcome.steps = done
    except _Undo:
        outcome.kept = False
        _reword_preview(outcome.report)
    finally:
        executor.close()
    return outcome


def _merge_counted(measured: Measured, counted: list[Loss]) -> None:
    """Losses counted after an earlier pass replace the ones that pass could not count."""
    for loss in counted:
        measured.losses = [
            m
            for m in measured.losses
            if not (m.kind == "unmeasured" and m.table == loss.table and m.column == loss.column)
        ]
        measured.losses.append(loss)


def _reword_preview(report: Report) -> None:
    """A pass that was undone ran its statements and rolled them back: say so."""
    for i, result in enumerate(report.results):
        if result.name == "data_loss" and "statement(s) run)" in result.message:
            report.results[i] = type(result)(
                result.name,
                result.level,
                result.message.replace("statement(s) run)", "statement(s) tried and rolled back)"),
                result.details,
            )


# -- previews (validate rollback, rollback --dry-run) ----------------------------------------
def preview(alias: str, plan: Plan, states: Sequence[MigrationState]) -> Pass:
    """The verdict the rollback of ``plan`` would reach now, keeping nothing."""
    steps = list(plan.steps)
    locked = _sqlite_write_lock(alias)
    if locked is not None:
        report = report_for(alias, steps)
        report.add(locked)
        report.add(judge.guards(alias, steps))
        return Pass(report)
    guard_results = judge.guards(alias, steps)
    if needs_copy(alias, steps):
        return on_copy(alias, steps, states, guard_results)
    limits = timeouts.StepTimeouts(
        lock_timeout=float(conf.get("PREFLIGHT_LOCK_TIMEOUT")),
        statement_timeout=_statement_timeout(),
    )
    try:
        return one_pass(
            alias,
            steps,
            guard_results=guard_results,
            keep=lambda report: False,
            step_timeouts=limits,
            busy_seconds=float(conf.get("PREFLIGHT_LOCK_TIMEOUT")),
        )
    except MigrationFailed as exc:
        return Pass(_failed_preview(alias, steps, exc, guard_results))


def _failed_preview(
    alias: str, steps: Sequence[MigrationState], exc: MigrationFailed, guard_results: list[Any]
) -> Report:
    report = report_for(alias, steps)
    step = exc.step
    label = f"{getattr(step, 'version', '')} {getattr(step, 'name', '')}".strip()
    error = str(getattr(step, "error", "") or exc)
    cause = exc.__cause__
    vendor = vendors.of(connections[alias])
    if cause is not None and vendor.is_lock_timeout(cause):
        report.add(judge.lock_waited(label, error, []))
    else:
        report.add(judge.down_fails(label, error, []))
    report.add(guard_results)
    return report


def _statement_timeout() -> float | None:
    value = conf.get("PG_STATEMENT_TIMEOUT")
    return float(value) if value else None


def _sqlite_write_lock(alias: str) -> Any:
    """A FAIL when another process holds SQLite's write lock (the preview would wait)."""
    from migrator.validation.preflight import sqlite_write_lock

    found = sqlite_write_lock(alias)
    if found is None or found.level != "FAIL":
        return None
    return found


# -- on a copy ---------------------------------------------------------------------------
def on_copy(
    alias: str,
    steps: Sequence[MigrationState],
    states: Sequence[MigrationState],
    guard_results: list[Any],
) -> Pass:
    """Measure the rollback on a copy: SQLite's online backup, or a PostgreSQL scratch
    database holding the live schema; what the copy cannot tell fails closed."""
    report = report_for(alias, steps)
    try:
        if targets.vendor(alias) == "sqlite":
            measured, count, statements, unpreviewable = _on_sqlite_copy(alias, steps)
        else:
            measured, count, statements, unpreviewable = _on_scratch(alias, steps, states)
    except MigrationFailed as exc:
        if targets.vendor(alias) == "sqlite":
            # a copy with every row: the real down fails the same way, and its own
            # failure (audited with its traceback) stops the rollback
            return Pass(_failed_preview(alias, steps, exc, guard_results))
        # An empty scratch copy: what failed there proves nothing of the live database,
        # and what the downs would destroy was not seen, so the rollback fails closed.
        measured, count, statements = Measured(), 0, []
        unpreviewable = [
            "the rollback could not be previewed on a scratch copy of the schema (no rows): "
            f"{redact.scrub(str(exc))}"
        ]
    except (MigratorError, DatabaseError, OSError, sqlite3.Error) as exc:
        measured, count, statements = Measured(), 0, []
        unpreviewable = [f"the rollback could not be previewed: {redact.scrub(str(exc))}"]
    report.add(
        judge.data_loss(
            measured,
            steps,
            statements=statements,
            statement_count=count,
            how="run on a copy",
            unpreviewable=unpreviewable,
        )
    )
    report.add(guard_results)
    return Pass(report, measured=measured)


def _run_measured(
    alias: str, steps: Sequence[MigrationState], preload: Sequence[str] = ()
) -> tuple[Measured, _Statements]:
    executor = Executor(alias, Progress(), timeouts.StepTimeouts())
    meter = LossMeter(connections[alias], preload=list(preload))
    statements = _Statements()
    try:
        with executor.wrapping(meter), executor.wrapping(statements):
            for state in steps:
                assert state.script is not None
                meter.step = statements.step = state.label
                executor.revert(state.script)
        return meter.measure(), statements
    finally:
        executor.close()


def _on_sqlite_copy(
    alias: str, steps: Sequence[MigrationState]
) -> tuple[Measured, int, list[dict[str, Any]], list[str]]:
    with _sqlite_copy(alias) as copy:
        measured, statements = _run_measured(copy, steps)
    # What vanished without being named is still there on the live database: count it.
    live = connections[alias]
    _merge_counted(measured, [count_now(live, loss) for loss in measured.unmeasured])
    return measured, statements.count, statements.kept, []


@contextlib.contextmanager
def _sqlite_copy(alias: str) -> Iterator[str]:
    """An online-backup copy of the SQLite file, registered as an alias; removed after."""
    source = targets.sqlite_path(alias)
    assert source is not None
    folder = Path(tempfile.mkdtemp(prefix="tbmigrate-preview-", dir=source.parent))
    name = f"tbmigrate_preview_{folder.name[-8:]}"
    try:
        destination = folder / source.name
        with (
            contextlib.closing(sqlite3.connect(str(source))) as live,
            contextlib.closing(sqlite3.connect(str(destination))) as copy,
        ):
            live.backup(copy)
        targets.add(name, {"ENGINE": "django.db.backends.sqlite3", "NAME": str(destination)})
        yield name
    finally:
        targets.remove(name)
        shutil.rmtree(folder, ignore_errors=True)


def _on_scratch(
    alias: str, steps: Sequence[MigrationState], states: Sequence[MigrationState]
) -> tuple[Measured, int, list[dict[str, Any]], list[str]]:
    """PostgreSQL: copy the live schema (no rows) into a scratch database, or where that
    cannot be done replay the applied scripts there; run the downs there, and count on
    the live database what they dropped."""
    from migrator.validation.scratch import copy_live_schema, replay, scratch_database

    applied = [s for s in states if s.is_applied and s.record is not None and s.script]
    applied.sort(key=lambda s: (s.record.applied_at, s.version))  # type: ignore[union-attr]
    with scratch_database(alias) as scratch:
        if copy_live_schema(alias, scratch):
            replay(scratch, [s.script for s in applied])  # type: ignore[misc]
        else:  # the schema is there; the history the downs journal on is not
            for state in applied:
                assert state.script is not None
                history.record_unrun(scratch, state.script)
        measured, statements = _run_measured(scratch, steps)
    live = connections[alias]
    columns = read_columns(live, set())
    counted: list[Loss] = []
    for loss in measured.losses:
        if loss.table not in columns:
            continue
        if loss.kind in ("table", "unmeasured") and loss.column is None:
            counted.append(count_now(live, Loss("unmeasured", loss.table, by=loss.by)))
        elif loss.column is not None:
            found = count_now(live, Loss("unmeasured", loss.table, column=loss.column, by=loss.by))
            default = next((c.default for c in columns[loss.table] if c.name == loss.column), None)
            counted.append(
                Loss(
                    "column",
                    loss.table,
                    _not_default(live, loss.table, loss.column, default, found.count),
                    column=loss.column,
                    values=found.count,
                    default=default,
                    by=loss.by,
                )
            )
    measured.losses = [loss for loss in measured.losses if loss.kind == "rows"] + counted
    unpreviewable = []
    for table, step in sorted(measured.written.items()):
        if table in columns and table not in measured.dropped_tables:
            rows = count_now(live, Loss("unmeasured", table)).count
            if rows:
                unpreviewable.append(
                    f"the down of {step} deletes or changes rows of {table} ({rows} row(s) now), "
                    "which a preview on an empty scratch database cannot count"
                )
    measured.losses = [loss for loss in measured.losses if loss.kind != "rows"]
    return measured, statements.count, statements.kept, unpreviewable


def _not_default(connection: Any, table: str, column: str, default: str | None, values: int) -> int:
    from migrator.validation.loss import _literal, _raw_one

    literal = _literal(default)
    if literal is None or not values:
        return values
    q = connection.ops.quote_name
    row = _raw_one(
        connection,
        f"SELECT COUNT(*) FROM {q(table)} WHERE {q(column)} IS NOT NULL AND {q(column)} <> "
        f"{literal}",
    )
    return int(row[0] or 0)
