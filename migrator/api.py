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
from migrator import conf, history, planner, repair, scripts, targets
from migrator.errors import (
    Aborted,
    DatabaseUnavailable,
    HistoryConflict,
    MigrationFailed,
    MigratorError,
    RollbackRefused,
    UsageError,
)
from migrator.executor import Executor, Progress, StepResult
from migrator.locking import migration_lock
from migrator.planner import MigrationState
from migrator.scripts import Script
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

    def count(self, state: str) -> int:
        return sum(1 for m in self.migrations if m.state == state)

    @property
    def clean(self) -> bool:
        """Everything applied and unchanged: what ``status --check`` requires."""
        return all(m.state == planner.APPLIED for m in self.migrations)

    @property
    def summary(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in planner.STATES if self.count(s)]
        return f"{len(self.migrations)} migrations: " + (", ".join(parts) or "none")


@dataclass
class RunResult:
    action: str  # run | rollback
    database: str
    planned: list[str] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    dry_run: bool = False
    backup: backups.Backup | None = None

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
        return Status(
            self.database, self.vendor, self.scripts_dir, planner.states(loaded, self.history())
        )

    def plan(self, to: str | None = None, out_of_order: bool = False) -> list[Script]:
        """What ``migrate(to)`` would apply now (no lock, nothing written)."""
        return planner.plan_run(self.status().migrations, to=to, out_of_order=out_of_order)

    def rollback_plan(
        self, version: str | None = None, to: str | None = None
    ) -> list[MigrationState]:
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
    ) -> RunResult:
        """Apply pending scripts in version order, up to and including ``to``.

        ``backup`` (or the alias in BACKUP_DATABASES) backs the database up first.
        """
        result = RunResult("run", self.database, dry_run=dry_run)
        if dry_run:
            result.planned = [s.label for s in self.plan(to, out_of_order)]
            return result
        # Bad input and refusals surface before anything is written (not even our tables).
        planned = self._precheck(
            "run", lambda states: planner.plan_run(states, to=to, out_of_order=out_of_order)
        )
        take_backup = self._before_lock("run", backup, confirm, planned)
        loaded = self.scripts()  # every script must load before anything runs
        with self._locked():
            all_states = planner.states(loaded, history.load(self.alias))
            try:
                steps = planner.plan_run(all_states, to=to, out_of_order=out_of_order)
            except MigratorError as exc:
                self._audit_refusal("run", exc)
                raise
            result.planned = [s.label for s in steps]
            _still_as_confirmed(confirm, steps, planned)
            if steps and take_backup:
                result.backup = self._backup()
            self._execute(result, steps, fake=fake, details={"to": to, "fake": fake})
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
        result = RunResult("rollback", self.database, dry_run=dry_run)
        if preflight is None:
            preflight = self.rollback_preflight(force=force)
        if dry_run:
            result.planned = [s.label for s in self.rollback_plan(version, to)]
            return result
        planned = self._precheck(
            "rollback", lambda states: planner.plan_rollback(states, version=version, to=to)
        )
        # The question waits for the preflight's preview, under the lock: only the backup
        # is settled now.
        take_backup = self._before_lock("rollback", backup, None, planned)
        loaded = self.scripts()
        with self._locked():
            all_states = planner.states(loaded, history.load(self.alias))
            try:
                steps = planner.plan_rollback(all_states, version=version, to=to)
                checked = (preflight(steps) or {}) if steps and preflight is not None else {}
            except MigratorError as exc:
                self._audit_refusal("rollback", exc)
                raise
            result.planned = [s.label for s in steps]
            if steps and confirm is not None and not confirm(steps):
                raise Aborted("rollback cancelled; nothing was reverted")
            if steps and take_backup:
                result.backup = self._backup()
            scripts_to_revert = [s.script for s in steps if s.script is not None]
            self._execute(
                result,
                scripts_to_revert,
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
        """Clear a failed record, accept edited scripts, forget missing ones (``repair.py``)."""

        def plan(states: list[MigrationState]) -> list[planner.RepairStep]:
            return planner.plan_repair(states, version, checksums=checksums, missing=missing)

        planned = plan(self.status().migrations)
        if not planned:
            return []  # nothing to change: take no lock, create no table
        self._before_lock("repair", False, confirm, planned)
        loaded = self.scripts()
        with self._locked():
            steps = plan(planner.states(loaded, history.load(self.alias)))
            _still_as_confirmed(confirm, steps, planned)
            return _db(lambda: repair.apply(self.alias, steps), self.alias)

    def backup(self) -> backups.Backup:
        """Back the database up now, under the migration lock (see ``backup.py``)."""
        backups.require_tool(self.alias)
        with self._locked():
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

    def _precheck(self, action: str, plan: Callable[[list[MigrationState]], Any]) -> Any:
        """Plan once without the lock: usage errors change nothing, refusals are audited."""
        try:
            return plan(self.status().migrations)
        except (HistoryConflict, RollbackRefused) as exc:
            self._audit_refusal(action, exc)
            raise

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
