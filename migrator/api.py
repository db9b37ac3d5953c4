"""``MigrationSystem``: the whole of tbmigrate as a plain Python object.

The management command, CI jobs, custom scripts and the tests all go through this
class (as the seed guide's "custom migration scripts" do)::

    from migrator.api import MigrationSystem

    with MigrationSystem(database="qa") as system:
        print(system.status().summary)
        system.migrate()

It reads (files -> scripts, rows -> history), asks the planner what to do, and has
the executor do it under the migration lock.  It prints nothing: progress goes to
the ``Progress`` callbacks and results come back as values or exceptions from
``migrator.errors``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from django.db import DatabaseError, connections

from migrator import backup as backups
from migrator import (
    conf,
    history,
    locking,
    planner,
    repair,
    revert,
    scripts,
    signals,
    spool,
    targets,
)
from migrator.errors import (
    Aborted,
    DatabaseUnavailable,
    MigrationFailed,
    MigratorError,
    UsageError,
)
from migrator.executor import Executor, Progress, StepResult
from migrator.locking import migration_lock
from migrator.planner import MigrationState, Plan
from migrator.scripts import Script
from migrator.states import STATES, State
from migrator.timeouts import StepTimeouts
from migrator.validation import Report, hazards, roundtrip
from migrator.validation import common as validation_common
from migrator.validation import preflight as validation_preflight
from migrator.validation import rollback as validation_rollback
from migrator.validation import schema as validation_schema

Confirm = Callable[[Sequence[Any]], bool]


@dataclass(frozen=True)
class Status:
    database: str
    vendor: str
    scripts_dir: Path
    migrations: list[MigrationState]
    lock_holder: dict[str, Any] | None = None  # who migrates the database now (None: nobody)

    def count(self, state: str) -> int:
        return sum(1 for m in self.migrations if m.state == state)

    @property
    def clean(self) -> bool:
        """Everything applied and unchanged: what ``status --check`` requires."""
        return all(m.state == State.APPLIED for m in self.migrations)

    @property
    def summary(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in STATES if self.count(s)]
        return f"{len(self.migrations)} migrations: " + (", ".join(parts) or "none")


@dataclass
class RunResult:
    action: str  # run | rollback
    database: str
    planned: list[str] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    dry_run: bool = False
    backup: backups.Backup | None = None
    run_id: str = ""
    target: str | None = None  # where the database lands (rollback: the version left, or "0")
    report: Report | None = None  # rollback: the measured verdict (data loss, guards)

    @property
    def ok(self) -> bool:
        return all(step.outcome == history.SUCCESS for step in self.steps)


class MigrationSystem:
    """Migrations of one database alias (``default``, ``qa``, ``prod`` or one added at run time)."""

    def __init__(
        self,
        database: str = "default",
        *,
        scripts_dir: str | Path | None = None,
        progress: Progress | None = None,
        lock_timeout: float | None = None,
        step_timeouts: StepTimeouts | None = None,
        script_output: TextIO | None = None,
    ) -> None:
        targets.require(database)
        self.alias = database
        # Where a script's print() goes while it runs (None: stdout; the command passes
        # stderr under --json, so stdout stays one JSON document).
        self.script_output = script_output
        self._held: Any = None
        self.scripts_dir = Path(scripts_dir) if scripts_dir else conf.scripts_dir()
        self.progress = progress or Progress()
        self.lock_timeout = float(
            conf.get("LOCK_TIMEOUT") if lock_timeout is None else lock_timeout
        )
        self.step_timeouts = step_timeouts  # None: the PG_* settings, read when a run starts

    # -- context manager ---------------------------------------------------------------
    def __enter__(self) -> MigrationSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        connections[self.alias].close()

    # -- reading -----------------------------------------------------------------------
    @property
    def database(self) -> str:
        """The target as a URL with its password masked."""
        return targets.describe(self.alias)

    @property
    def vendor(self) -> str:
        return targets.vendor(self.alias)

    def scripts(self) -> list[Script]:
        return scripts.load_scripts(self.scripts_dir)

    def history(self) -> list[history.Record]:
        """The history rows; none for a SQLite file that does not exist (yet), which
        reading never creates."""
        if not targets.sqlite_exists(self.alias):
            targets.require_sqlite_folder(self.alias)
            return []
        self._connect()
        return _db(lambda: history.load(self.alias), self.alias)

    def last_failures(self, versions: Sequence[Any]) -> dict[str, tuple[datetime, str]]:
        """The newest failed attempt of each of ``versions`` not followed by a success
        (from the audit log): ``version -> (when, error)``."""
        if not versions or not targets.sqlite_exists(self.alias):
            return {}
        self._connect()
        return _db(
            lambda: history.last_failures(self.alias, [str(v) for v in versions]), self.alias
        )

    def status(self, loaded: list[Script] | None = None) -> Status:
        """Every known version and its state; reads only (creates no tables).  ``loaded``:
        the scripts, when the caller has them already."""
        loaded = self.scripts() if loaded is None else loaded
        records = self.history()
        if records or spool.waiting(self.alias):
            self._drain_spool()
        holder = None
        if targets.sqlite_exists(self.alias):
            # Someone migrating now: a journaled step is being carried out (else its
            # process is gone and it was interrupted), and status says who it is.
            self._connect()
            holder = _db(lambda: locking.is_locked(self.alias), self.alias)
        return Status(
            self.database,
            self.vendor,
            self.scripts_dir,
            planner.states(loaded, records, running=holder is not None),
            holder,
        )

    def plan(self, to: str | None = None, out_of_order: bool = False) -> Plan:
        """What ``migrate(to)`` would apply now (no lock, nothing written)."""
        return planner.plan_run(self.status().migrations, to=to, out_of_order=out_of_order)

    def rollback_plan(self, version: str | None = None, to: str | None = None) -> Plan:
        """What ``rollback(version, to)`` would revert now, newest first."""
        return planner.plan_rollback(self.status().migrations, version=version, to=to)

    # -- changing ----------------------------------------------------------------------
    def migrate(
        self,
        to: str | None = None,
        *,
        fake: bool = False,
        dry_run: bool = False,
        out_of_order: bool = False,
        confirm: Confirm | None = None,
        backup: bool = False,
        phase: str | None = None,
    ) -> RunResult:
        """Apply pending scripts in version order, up to and including ``to``.

        ``backup`` (or the alias in BACKUP_DATABASES) backs the database up first;
        ``phase="expand"`` stops before the first contract script.  Before anything runs
        (the backup included) the lock-hazard gate may refuse the steps
        (``HazardRefused``, see ``_gate``); ``dry_run`` reaches the same verdict.
        """

        def plan(states: list[MigrationState]) -> Plan:
            return planner.plan_run(states, to=to, out_of_order=out_of_order, phase=phase)

        with history.run_context() as run_id:
            result = RunResult("run", self.database, dry_run=dry_run, run_id=run_id)
            if dry_run:
                planned = self._plan_or_refuse("run", plan, audit=False)
                result.planned = planned.labels
                if not fake:
                    self._gate("run", planned, audit=False)
                return result
            with self._changing("run", plan, confirm=confirm, backup=backup) as (steps, backup_now):
                result.planned = steps.labels
                result.target = steps.target
                details: dict[str, Any] = {"to": to, "fake": fake}
                notes: dict[str, dict[str, Any]] = {}
                verdict = None if fake else self._gate("run", steps)
                if verdict is not None and verdict.checked not in ("sqlite", "nothing"):
                    details["hazards"] = verdict.details()
                    notes = verdict.step_notes()
                if steps.steps and backup_now:
                    result.backup = self._backup()
                self._execute(result, steps.scripts, fake=fake, details=details, notes=notes)
            return result

    def rollback(
        self,
        version: str | None = None,
        *,
        to: str | None = None,
        dry_run: bool = False,
        confirm: Confirm | None = None,
        force: bool = False,
        backup: bool = False,
        on_report: Callable[[Report], None] | None = None,
    ) -> RunResult:
        """Revert applied scripts newest first (see ``planner.plan_rollback``).

        Before anything is reverted the rollback is measured (``revert.py``): every table,
        column and row it would destroy, and the guards (``ROLLBACK_GUARDS``); any FAIL
        refuses it unless ``force``.  ``on_report`` receives that report.  ``confirm``
        (a person at a terminal) is asked after it, under the lock; without ``confirm``
        the rollback is its own preview, in one pass.  ``dry_run`` reaches the same
        verdict and keeps nothing (``RollbackRefused`` when the real one would refuse).
        ``backup`` (or the alias in BACKUP_DATABASES) backs the database up first.
        """

        def plan(states: list[MigrationState]) -> Plan:
            return planner.plan_rollback(states, version=version, to=to)

        with history.run_context() as run_id:
            result = RunResult("rollback", self.database, dry_run=dry_run, run_id=run_id)
            if dry_run:
                planned = self._plan_or_refuse("rollback", plan, audit=False)
                result.planned, result.target = planned.labels, planned.target
                if planned.steps:
                    states = self.status().migrations
                    checked = revert.preview(self.alias, planned, states)
                    result.report = checked.report
                    if on_report is not None:
                        on_report(checked.report)
                    refused, _details = validation_rollback.refusal(checked.report, force)
                    if refused is not None:
                        raise refused
                return result
            with self._changing("rollback", plan, confirm=None, backup=backup) as (
                steps,
                backup_now,
            ):
                result.planned, result.target = steps.labels, steps.target
                if steps.steps:
                    details = {"version": version, "to": to}
                    self._revert(result, steps, confirm, force, backup_now, on_report, details)
            return result

    def _revert(
        self,
        result: RunResult,
        plan: Plan,
        confirm: Confirm | None,
        force: bool,
        backup_now: bool,
        on_report: Callable[[Report], None] | None,
        details: dict[str, Any],
    ) -> None:
        """Under the lock: measure, judge, ask, back up, revert (see ``revert.py``)."""
        steps = list(plan.steps)
        guard_results = validation_rollback.guards(self.alias, steps)

        def judged(report: Report) -> dict[str, Any]:
            refused, facts = validation_rollback.refusal(report, force)
            if refused is not None:
                self._audit_refusal("rollback", refused)
                raise refused
            return facts

        def keep(report: Report) -> bool:
            return validation_rollback.refusal(report, force)[0] is None

        if revert.needs_copy(self.alias, steps) or confirm is not None:
            # Measure first without keeping anything: on a copy (steps that cannot run
            # in a transaction that is undone), or because a person must see the verdict
            # before answering.
            if revert.needs_copy(self.alias, steps):
                checked = revert.on_copy(self.alias, steps, self.status().migrations, guard_results)
            else:
                checked = self._one_pass(steps, guard_results, keep=lambda report: False)
            result.report = checked.report
            if on_report is not None:
                on_report(checked.report)
            details.update(judged(checked.report))
            if confirm is not None and not confirm(steps):
                raise Aborted("rollback cancelled; nothing was reverted")
            if backup_now:
                result.backup = self._backup()
            if revert.needs_copy(self.alias, steps):
                self._execute(result, plan.scripts, revert=True, details=details)
                return
            on_report = None  # shown already
        elif backup_now:
            result.backup = self._backup()
        try:
            done = self._one_pass(steps, guard_results, keep=keep)
        except MigrationFailed as exc:
            if isinstance(exc.step, StepResult):
                result.steps.append(exc.step)
            _audit_quietly(
                self.alias,
                "rollback",
                history.FAILURE,
                error=str(exc),
                details={**details, "done": [], "one_transaction": True},
            )
            exc.result = result
            raise
        result.report = result.report or done.report
        if on_report is not None:
            on_report(done.report)
        details.update(judged(done.report))
        for state, step in zip(steps, done.steps, strict=False):
            assert state.script is not None
            self.progress.on_start(step.action, state.script)
            self.progress.on_done(step)
        result.steps.extend(done.steps)
        _audit_quietly(
            self.alias,
            "rollback",
            history.SUCCESS,
            details={**details, "done": _succeeded(result), "one_transaction": True},
        )

    def _one_pass(
        self, steps: list[MigrationState], guard_results: list[Any], keep: Callable[[Report], bool]
    ) -> revert.Pass:
        return revert.one_pass(
            self.alias,
            steps,
            guard_results=guard_results,
            keep=keep,
            step_timeouts=self.step_timeouts,
            progress=self.progress,
            lock=self._held,
            busy_seconds=self.lock_timeout,
            script_output=self.script_output,
        )

    # -- validating (read-only; each writes an audit event) -----------------------------
    # A SQLite file that does not exist yet is validated as the empty database it would
    # be (``targets.empty_stand_in``): validating never creates it.
    def validate_schema(self) -> Report:
        """Drift against the replayed scripts, data integrity, history."""
        with targets.empty_stand_in(self.alias):
            report = validation_schema.validate_schema(self.alias, self.scripts_dir)
        return self._audited(report)

    def validate_migration(self, version: str) -> Report:
        """Preflight of ``run --to version``: target, server, disk, sessions, dry run, lint."""
        with targets.empty_stand_in(self.alias):
            report = validation_preflight.validate_migration(self.alias, self.scripts_dir, version)
        return self._audited(report)

    def validate_rollback(self, version: str) -> Report:
        """Rolling back ``version`` and everything newer: data-loss preview and guards."""
        with targets.empty_stand_in(self.alias):
            report = validation_rollback.validate_rollback(self.alias, self.scripts_dir, version)
        return self._audited(report)

    def validate_scripts(self) -> Report:
        """Round trip of every script on scratch databases; the live database is not used."""
        with targets.empty_stand_in(self.alias):
            report = roundtrip.validate_scripts(self.alias, self.scripts_dir)
        return self._audited(report)

    @staticmethod
    def create(
        version: str,
        name: str,
        description: str = "",
        scripts_dir: str | Path | None = None,
        now: datetime | None = None,
    ) -> Path:
        """Write a new script from the template; return its path."""
        folder = Path(scripts_dir) if scripts_dir else conf.scripts_dir()
        return scripts.create_script(folder, version, name, description, now=now)

    def repair(
        self,
        version: str | None = None,
        *,
        checksums: bool = False,
        missing: bool = False,
        confirm: Confirm | None = None,
    ) -> list[repair.Repaired]:
        """Clear a failed or interrupted record, accept edited scripts, forget missing ones."""

        def plan(states: list[MigrationState]) -> planner.RepairPlan:
            return planner.plan_repair(states, version, checksums=checksums, missing=missing)

        with history.run_context():
            if not self._plan_or_refuse("repair", plan, audit=False).steps:
                return []  # nothing to change: take no lock, create no table
            with self._changing("repair", plan, confirm=confirm, backup=False) as (steps, _):
                return _db(lambda: repair.apply(self.alias, steps.steps), self.alias)

    def backup(self) -> backups.Backup:
        """Back the database up now, under the migration lock (see ``backup.py``)."""
        backups.require_tool(self.alias)
        with history.run_context(), self._locked():
            return backups.take(self.alias)

    # -- internals ---------------------------------------------------------------------
    def _backup(self) -> backups.Backup:
        taken = backups.take(self.alias)
        self.progress.on_message(f"Backed up {self.database} to {scripts.shown(taken.path)}")
        return taken

    def _before_lock(
        self, action: str, backup: bool, confirm: Confirm | None, planned: Sequence[Any]
    ) -> bool:
        """What must be settled before the lock is taken: that a wanted backup can be made,
        and the user's answer (nobody holds the lock while a human thinks, and a refusal
        without a terminal leaves the database exactly as it was)."""
        take_backup = backups.wanted(self.alias, backup)
        if take_backup:
            backups.require_tool(self.alias)
        if planned and confirm is not None and not confirm(planned):
            raise Aborted(f"{action} cancelled; nothing was changed")
        return take_backup

    def _plan_or_refuse(
        self,
        action: str,
        plan: Callable[[list[MigrationState]], Any],
        states: list[MigrationState] | None = None,
        *,
        audit: bool = True,
    ) -> Any:
        """The plan for the current states; its first refusal raised (and audited, except
        bad usage, which leaves the database exactly as it was)."""
        planned = plan(self.status().migrations if states is None else states)
        refusal = planned.refusal()
        if refusal is not None:
            if audit:
                self._audit_refusal(action, refusal)
            raise refusal
        return planned

    @contextlib.contextmanager
    def _changing(
        self,
        action: str,
        plan: Callable[[list[MigrationState]], Any],
        *,
        confirm: Confirm | None,
        backup: bool,
    ) -> Iterator[tuple[Any, bool]]:
        """The one sequence of every command that changes the database: plan without the
        lock (bad usage and refusals change nothing, not even our tables), settle the
        backup and the user's answer, take the lock, plan again under it (another run
        may have got there first) and refuse steps the user was not asked about; the
        body then carries out the plan it is given, with the lock held."""
        loaded = self.scripts()  # every script must load before anything runs; once
        first = self._plan_or_refuse(action, plan, self.status(loaded).migrations)
        take_backup = self._before_lock(action, backup, confirm, first.steps)
        with self._locked():
            states = planner.states(loaded, history.load(self.alias))
            again = self._plan_or_refuse(action, plan, states)
            _still_as_confirmed(confirm, again.steps, first.steps)
            yield again, take_backup

    def _gate(self, action: str, plan: Plan, *, audit: bool = True) -> hazards.Verdict | None:
        """The lock-hazard gate (``validation/hazards.py``) on the steps of ``plan``, before
        the first of them runs: a refusal is raised (and audited); the hazards the scripts
        accept are said.  Costs one catalog query when no table is large."""
        if not plan.steps:
            return None

        def applied() -> list[Script]:
            states = planner.states(self.scripts(), history.load(self.alias))
            return [s.script for s in states if s.is_applied and s.script is not None]

        verdict = hazards.assess(self.alias, plan.scripts, applied)
        refusal = verdict.refusal(action, str(plan.steps[-1].version))
        if refusal is not None:
            if audit:
                self._audit_refusal(action, refusal)
            raise refusal
        for finding in verdict.accepted:
            self.progress.on_message(
                f"  {finding.step} accepts the lock hazard {finding.hazard} on {finding.table} "
                f"({finding.size}): {finding.accepted}"
            )
        for note in verdict.partial:
            self.progress.on_message(
                f"  note: {note}; the lock-hazard gate did not see what it runs after that"
            )
        return verdict

    def _audited(self, report: Report) -> Report:
        """Record a validation where tbmigrate's tables exist; validating creates nothing."""
        outcome = history.SUCCESS if report.ok else history.FAILURE
        try:
            if validation_common.exists(self.alias) and history.tables_exist(self.alias):
                details = {k: v for k, v in report.as_dict().items() if k != "database"}
                history.audit(
                    self.alias, "validate", outcome, version=report.target or "", details=details
                )
        except DatabaseError:
            connections[self.alias].close()
        return report

    def _audit_refusal(self, action: str, exc: MigratorError) -> None:
        """Record a refusal of the history's state; bad usage leaves the database as it was."""
        if isinstance(exc, UsageError) or not targets.sqlite_exists(self.alias):
            return
        try:
            if history.tables_exist(self.alias):
                history.audit(
                    self.alias,
                    action,
                    history.REFUSED,
                    error=str(exc),
                    details=getattr(exc, "details", None),
                )
        except DatabaseError:
            connections[self.alias].close()

    def _drain_spool(self) -> None:
        """Write what an earlier run could not (``spool.py``) into the audit log."""
        if not spool.waiting(self.alias) or not targets.sqlite_exists(self.alias):
            return
        self._connect()
        if not history.tables_exist(self.alias):
            return
        written = _db(lambda: spool.drain(self.alias), self.alias)
        if written:
            self.progress.on_message(
                f"Wrote {written} audit event(s) that an earlier run could not write (kept in "
                f"{spool.path_for(self.alias)}) into the audit log."
            )

    def _connect(self, create: bool = False) -> None:
        targets.connect(self.alias, create=create)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Connect, take the lock, then (and only then) create tbmigrate's tables and
        write what an earlier run could not (the spool).  While the lock is held,
        SIGTERM and SIGINT end the step in progress as a failure does."""
        self._connect(create=True)
        targets.require_writable(self.alias)
        with (
            migration_lock(self.alias, self.lock_timeout, on_wait=self.progress.on_message) as held,
            signals.handled(),
        ):
            _db(lambda: history.ensure_schema(self.alias), self.alias)
            self._drain_spool()
            self._held = held
            try:
                yield
            finally:
                self._held = None

    def _execute(
        self,
        result: RunResult,
        steps: list[Script],
        *,
        revert: bool = False,
        fake: bool = False,
        details: dict[str, Any],
        notes: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        executor = Executor(
            self.alias,
            self.progress,
            self.step_timeouts,
            lock=self._held,
            busy_seconds=self.lock_timeout,
            script_output=self.script_output,
        )
        executor.step_notes = notes or {}
        action = "rollback" if revert else "run"
        try:
            for script in steps:
                if fake:
                    result.steps.append(executor.fake(script))
                elif revert:
                    result.steps.append(executor.revert(script))
                else:
                    result.steps.append(executor.apply(script))
        except MigrationFailed as exc:
            if isinstance(exc.step, StepResult):
                result.steps.append(exc.step)
            _audit_quietly(
                self.alias,
                action,
                history.FAILURE,
                error=str(exc),
                details={**details, "done": _succeeded(result)},
            )
            exc.result = result
            raise
        finally:
            executor.close()
        if steps:
            _audit_quietly(
                self.alias, action, history.SUCCESS, details={**details, "done": _succeeded(result)}
            )


def _audit_quietly(alias: str, action: str, outcome: str, **kwargs: Any) -> None:
    """A run's own event; kept in the spool when the database is gone (a SQLite file
    deleted under the run is not silently created again)."""
    try:
        if not targets.sqlite_exists(alias):
            raise DatabaseUnavailable("the SQLite file is gone")
        history.audit(alias, action, outcome, **kwargs)
    except (DatabaseError, DatabaseUnavailable):
        connections[alias].close()
        spool.keep(alias, event={"action": action, "outcome": outcome, **kwargs}, record=None)


def _db(func: Callable[[], Any], alias: str) -> Any:
    """Run a database read/write, turning a driver error into one clear line."""
    try:
        return func()
    except DatabaseError as exc:
        raise DatabaseUnavailable(targets.connection_error_message(alias, exc)) from exc


def _still_as_confirmed(
    confirm: Confirm | None, steps: Sequence[Any], planned: Sequence[Any]
) -> None:
    """Under the lock, refuse steps the user was not asked about (another run got there
    first and the plan changed while they answered)."""
    if confirm is None:
        return
    asked = {step.label for step in planned}
    unasked = [step.label for step in steps if step.label not in asked]
    if unasked:
        raise Aborted(
            f"the plan changed while waiting for your answer ({', '.join(unasked)} was not "
            "in it); nothing was changed, run again"
        )


def _succeeded(result: RunResult) -> list[str]:
    return [step.version for step in result.steps if step.outcome == history.SUCCESS]
