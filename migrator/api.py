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
from typing import Any

from django.db import DatabaseError, connections

from migrator import backup as backups
from migrator import conf, history, locking, planner, repair, scripts, targets
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
from migrator.validation import Report, roundtrip
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
    ) -> None:
        targets.require(database)
        self.alias = database
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
        self._connect()
        return _db(lambda: history.load(self.alias), self.alias)

    def status(self) -> Status:
        """Every known version and its state; reads only (creates no tables)."""
        loaded = self.scripts()
        records = self.history()
        holder = None
        if any(r.in_progress for r in records):
            # A journaled step: being carried out now (someone holds the lock), or its
            # process is gone and it was interrupted.
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
        ``phase="expand"`` stops before the first contract script.
        """

        def plan(states: list[MigrationState]) -> Plan:
            return planner.plan_run(states, to=to, out_of_order=out_of_order, phase=phase)

        with history.run_context() as run_id:
            result = RunResult("run", self.database, dry_run=dry_run, run_id=run_id)
            if dry_run:
                result.planned = self._plan_or_refuse("run", plan, audit=False).labels
                return result
            with self._changing("run", plan, confirm=confirm, backup=backup) as (steps, backup_now):
                result.planned = steps.labels
                result.target = steps.target
                if steps.steps and backup_now:
                    result.backup = self._backup()
                self._execute(result, steps.scripts, fake=fake, details={"to": to, "fake": fake})
            return result

    def rollback(
        self,
        version: str | None = None,
        *,
        to: str | None = None,
        dry_run: bool = False,
        confirm: Confirm | None = None,
        preflight: Callable[[list[MigrationState]], dict[str, Any] | None] | None = None,
        force: bool = False,
        backup: bool = False,
    ) -> RunResult:
        """Revert applied scripts newest first (see ``planner.plan_rollback``).

        ``preflight`` runs under the lock with the planned steps, before confirmation;
        it may refuse (raise) or return details for the audit event.  By default it is
        the rollback validation (``rollback_preflight``): data-loss preview and guards,
        refusing on any FAIL unless ``force``.  ``backup`` (or the alias in
        BACKUP_DATABASES) backs the database up after the answer, before the first step.
        """
        if preflight is None:
            preflight = self.rollback_preflight(force=force)

        def plan(states: list[MigrationState]) -> Plan:
            return planner.plan_rollback(states, version=version, to=to)

        with history.run_context() as run_id:
            result = RunResult("rollback", self.database, dry_run=dry_run, run_id=run_id)
            if dry_run:
                planned = self._plan_or_refuse("rollback", plan, audit=False)
                result.planned, result.target = planned.labels, planned.target
                return result
            # The question waits for the preflight's preview, under the lock: only the
            # backup is settled before it.
            with self._changing("rollback", plan, confirm=None, backup=backup) as (
                steps,
                backup_now,
            ):
                result.planned, result.target = steps.labels, steps.target
                try:
                    checked = (preflight(list(steps.steps)) or {}) if steps.steps else {}
                except MigratorError as exc:
                    self._audit_refusal("rollback", exc)
                    raise
                if steps.steps and confirm is not None and not confirm(list(steps.steps)):
                    raise Aborted("rollback cancelled; nothing was reverted")
                if steps.steps and backup_now:
                    result.backup = self._backup()
                self._execute(
                    result,
                    steps.scripts,
                    revert=True,
                    details={"version": version, "to": to, **checked},
                )
            return result

    # -- validating (read-only; each writes an audit event) -----------------------------
    def validate_schema(self) -> Report:
        """Drift against the replayed scripts, data integrity, history."""
        return self._audited(validation_schema.validate_schema(self.alias, self.scripts_dir))

    def validate_migration(self, version: str) -> Report:
        """Preflight of ``run --to version``: target, server, disk, sessions, dry run, lint."""
        report = validation_preflight.validate_migration(self.alias, self.scripts_dir, version)
        return self._audited(report)

    def validate_rollback(self, version: str) -> Report:
        """Rolling back ``version`` and everything newer: data-loss preview and guards."""
        report = validation_rollback.validate_rollback(self.alias, self.scripts_dir, version)
        return self._audited(report)

    def validate_scripts(self) -> Report:
        """Round trip of every script on scratch databases; the live database is not used."""
        return self._audited(roundtrip.validate_scripts(self.alias, self.scripts_dir))

    def rollback_preflight(
        self, force: bool = False, on_report: Callable[[Report], None] | None = None
    ) -> Callable[[list[MigrationState]], dict[str, Any]]:
        """The rollback validation as a ``rollback(preflight=...)``; see ``validation.rollback``."""
        return validation_rollback.before_rollback(self.alias, force=force, on_report=on_report)

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
                return _db(lambda: repair.apply(self.alias, steps.steps), self.alias)  # type: ignore[no-any-return]

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
        first = self._plan_or_refuse(action, plan)
        take_backup = self._before_lock(action, backup, confirm, first.steps)
        loaded = self.scripts()  # every script must load before anything runs
        with self._locked():
            states = planner.states(loaded, history.load(self.alias))
            again = self._plan_or_refuse(action, plan, states)
            _still_as_confirmed(confirm, again.steps, first.steps)
            yield again, take_backup

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
        if isinstance(exc, UsageError):
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

    def _connect(self) -> None:
        targets.connect(self.alias)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Connect, take the lock, then (and only then) create tbmigrate's tables."""
        self._connect()
        targets.require_writable(self.alias)
        with migration_lock(self.alias, self.lock_timeout, on_wait=self.progress.on_message):
            _db(lambda: history.ensure_schema(self.alias), self.alias)
            yield

    def _execute(
        self,
        result: RunResult,
        steps: list[Script],
        *,
        revert: bool = False,
        fake: bool = False,
        details: dict[str, Any],
    ) -> None:
        executor = Executor(self.alias, self.progress, self.step_timeouts)
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
    try:
        history.audit(alias, action, outcome, **kwargs)
    except DatabaseError:
        connections[alias].close()


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
