"""Carry out a plan, one step at a time, each step with its history row.

For an atomic script (the default) the step, its history row and its audit event
are one transaction: both databases roll DDL back, so a failed step leaves nothing
behind (``connection.features.can_rollback_ddl``, as Django's executor relies on).
A failure's audit event is written *after* the rollback, on a fresh connection if
the old one died, so it survives.  A script with ``atomic = False`` runs in
autocommit; if it fails it is recorded as ``failed`` and later runs stop there until
``tbmigrate repair``.

SQLite ignores ``PRAGMA foreign_keys`` inside a transaction, and rebuilding a parent
table with foreign keys enforced deletes or nulls its children's rows.  So, as
Django's SQLite schema editor does, atomic steps run with foreign keys turned off
*before* ``BEGIN`` (once per run, on again at ``close()``), and before committing
``fkguard`` checks that the step left no row pointing at nothing that was not
already so.

The cost per step is what a step must cost: on both databases a step is ``BEGIN``,
the script's statements, one statement writing its history row and audit event
(two on SQLite), ``COMMIT``; everything that does not change from step to step
(session settings, who is running, the masked URL, prepared SQL, the blocker-watch
thread) is set up once per run (``bench/`` measures it).
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback as traceback_module
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, connections, transaction

from migrator import conf, fkguard, history, redact, targets, timeouts
from migrator.database import Database
from migrator.errors import DatabaseUnavailable, MigrationFailed
from migrator.logs import step_fields
from migrator.scripts import Script

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepResult:
    action: str  # apply | revert | fake
    version: str
    name: str
    outcome: str  # success | failure
    duration_ms: float
    error: str = ""
    statements: int = 0


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
    # Facts for the audit event: lock retries made, sessions seen blocking the step.
    details: dict[str, Any] = field(default_factory=dict)
    blockers: list[dict[str, Any]] = field(default_factory=list)

    def restart(self) -> None:
        """A retried attempt: keep only its own statements."""
        self.statements = []
        self.count = 0

    def __call__(self, execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        self.count += 1
        if len(self.statements) < self.limit:
            entry: dict[str, Any] = {"sql": str(sql)}
            if params:
                entry["params"] = _params_for_audit(sql, params, many)
            self.statements.append(entry)
        return execute(sql, params, many, context)


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


class Executor:
    """Runs steps on one alias.  The caller holds the migration lock."""

    def __init__(
        self,
        alias: str,
        progress: Progress | None = None,
        step_timeouts: timeouts.StepTimeouts | None = None,
    ) -> None:
        self.alias = alias
        self.progress = progress or Progress()
        self.timeouts = step_timeouts or timeouts.StepTimeouts.resolve()
        self.connection = connections[alias]
        self.database = targets.describe(alias)
        # Per run, not per step: the writer of history rows and audit events, SQLite's
        # foreign-key guard, the session the settings below are on, PostgreSQL's
        # blocker watch.  ``close()`` undoes the session settings.
        self._writer: history.Writer | None = None
        self._guard = fkguard.ForeignKeyGuard(self.connection) if self._sqlite else None
        self._session: Any = None
        self._fk_off = False
        self._journal = ""  # SQLite's journal mode to put back at close()
        self._watcher: timeouts.BlockerWatch | None = None

    @property
    def _sqlite(self) -> bool:
        return self.connection.vendor == "sqlite"

    @property
    def _postgresql(self) -> bool:
        return self.connection.vendor == "postgresql"

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
            history.record_applied(
                self.alias,
                version=script.version,
                name=script.name,
                description=script.description,
                checksum=script.checksum,
                duration_ms=0,
            )
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
            with contextlib.suppress(DatabaseError), self.connection.cursor() as cursor:
                if self._fk_off:
                    cursor.execute("PRAGMA foreign_keys = ON")
                if self._journal:
                    cursor.execute(f"PRAGMA journal_mode = {self._journal}")
                if self._postgresql and self.timeouts.statements(local=False):
                    cursor.execute("RESET lock_timeout; RESET statement_timeout")
        self._session, self._fk_off, self._journal = None, False, ""

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
        db = Database(self.connection)
        started = time.perf_counter()
        try:
            if script.atomic:
                duration = self._atomic_with_retries(action, script, func, capture, db)
            else:
                self._prepare_session(atomic=False)
                with self.connection.execute_wrapper(capture), self._watch(capture):
                    func(db)
                duration = _ms_since(started)
                with transaction.atomic(using=self.alias):
                    self._record_success(action, script, duration, capture)
        except BaseException as exc:
            duration = _ms_since(started)
            error = self._explain(exc, capture)
            note = self._record_failure(action, script, exc, duration, capture)
            result = StepResult(
                action,
                str(script.version),
                script.name,
                history.FAILURE,
                duration,
                error,
                capture.count,
            )
            self._log(result)
            self.progress.on_done(result)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt / SystemExit: recorded, now let it through
            undone = (
                "rolled back, nothing of it remains"
                if script.atomic
                else "it ran outside a transaction" + ("" if note else " and is recorded as failed")
            )
            verb = "apply" if action == "apply" else "revert"
            raise MigrationFailed(
                f"{script.label} failed to {verb}: {error} ({undone}{note})",
                str(script.version),
                step=result,
            ) from exc
        result = StepResult(
            action, str(script.version), script.name, history.SUCCESS, duration, "", capture.count
        )
        self._log(result)
        self.progress.on_done(result)
        return result

    def _atomic_with_retries(
        self,
        action: str,
        script: Script,
        func: Callable[[Database], Any],
        capture: _Capture,
        db: Database,
    ) -> float:
        """Run an atomic step; when PostgreSQL's lock_timeout fires, retry the whole
        transaction after a pause (as strong_migrations does), up to the retry limit."""
        while True:
            capture.restart()
            started = time.perf_counter()
            try:
                local = self._prepare_session(atomic=True)
                with transaction.atomic(using=self.alias):
                    if local:
                        self._set_timeouts(local=True)
                    with (
                        self._tracking(),
                        self.connection.execute_wrapper(capture),
                        self._watch(capture),
                    ):
                        func(db)
                    self._check_foreign_keys()
                    duration = _ms_since(started)
                    self._record_success(action, script, duration, capture)
                return duration
            except DatabaseError as exc:
                retries = int(capture.details.get("lock_retries", 0))
                if not timeouts.is_lock_timeout(exc) or retries >= self.timeouts.lock_retries:
                    raise
                capture.details["lock_retries"] = retries + 1
                blocked = timeouts.describe_blockers(capture.blockers) or "an unknown session"
                self.progress.on_message(
                    f" lock_timeout ({self.timeouts.lock_timeout:g} s), blocked by {blocked}; "
                    f"retry {retries + 1} of {self.timeouts.lock_retries} "
                    f"in {self.timeouts.retry_pause:g} s"
                )
                time.sleep(self.timeouts.retry_pause)
                self.progress.on_start(action, script)

    @contextlib.contextmanager
    def _watch(self, capture: _Capture) -> Iterator[None]:
        """While a PostgreSQL step runs with a lock timeout, note who blocks it."""
        if not self._postgresql or not self.timeouts.lock_timeout:
            yield
            return
        if self._watcher is None:
            self._watcher = timeouts.BlockerWatch(self.connection, self.timeouts.lock_timeout)
        watch = self._watcher
        try:
            with watch.watching():
                yield
        finally:
            if watch.blockers:
                capture.blockers = watch.blockers
                capture.details["blocked_by"] = watch.blockers

    def _explain(self, exc: BaseException, capture: _Capture) -> str:
        """The one-line reason a step failed, in the user's terms."""
        error = _one_line(exc)
        if timeouts.connection_lost(exc, self.connection):
            # pg_terminate_backend, a restarted server, a cut network: the server rolled
            # the transaction back and dropped the session's migration lock with it.
            return f"the connection to the database was lost ({error})"
        if timeouts.is_lock_timeout(exc):
            tries = int(capture.details.get("lock_retries", 0)) + 1
            blocked = timeouts.describe_blockers(capture.blockers)
            who = (
                f"blocked by {blocked}; wait for it to finish or end it "
                f"(SELECT pg_terminate_backend({capture.blockers[0]['pid']}))"
                if blocked
                else "the blocking session could not be identified (see pg_locks)"
            )
            return (
                f"gave up waiting for a lock: lock_timeout ({self.timeouts.lock_timeout:g} s) "
                f"reached {tries} time(s); {who}, then run again, or raise "
                "--pg-lock-timeout / --pg-lock-retries"
            )
        if timeouts.is_statement_timeout(exc):
            return (
                f"statement_timeout ({self.timeouts.statement_timeout:g} s) reached ({error}); "
                "raise --pg-statement-timeout if the step needs longer"
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
        self, action: str, script: Script, duration: float, capture: _Capture
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
            "details": {
                "atomic": script.atomic,
                "checksum": script.checksum,
                "statement_count": capture.count,
                **capture.details,
            },
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
        self, action: str, script: Script, exc: BaseException, duration: float, capture: _Capture
    ) -> str:
        """Audit a failed step after its transaction is gone; return a note for the message."""
        trace = "".join(traceback_module.format_exception(exc))

        def write() -> None:
            with transaction.atomic(using=self.alias):
                if not script.atomic:
                    # Part of it ran and stayed: say so in the state, not only in the log.
                    history.record_applied(
                        self.alias,
                        version=script.version,
                        name=script.name,
                        description=script.description,
                        checksum=script.checksum,
                        duration_ms=duration,
                        status=history.FAILED,
                        error=f"{action} failed: {_one_line(exc)}",
                    )
                history.audit(
                    self.alias,
                    action,
                    history.FAILURE,
                    version=script.version,
                    name=script.name,
                    duration_ms=duration,
                    error=_one_line(exc),
                    traceback=trace,
                    statements=capture.statements,
                    details={
                        "atomic": script.atomic,
                        "checksum": script.checksum,
                        "statement_count": capture.count,
                        **capture.details,
                    },
                )

        for attempt in (1, 2):
            try:
                if attempt == 2:
                    # The connection may have died with the step: open a new one.
                    targets.connect(self.alias)
                write()
                return ""
            except (DatabaseError, DatabaseUnavailable) as audit_exc:
                logger.info("could not audit the failure (attempt %s): %s", attempt, audit_exc)
                self.connection.close()
        if not script.atomic:
            return (
                "; the failure could not be written to the audit log nor recorded as failed: "
                "the database is unreachable, so check by hand what of it was applied before "
                "running again"
            )
        return "; the failure could not be written to the audit log: the database is unreachable"

    # -- vendor details ----------------------------------------------------------------
    def _prepare_session(self, atomic: bool) -> bool:
        """Put the session as the next step needs it, changing only what differs.

        SQLite: foreign keys off for an atomic step (``PRAGMA foreign_keys`` is ignored
        inside a transaction, so it is set before ``BEGIN``), on for a non-atomic one.
        PostgreSQL: the step timeouts, set once on the session.  A new connection (after
        a lost one) starts from the defaults again.  Inside a caller's own transaction
        nothing sticks: returns True when the timeouts must be set per step (``LOCAL``).
        """
        self.connection.ensure_connection()
        if self.connection.in_atomic_block:
            return self._postgresql
        raw = self.connection.connection
        if raw is not self._session:
            self._session, self._fk_off, self._journal = raw, False, ""
            if self._postgresql:
                self._set_timeouts(local=False)
            else:
                self._truncate_journal()
        if self._sqlite and self._fk_off != atomic:
            with self.connection.cursor() as cursor:
                cursor.execute(f"PRAGMA foreign_keys = {'OFF' if atomic else 'ON'}")
            self._fk_off = atomic
        return False

    def _truncate_journal(self) -> None:
        """SQLite's default rollback journal is deleted at every commit (an unlink and a
        directory sync per step); ``TRUNCATE`` empties it instead, as durable and
        cheaper.  It is this connection's setting only, and ``close()`` puts it back."""
        with self.connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            mode = str(cursor.fetchone()[0]).lower()
            if mode == "delete":
                cursor.execute("PRAGMA journal_mode = TRUNCATE")
                self._journal = "DELETE"

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

    def _set_timeouts(self, local: bool) -> None:
        if not self._postgresql:
            return
        with self.connection.cursor() as cursor:
            for statement in self.timeouts.statements(local):
                cursor.execute(statement)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _one_line(exc: BaseException) -> str:
    text = redact.scrub(str(exc)).strip().splitlines()
    first = text[0].strip() if text else ""
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__
