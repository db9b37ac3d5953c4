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
Django's SQLite schema editor does, each step turns foreign keys off *before*
``BEGIN`` and on again after, and checks before committing that the step left no
row pointing at nothing that was not already so.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback as traceback_module
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, connections, transaction

from migrator import conf, history, redact, targets, timeouts
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
        self._fk_baseline: Counter[tuple[str, str]] | None = None

    # -- public steps ------------------------------------------------------------------
    def apply(self, script: Script) -> StepResult:
        def record(duration_ms: float) -> None:
            history.record_applied(
                self.alias,
                version=script.version,
                name=script.name,
                description=script.description,
                checksum=script.checksum,
                duration_ms=duration_ms,
            )

        return self._step("apply", script, script.up, record)

    def revert(self, script: Script) -> StepResult:
        if script.down is None:  # the planner refuses these first; this is a last guard
            raise MigrationFailed(f"{script.label} has no down()", str(script.version))
        return self._step(
            "revert", script, script.down, lambda _ms: history.remove(self.alias, script.version)
        )

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

    # -- the step itself ---------------------------------------------------------------
    def _step(
        self,
        action: str,
        script: Script,
        func: Callable[[Database], Any],
        record: Callable[[float], None],
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
                duration = self._atomic_with_retries(action, script, func, record, capture, db)
            else:
                with (
                    self._session_timeouts(),
                    self.connection.execute_wrapper(capture),
                    self._watch(capture),
                ):
                    func(db)
                duration = _ms_since(started)
                with transaction.atomic(using=self.alias):
                    record(duration)
                    self._audit_success(action, script, duration, capture)
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
        record: Callable[[float], None],
        capture: _Capture,
        db: Database,
    ) -> float:
        """Run an atomic step; when PostgreSQL's lock_timeout fires, retry the whole
        transaction after a pause (as strong_migrations does), up to the retry limit."""
        while True:
            capture.restart()
            started = time.perf_counter()
            try:
                with self._foreign_keys_off(), transaction.atomic(using=self.alias):
                    self._set_timeouts(local=True)
                    with self.connection.execute_wrapper(capture), self._watch(capture):
                        func(db)
                    self._check_foreign_keys(script)
                    duration = _ms_since(started)
                    record(duration)
                    self._audit_success(action, script, duration, capture)
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
        if self.connection.vendor != "postgresql" or not self.timeouts.lock_timeout:
            yield
            return
        watch = timeouts.BlockerWatch(self.connection, self.timeouts.lock_timeout)
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

    def _audit_success(
        self, action: str, script: Script, duration: float, capture: _Capture
    ) -> None:
        history.audit(
            self.alias,
            action,
            history.SUCCESS,
            version=script.version,
            name=script.name,
            duration_ms=duration,
            statements=capture.statements,
            details={
                "atomic": script.atomic,
                "checksum": script.checksum,
                "statement_count": capture.count,
                **capture.details,
            },
        )

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
    @contextlib.contextmanager
    def _foreign_keys_off(self) -> Iterator[None]:
        if self.connection.vendor != "sqlite":
            yield
            return
        if self._fk_baseline is None:
            self._fk_baseline = self._fk_violations()
        with self.connection.cursor() as cursor:
            cursor.execute("PRAGMA foreign_keys = OFF")
        try:
            yield
        finally:
            with contextlib.suppress(DatabaseError), self.connection.cursor() as cursor:
                cursor.execute("PRAGMA foreign_keys = ON")

    def _fk_violations(self) -> Counter[tuple[str, str]]:
        with self.connection.cursor() as cursor:
            cursor.execute("PRAGMA foreign_key_check")
            return Counter((row[0], row[2]) for row in cursor.fetchall())

    def _check_foreign_keys(self, script: Script) -> None:
        if self.connection.vendor != "sqlite":
            return
        now = self._fk_violations()
        new = now - (self._fk_baseline or Counter())
        if new:
            (table, parent), count = next(iter(new.items()))
            raise DatabaseError(
                f"the step would leave {count} row(s) of {table} pointing at missing rows of "
                f"{parent} (foreign key check failed)"
            )

    def _set_timeouts(self, local: bool) -> None:
        if self.connection.vendor != "postgresql":
            return
        with self.connection.cursor() as cursor:
            for statement in self.timeouts.statements(local):
                cursor.execute(statement)

    @contextlib.contextmanager
    def _session_timeouts(self) -> Iterator[None]:
        self._set_timeouts(local=False)
        try:
            yield
        finally:
            if self.connection.vendor == "postgresql":
                with contextlib.suppress(DatabaseError), self.connection.cursor() as cursor:
                    cursor.execute("RESET lock_timeout; RESET statement_timeout")


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _one_line(exc: BaseException) -> str:
    text = redact.scrub(str(exc)).strip().splitlines()
    first = text[0].strip() if text else ""
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__
