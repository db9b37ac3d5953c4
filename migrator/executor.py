"""Carry out a plan, one step at a time, each step with its history row.

Two kinds of step, chosen by asking the vendor whether DDL rolls back
(``connection.features.can_rollback_ddl``) and the script whether it is atomic:

- **Atomic** (the default on both databases): the step, its history row and its audit
  event are one transaction, so a failed or killed step leaves nothing behind.
- **Journaled** (``atomic = False``: ``CREATE INDEX CONCURRENTLY``, batched backfills):
  the step cannot be rolled back, so the truth is written *before* it runs, as
  golang-migrate's dirty flag: an ``in_progress`` history row and a ``started`` audit
  event are committed first, the step runs in autocommit (``db.batched_update`` records
  its progress in the same transaction as each batch), and then the row becomes
  ``applied`` (removed, for a down) or ``failed``.  A process that dies in between
  leaves the ``in_progress`` row, which every later command shows as ``interrupted``
  (``planner.states``) and refuses to go past until ``tbmigrate repair``.

A failure's audit event is written *after* the rollback, on a fresh connection if the
old one died, retried with back-off for ``AUDIT_RETRY_SECONDS``; if the database stays
unreachable it is kept in a local spool file (``spool.py``) that the next command
writes into the audit log.  SIGTERM and SIGINT end a step as a failure does
(``signals.py``): rolled back, or recorded as interrupted, then audited.

SQLite ignores ``PRAGMA foreign_keys`` inside a transaction, and rebuilding a parent
table with foreign keys enforced deletes or nulls its children's rows.  So atomic steps
run with foreign keys turned off *before* ``BEGIN`` (``vendors/sqlite.py``), and before
committing ``fkguard`` checks that the step left no row pointing at nothing that was
not already so.

A step's duration is its whole wall time, lock waits and retries included; its audit
event keeps the attempts, the total and the longest lock wait, and the blockers seen.

The cost per atomic step is what a step must cost: ``BEGIN``, the script's statements,
one statement writing its history row and audit event (two on SQLite), ``COMMIT``;
everything that does not change from step to step is set up once per run.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import time
import traceback as traceback_module
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TextIO

from django.db import DatabaseError, connections, transaction

from migrator import conf, fkguard, history, redact, signals, spool, targets, timeouts, vendors
from migrator.database import Database
from migrator.errors import DatabaseUnavailable, Interrupted, MigrationFailed
from migrator.logs import step_fields
from migrator.scripts import Script

logger = logging.getLogger(__name__)

OWN_TABLES = '"tbmigrate_applied_migration"'  # as Django's ORM quotes it, on both vendors
OUTPUT_KEPT = 20_000  # characters of a script's printed output kept in its audit event


@dataclass(frozen=True)
class StepResult:
    action: str  # apply | revert | fake
    version: str
    name: str
    outcome: str  # success | failure | interrupted
    duration_ms: float
    error: str = ""
    statements: int = 0
    attempts: int = 1
    lock_wait_ms: float = 0.0


@dataclass
class Progress:
    """What the executor tells its caller; the command turns these into lines."""

    on_start: Callable[[str, Script], None] = lambda action, script: None
    on_done: Callable[[StepResult], None] = lambda result: None
    on_message: Callable[[str], None] = lambda message: None


@dataclass
class _Capture:
    limit: int
    statements: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    # Lock waits that timed out, retries, sessions seen blocking the step: the honest cost.
    waits: timeouts.LockWaits = field(default_factory=timeouts.LockWaits)
    limits: timeouts.StepTimeouts = field(default_factory=timeouts.StepTimeouts)
    invalid_left: list[str] = field(default_factory=list)  # INVALID indexes not dropped

    def restart(self) -> None:
        """A retried attempt: keep only its own statements."""
        self.statements = []
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        if OWN_TABLES in str(sql):
            # The journal's own writes (batch progress) are not the script's statements.
            return execute(sql, params, many, context)
        self.count += 1
        if len(self.statements) < self.limit:
            entry: dict[str, Any] = {"sql": str(sql)}
            if params:
                entry["params"] = _params_for_audit(sql, params, many)
            self.statements.append(entry)
        return execute(sql, params, many, context)

    def facts(self) -> dict[str, Any]:
        """What the audit event says of the attempts, besides the statements."""
        return {**self.details, **self.waits.facts()}

    @property
    def lock_wait_ms(self) -> float:
        return round(sum(self.waits.waits_ms), 3)


def _params_for_audit(sql: str, params: Any, many: bool) -> Any:
    if many:
        return f"<{len(list(params))} parameter sets>"
    if redact.looks_secret(str(sql)):
        return ["***" for _ in params] if isinstance(params, list | tuple) else "***"
    if isinstance(params, list | tuple):
        return [
            p if isinstance(p, int | float | str | bool | type(None)) else str(p) for p in params
        ]
    return str(params)


class _Tee(io.TextIOBase):
    """Where a script's ``print`` goes while its step runs: on to ``target`` (stderr
    under ``--json``, so stdout stays one document), and kept for the audit event."""

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self.kept: list[str] = []
        self.size = 0

    def write(self, text: str) -> int:
        self.target.write(text)
        if self.size < OUTPUT_KEPT:
            self.kept.append(text[: OUTPUT_KEPT - self.size])
            self.size += len(self.kept[-1])
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    @property
    def text(self) -> str:
        return "".join(self.kept)


class _Journal:
    """The in-progress record of a journaled step, and the progress it reports."""

    def __init__(self, alias: str, version: Any) -> None:
        self.alias = alias
        self.version = version
        self.progress: dict[str, Any] = {}

    def update(self, info: dict[str, Any]) -> None:
        """``db.on_progress``: called by ``batched_update`` inside each batch's
        transaction, so the recorded progress is exactly what committed.  What this
        object holds (for the audit event of a step stopped later) changes only once the
        batch has committed: a signal between the two must not make it say more."""
        updates = [dict(item) for item in self.progress.get("updates", [])]
        key = (info.get("table"), info.get("key"))
        for i, item in enumerate(updates):
            if (item.get("table"), item.get("key")) == key:
                updates[i] = {**item, **info}
                break
        else:
            updates.append(dict(info))
        progress = {**self.progress, "updates": updates}
        history.journal_progress(self.alias, self.version, progress)

        def committed() -> None:
            self.progress = {**self.progress, "updates": updates}

        transaction.on_commit(committed, using=self.alias)

    def note(self, **facts: Any) -> None:
        """Facts that are not a batch (lock waits, blockers); written at once."""
        self.progress.update(facts)
        with contextlib.suppress(DatabaseError):
            history.journal_progress(self.alias, self.version, self.progress)


class Executor:
    """Runs steps on one alias.  The caller holds the migration lock (``lock``: the
    held lock, to which each step's name is told for the holder's description)."""

    def __init__(
        self,
        alias: str,
        progress: Progress | None = None,
        step_timeouts: timeouts.StepTimeouts | None = None,
        *,
        lock: Any = None,
        busy_seconds: float | None = None,
        script_output: TextIO | None = None,
    ) -> None:
        self.alias = alias
        self.progress = progress or Progress()
        self.timeouts = step_timeouts or timeouts.StepTimeouts.resolve(alias=alias)
        self.connection = connections[alias]
        self.vendor = vendors.of(self.connection)
        self.database = targets.describe(alias)
        self.lock = lock
        self.busy_seconds = float(
            conf.get("LOCK_TIMEOUT") if busy_seconds is None else busy_seconds
        )
        self.script_output = script_output  # None: where stdout goes now
        # Per run, not per step: the writer of history rows and audit events, SQLite's
        # foreign-key guard, the session the settings below are on, PostgreSQL's
        # blocker watch.  ``close()`` undoes the session settings.
        self._writer: history.Writer | None = None
        self._guard = (
            fkguard.ForeignKeyGuard(self.connection) if self.vendor.name == "sqlite" else None
        )
        self._session: Any = None
        self._watcher: timeouts.BlockerWatch | None = None
        # One transaction for several steps (``one_transaction``): failures are audited
        # after it is undone, and wrappers (the rollback's loss meter) see every statement.
        self._outer = False
        self._deferred: list[tuple[Any, ...]] = []
        self._wrappers: list[Any] = []
        # Facts a caller adds to a step's audit event, by version (the hazards it accepted).
        self.step_notes: dict[str, dict[str, Any]] = {}

    # -- public steps ------------------------------------------------------------------
    def apply(self, script: Script) -> StepResult:
        return self._step("apply", script, script.up)

    def revert(self, script: Script) -> StepResult:
        if script.down is None:  # the planner refuses these first; this is a last guard
            raise MigrationFailed(f"{script.label} has no down()", str(script.version))
        return self._step("revert", script, script.down)

    def fake(self, script: Script) -> StepResult:
        """Record ``script`` as applied without running it (adopting an existing database)."""
        self.progress.on_start("fake", script)
        with transaction.atomic(using=self.alias):
            history.record_unrun(self.alias, script)
            history.audit(
                self.alias,
                "fake",
                history.SUCCESS,
                version=script.version,
                name=script.name,
                duration_ms=0,
                details={"note": "recorded as applied without running up()"},
            )
        result = StepResult("fake", str(script.version), script.name, history.SUCCESS, 0.0)
        self._log(result)
        self.progress.on_done(result)
        return result

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the run: stop the blocker watch, put the session's settings back."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        if self._session is not None and self._session is self.connection.connection:
            self.vendor.end_session(self.timeouts)
        self._session = None

    @contextlib.contextmanager
    def one_transaction(self) -> Iterator[None]:
        """Run the steps of the body as ONE transaction (a rollback that is its own
        preview: ``revert.py``).  Each step still writes its own history change and audit
        event, inside it; a step that fails, or a caller that raises, undoes them all,
        and the failure is audited after the undo so that it survives.  Only atomic
        steps may run in it."""
        self._prepare(atomic=True)
        self._outer = True
        try:
            with transaction.atomic(using=self.alias):
                yield
        finally:
            self._outer = False
            deferred, self._deferred = self._deferred, []
            for args in deferred:
                with signals.shielded():
                    self._record_failure(*args)

    @contextlib.contextmanager
    def wrapping(self, wrapper: Any) -> Iterator[None]:
        """``wrapper`` (a ``connection.execute_wrapper``) sees each statement the steps run
        in the body, before the step's own capture does."""
        self._wrappers.append(wrapper)
        try:
            yield
        finally:
            self._wrappers.remove(wrapper)

    def journaled(self, script: Script) -> bool:
        """Whether ``script`` runs outside a transaction, with an in-progress record."""
        return not (script.atomic and self.vendor.can_rollback_ddl)

    # -- the step itself ---------------------------------------------------------------
    def _step(
        self,
        action: str,
        script: Script,
        func: Callable[[Database], Any],
    ) -> StepResult:
        self.progress.on_start(action, script)
        logger.info(
            "%s %s started",
            action,
            script.label,
            extra=step_fields(
                action, script.version, script.name, "started", database=self.database
            ),
        )
        capture = _Capture(limit=int(conf.get("MAX_STATEMENTS_KEPT")))
        limits = self.timeouts.for_script(script.lock_timeout, script.lock_retries)
        capture.limits = limits
        db = Database(self.connection)
        journaled = self.journaled(script)
        journal = _Journal(self.alias, script.version) if journaled else None
        output = _Tee(self.script_output or sys.stdout)
        started = time.perf_counter()
        try:
            if self.lock is not None:
                self.lock.note_step(script.label, action)
            if journal is None:
                self._atomic_with_retries(action, script, func, capture, db, output, limits)
            else:
                self._journaled(action, script, func, capture, db, journal, output, limits)
            duration = _ms_since(started)
        except BaseException as exc:
            duration = _ms_since(started)
            return self._failed(action, script, exc, duration, capture, journal, output)
        result = StepResult(
            action,
            str(script.version),
            script.name,
            history.SUCCESS,
            duration,
            "",
            capture.count,
            capture.waits.attempts,
            capture.lock_wait_ms,
        )
        self._log(result)
        self.progress.on_done(result)
        return result

    def _failed(
        self,
        action: str,
        script: Script,
        exc: BaseException,
        duration: float,
        capture: _Capture,
        journal: _Journal | None,
        output: _Tee,
    ) -> StepResult:
        """End a step that raised: audit it (and mark a journaled one failed or
        interrupted), tell the caller, and raise the error that says what state the
        database is in."""
        stop = exc if isinstance(exc, signals.Terminated) else None
        if stop is None and isinstance(exc, Exception) and signals.received() is not None:
            stop = signals.pending_error()  # a SQLite statement stopped by the flag
        with signals.shielded():
            error = (
                f"interrupted by {stop.name}" if stop is not None else self._explain(exc, capture)
            )
            if self._outer:
                # Inside one transaction for several steps: audit after it is undone.
                self._deferred.append((action, script, exc, duration, capture, journal, output))
                note = ""
            else:
                note = self._record_failure(action, script, exc, duration, capture, journal, output)
        outcome = history.INTERRUPTED if stop is not None else history.FAILURE
        result = StepResult(
            action,
            str(script.version),
            script.name,
            outcome,
            duration,
            error,
            capture.count,
            capture.waits.attempts,
            capture.lock_wait_ms,
        )
        self._log(result)
        self.progress.on_done(result)
        verb = "apply" if action == "apply" else "revert"
        if journal is None and self._outer:
            undone = (
                "rolled back with the whole rollback, which runs as one transaction: "
                "nothing was reverted"
            )
        elif journal is None:
            undone = "rolled back, nothing of it remains"
        elif targets.is_scratch(self.alias):
            # what to do about a failed non-atomic step is no concern of a throw-away database
            undone = "on a scratch database, thrown away after"
        else:
            got = _progress_phrase(journal.progress)
            undone = "it ran outside a transaction, so what it did so far stays" + (
                f" ({got})" if got else ""
            )
            if not note:
                undone += (
                    "; recorded as interrupted: check it, then `tbmigrate repair "
                    f"{script.version}` and run again"
                    + (" (the batched_update resumes where it stopped)" if got else "")
                    if stop is not None
                    else f"; recorded as failed: clean up what it left, then `tbmigrate repair "
                    f"{script.version}`"
                )
        if stop is not None:
            raise Interrupted(
                f"{script.label} was interrupted by {stop.name} while trying to {verb}: "
                f"{undone}{note}",
                str(script.version),
                step=result,
                signum=stop.signum,
            ) from exc
        if not isinstance(exc, Exception):
            raise exc  # SystemExit and the like: recorded, now let it through
        raise MigrationFailed(
            f"{script.label} failed to {verb}: {error} ({undone}{note})",
            str(script.version),
            step=result,
        ) from exc

    @contextlib.contextmanager
    def _running(self, capture: _Capture, output: _Tee) -> Iterator[None]:
        """Around the script's own code: its statements captured, a signal able to stop
        a statement, who blocks it watched, what it prints kept."""
        with contextlib.ExitStack() as stack:
            for wrapper in self._wrappers:
                stack.enter_context(self.connection.execute_wrapper(wrapper))
            stack.enter_context(self.connection.execute_wrapper(capture))
            stack.enter_context(self._watch(capture))
            stack.enter_context(self.vendor.interruptible())
            stack.enter_context(contextlib.redirect_stdout(output))
            yield

    def _atomic_with_retries(
        self,
        action: str,
        script: Script,
        func: Callable[[Database], Any],
        capture: _Capture,
        db: Database,
        output: _Tee,
        limits: timeouts.StepTimeouts,
    ) -> None:
        """Run an atomic step; when PostgreSQL's lock_timeout fires, retry the whole
        transaction after a growing, jittered pause (``timeouts.Retrying``), each attempt
        waiting a little longer, within the retry limits.  Inside a caller's transaction
        (``one_transaction``, or the API called in one) a lock timeout has undone more
        than the step, so it is not retried here."""
        started = time.perf_counter()

        def attempt() -> None:
            capture.restart()
            if capture.waits.attempts > 1:
                self.progress.on_start(action, script)
            local = self._prepare(atomic=True, limits=limits)
            self.vendor.check_present()
            with transaction.atomic(using=self.alias, savepoint=not self._outer):
                if local:
                    self.vendor.local_timeouts(limits)
                with self._tracking(), self._running(capture, output):
                    func(db)
                self._check_foreign_keys()
                self.vendor.check_present()
                self._record_success(action, script, _ms_since(started), capture, output)

        if self._outer or self.connection.in_atomic_block:
            attempt()
            return
        self._retrying(limits, capture).run(attempt)

    def _retrying(self, limits: timeouts.StepTimeouts, capture: _Capture) -> timeouts.Retrying:
        """Retries on lock timeouts for this step (PostgreSQL; nothing else has them)."""

        def set_lock_timeout(seconds: float | None) -> None:
            with contextlib.suppress(DatabaseError):  # a lost session says so by itself
                self.vendor.set_lock_timeout(seconds)

        retries = limits if self.vendor.name == "postgresql" else replace(limits, lock_retries=0)
        return timeouts.Retrying(
            retries,
            capture.waits,
            is_lock_timeout=self.vendor.is_lock_timeout,
            set_lock_timeout=set_lock_timeout,
            on_retry=self.progress.on_message,
            blockers=lambda: list(self._watcher.blockers) if self._watcher else [],
        )

    def _journaled(
        self,
        action: str,
        script: Script,
        func: Callable[[Database], Any],
        capture: _Capture,
        db: Database,
        journal: _Journal,
        output: _Tee,
        limits: timeouts.StepTimeouts,
    ) -> None:
        """Journal the step, run it in autocommit, then record how it ended.  Each
        statement (each batch of a ``batched_update``) that PostgreSQL's lock_timeout
        gives up on is retried on its own (``db.retrying``): in autocommit a timed-out
        statement has done nothing, so trying it again is safe."""
        started = time.perf_counter()
        self._prepare(atomic=False, limits=limits)
        self.vendor.check_present()
        direction = "up" if action == "apply" else "down"
        with transaction.atomic(using=self.alias):
            history.journal_start(
                self.alias,
                version=script.version,
                name=script.name,
                description=script.description,
                checksum=script.checksum,
                direction=direction,
            )
            history.audit(
                self.alias,
                action,
                history.STARTED,
                version=script.version,
                name=script.name,
                details={
                    "atomic": script.atomic,
                    "checksum": script.checksum,
                    "direction": direction,
                    "note": "journaled before it runs: it cannot be rolled back",
                },
            )
        db.on_progress = journal.update
        db.retrying = self._retrying(limits, capture)
        db.invalid_left = capture.invalid_left
        if action == "apply":
            db.resume_points = history.resume_points(self.alias, script.version, script.checksum)
            if db.resume_points:
                self.progress.on_message(
                    f"  resuming {script.label} after an earlier attempt: "
                    + ", ".join(f"{k} after {v}" for k, v in db.resume_points.items())
                )
        with self._running(capture, output):
            func(db)
        self.vendor.check_present()
        duration = _ms_since(started)
        with transaction.atomic(using=self.alias):
            history.journal_done(
                self.alias,
                version=script.version,
                direction=direction,
                duration_ms=duration,
                source=script.source,
            )
            history.audit(
                self.alias,
                action,
                history.SUCCESS,
                version=script.version,
                name=script.name,
                duration_ms=duration,
                statements=capture.statements,
                details=self._details(script, capture, output, journal),
            )

    def _details(
        self,
        script: Script,
        capture: _Capture,
        output: _Tee,
        journal: _Journal | None = None,
    ) -> dict[str, Any]:
        details: dict[str, Any] = {
            "atomic": script.atomic,
            "checksum": script.checksum,
            "statement_count": capture.count,
            **capture.facts(),
            **self.step_notes.get(str(script.version), {}),
        }
        if output.size:
            details["output"] = output.text
        if journal is not None and journal.progress:
            details["progress"] = journal.progress
        return details

    @contextlib.contextmanager
    def _watch(self, capture: _Capture) -> Iterator[None]:
        """While a PostgreSQL step runs with a lock timeout, note who blocks it."""
        if self.vendor.name != "postgresql" or not self.timeouts.lock_timeout:
            yield
            return
        if self._watcher is None:
            self._watcher = timeouts.BlockerWatch(self.connection, self.timeouts.lock_timeout)
        watch = self._watcher
        try:
            with watch.watching():
                yield
        finally:
            capture.waits.saw(watch.blockers)

    def _explain(self, exc: BaseException, capture: _Capture) -> str:
        """The one-line reason a step failed, in the user's terms."""
        error = _one_line(exc)
        if isinstance(exc, DatabaseUnavailable):
            return str(exc)
        try:
            self.vendor.check_present()
        except DatabaseUnavailable as gone:
            return f"{gone} ({error})"
        if self.vendor.connection_lost(exc):
            # pg_terminate_backend, a restarted server, a cut network: the server rolled
            # the transaction back and dropped the session's migration lock with it.
            return f"the connection to the database was lost ({error})"
        if self.vendor.is_lock_timeout(exc) and self.vendor.name == "sqlite":
            return (
                f"the database is locked by another writer and stayed locked for "
                f"{self.busy_seconds:g} s ({error}); wait for that process to finish (or stop "
                "it), then run again, or raise --lock-timeout"
            )
        if self.vendor.is_lock_timeout(exc):
            tries = capture.waits.attempts
            seen = list(capture.waits.blockers.values())
            blocked = timeouts.describe_blockers(seen)
            who = (
                f"blocked by {blocked}; wait for it to finish or end it "
                f"(SELECT pg_terminate_backend({seen[0]['pid']}))"
                if blocked
                else "the blocking session could not be identified (see pg_locks)"
            )
            limits = capture.limits
            first, last = limits.lock_timeout_at(1) or 0, limits.lock_timeout_at(tries) or 0
            waits = f"{first:g} s" + (f", growing to {last:g} s" if last != first else "")
            if capture.waits.patient_seconds:
                waits += (
                    f"; {capture.waits.patient_seconds:g} s, PG_LOCK_RETRY_BUDGET, for a "
                    "statement whose lock blocks no reader or writer while it waits"
                )
            waited = sum(capture.waits.waits_ms) / 1000
            left = "".join(
                f"; it left the INVALID index {name}, which could not be dropped while "
                f"blocked: DROP INDEX CONCURRENTLY {name} once the blocker has ended"
                for name in capture.invalid_left
            )
            return (
                f"gave up waiting for a lock: lock_timeout ({waits}) reached {tries} time(s) "
                f"in {waited:.1f} s of waiting; {who}, then run again, or raise "
                f"--pg-lock-timeout / --pg-lock-retries{left}"
            )
        if timeouts.is_statement_timeout(exc):
            limit = capture.limits.statement_timeout or 0
            return (
                f"statement_timeout ({limit:g} s) reached ({error}); raise "
                "--pg-statement-timeout (or the setting PG_STATEMENT_TIMEOUT) if the step needs "
                "longer, or make the step non-atomic (atomic = False), which has none"
            )
        return error

    def _log(self, result: StepResult) -> None:
        """One structured record per finished step (see ``migrator.logs``)."""
        extra = step_fields(
            result.action,
            result.version,
            result.name,
            result.outcome,
            database=self.database,
            duration_ms=result.duration_ms,
            error=result.error,
        )
        label = f"{result.action} {result.version} {result.name}"
        if result.outcome == history.SUCCESS:
            logger.info("%s succeeded in %.1f ms", label, result.duration_ms, extra=extra)
        else:
            logger.error(
                "%s failed after %.1f ms: %s", label, result.duration_ms, result.error, extra=extra
            )

    def _record_success(
        self, action: str, script: Script, duration: float, capture: _Capture, output: _Tee
    ) -> None:
        """The step's history change and its audit event, in the step's transaction."""
        if self._writer is None:
            self._writer = history.Writer(self.alias)
        event = {
            "action": action,
            "outcome": history.SUCCESS,
            "version": script.version,
            "name": script.name,
            "duration_ms": duration,
            "statements": capture.statements,
            "details": self._details(script, capture, output),
        }
        if action == "apply":
            applied = {
                "version": script.version,
                "name": script.name,
                "description": script.description,
                "checksum": script.checksum,
                "duration_ms": duration,
                "source": script.source,
            }
            self._writer.step_done(applied=applied, event=event)
        else:
            self._writer.step_done(removed=script.version, event=event)

    def _record_failure(
        self,
        action: str,
        script: Script,
        exc: BaseException,
        duration: float,
        capture: _Capture,
        journal: _Journal | None,
        output: _Tee,
    ) -> str:
        """Audit a failed step after its transaction is gone; return a note for the message.

        The database may be gone for a moment (a restart, a failover): the write is
        retried with back-off for ``AUDIT_RETRY_SECONDS`` (a few seconds when a signal
        stopped us: the process is expected to end), then kept in the spool file.
        """
        trace = "".join(traceback_module.format_exception(exc))
        stopped = isinstance(exc, signals.Terminated) or signals.received() is not None
        one_line = f"interrupted by {_signal_name()}" if stopped else _one_line(exc)
        details = self._details(script, capture, output, journal)
        event: dict[str, Any] = {
            "action": action,
            "outcome": history.INTERRUPTED if stopped else history.FAILURE,
            "version": script.version,
            "name": script.name,
            "duration_ms": duration,
            "error": one_line,
            "traceback": trace,
            "statements": capture.statements,
            "details": details,
        }
        record: dict[str, Any] | None = None
        if journal is not None:
            when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            record = {
                "version": str(script.version),
                "status": history.IN_PROGRESS if stopped else history.FAILED,
                "error": f"{action} {'interrupted' if stopped else 'failed'} at {when}: {one_line}",
                "pid": history.actor().pid,
            }

        def write() -> None:
            with transaction.atomic(using=self.alias):
                if record is not None:
                    # How far it got, as committed (a resume starts from it): the row's,
                    # never what this process believed when the signal came.
                    committed = history.journal_progress_of(
                        self.alias, record["version"], record["pid"]
                    )
                    if committed:
                        event["details"] = {**event["details"], "progress": committed}
                    else:
                        event["details"] = {
                            k: v for k, v in event["details"].items() if k != "progress"
                        }
                    history.journal_end(self.alias, **record)
                history.audit(self.alias, **event)

        budget = float(conf.get("AUDIT_RETRY_SECONDS"))
        if stopped:
            budget = min(budget, 3.0)
        deadline = time.monotonic() + budget
        pause, attempt = 0.2, 0
        while True:
            attempt += 1
            try:
                if attempt > 1:
                    # The connection may have died with the step: open a new one.
                    targets.connect(self.alias)
                write()
                return ""
            except (DatabaseError, DatabaseUnavailable) as audit_exc:
                logger.info("could not audit the failure (attempt %s): %s", attempt, audit_exc)
                with contextlib.suppress(Exception):
                    self.connection.close()
                if time.monotonic() + pause > deadline:
                    break
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
        kept = spool.keep(self.alias, event=event, record=record)
        where = f"kept in {kept}" if kept else "could not be kept anywhere"
        return (
            f"; the database stayed unreachable for {budget:g} s, so the failure's audit "
            f"event was {where}"
            + (" and will be written by the next tbmigrate command that reaches it" if kept else "")
            + (
                "; check by hand what of it was applied before running again"
                if journal is not None
                else ""
            )
        )

    # -- vendor details ----------------------------------------------------------------
    def _prepare(self, atomic: bool, limits: timeouts.StepTimeouts | None = None) -> bool:
        """Put the session as the next step needs it, changing only what differs.

        A new connection (after a lost one) starts from the defaults again, so the
        per-run settings are applied once per connection.  Inside a caller's own
        transaction nothing sticks: returns True when the timeouts must be set per step
        (``SET LOCAL``).
        """
        self.connection.ensure_connection()
        if self._outer:
            return False  # one_transaction() set the session up before it began
        if self.connection.in_atomic_block:
            return self.vendor.name == "postgresql"
        raw = self.connection.connection
        if raw is not self._session:
            self._session = raw
            self.vendor.start_session(self.timeouts, self.busy_seconds)
        self.vendor.before_step(atomic, limits or self.timeouts)
        return False

    @property
    def _fk_off(self) -> bool:
        return bool(getattr(self.vendor, "foreign_keys_off", False))

    @contextlib.contextmanager
    def _tracking(self) -> Iterator[None]:
        if self._guard is None or not self._fk_off:
            yield
            return
        with self._guard.tracking():
            yield

    def _check_foreign_keys(self) -> None:
        if self._guard is None or not self._fk_off:
            return
        new = self._guard.new_violations()
        if new:
            (table, parent), count = next(iter(new.items()))
            raise DatabaseError(
                f"the step would leave {count} row(s) of {table} pointing at missing rows of "
                f"{parent} (foreign key check failed)"
            )


def _progress_phrase(progress: dict[str, Any]) -> str:
    from migrator.planner import progress_phrase

    return progress_phrase(progress)


def _signal_name() -> str:
    stop = signals.pending_error()
    return stop.name if stop is not None else "a signal"


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _one_line(exc: BaseException) -> str:
    text = redact.scrub(str(exc)).strip().splitlines()
    first = text[0].strip() if text else ""
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__
