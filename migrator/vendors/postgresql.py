"""PostgreSQL: step timeouts on the migrating session, the advisory lock, its errors."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.db import DatabaseError

from migrator import targets
from migrator.errors import DatabaseUnavailable
from migrator.timeouts import (
    CONNECTION_LOST_PREFIXES,
    LOCK_NOT_AVAILABLE,
    StepTimeouts,
    milliseconds,
    sqlstate,
)
from migrator.vendors.base import Vendor

logger = logging.getLogger(__name__)

# "tbmigrat" as a signed 64-bit integer: the advisory lock key, per database.
PG_LOCK_KEY = int.from_bytes(b"tbmigrat", "big")


def gave_up_waiting(exc: BaseException) -> bool:
    """``lock_timeout`` fired (SQLSTATE 55P03, looked for through Django's wrapping)."""
    return sqlstate(exc) == LOCK_NOT_AVAILABLE


class PostgreSQL(Vendor):
    name = "postgresql"

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        # The session's timeouts as we set them ('250ms', '0'); unknown until set (the
        # server, role or database may have their own defaults).
        self._set: dict[str, str] = {}

    def start_session(self, timeouts: StepTimeouts, busy_seconds: float) -> None:
        """A new session: nothing set on it yet (``before_step`` sets what each step needs;
        ``end_session`` resets it)."""
        self._set = {}

    def before_step(self, atomic: bool, limits: StepTimeouts | None = None) -> None:
        """The step's lock wait, and for an atomic step its statement timeout (a
        non-atomic step runs long by design, so none): only what differs from the last
        step is sent, so a run of like steps sets them once."""
        if limits is None:
            return
        self._apply(
            {
                "lock_timeout": milliseconds(limits.lock_timeout_at(1)),
                "statement_timeout": milliseconds(limits.statement_timeout if atomic else None),
            }
        )

    def set_lock_timeout(self, seconds: float | None) -> None:
        """The session's lock wait for the next attempt (outside a transaction that a
        retry would undo: it must stick)."""
        self._apply({"lock_timeout": milliseconds(seconds)})

    def local_timeouts(self, timeouts: StepTimeouts) -> None:
        with self.connection.cursor() as cursor:
            for statement in timeouts.statements(local=True):
                cursor.execute(statement)

    def end_session(self, timeouts: StepTimeouts) -> None:
        if self._set:
            with contextlib.suppress(DatabaseError), self.connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout; RESET statement_timeout")
        self._set = {}

    def _apply(self, wanted: dict[str, str]) -> None:
        changes = {name: value for name, value in wanted.items() if self._set.get(name) != value}
        if not changes:
            return
        # On the driver's own cursor: tbmigrate's session settings are not the script's
        # statements (the audit event, `tbmigrate sql` and the gate see past them).
        with self.connection.wrap_database_errors, self.connection.connection.cursor() as cursor:
            cursor.execute("; ".join(f"SET {name} = '{value}'" for name, value in changes.items()))
        self._set.update(changes)

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return gave_up_waiting(exc)

    def connection_lost(self, exc: BaseException) -> bool:
        code = sqlstate(exc) or ""
        return code.startswith(CONNECTION_LOST_PREFIXES) or super().connection_lost(exc)

    def migration_lock(self) -> AdvisoryLock:
        return AdvisoryLock(self.connection)


class AdvisoryLock:
    """A session-level advisory lock on the migrating connection itself: held outside
    any transaction, so ``CREATE INDEX CONCURRENTLY`` in a non-atomic step never waits
    on a session of our own (flyway #1654), and gone with the session when the process
    dies."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def try_acquire(self) -> bool:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [PG_LOCK_KEY])
                return bool(cursor.fetchone()[0])
        except DatabaseError as exc:
            raise DatabaseUnavailable(
                targets.connection_error_message(self.connection.alias, exc)
            ) from exc

    def holder(self) -> dict[str, Any] | None:
        sql = """
            SELECT a.pid, a.application_name, a.usename, host(a.client_addr), a.backend_start,
                   a.state, a.xact_start, left(a.query, 200)
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.classid = %s AND l.objid = %s AND l.objsubid = 1
        """
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [PG_LOCK_KEY >> 32, PG_LOCK_KEY & 0xFFFFFFFF])
            row = cursor.fetchone()
        if not row:
            return None
        holder = {
            "backend_pid": row[0],
            "application_name": row[1],
            "user": row[2],
            "host": row[3],
            "since": row[4].strftime("%Y-%m-%d %H:%M:%S") if row[4] else None,
            "state": row[5],
            "xact_start": row[6].isoformat() if row[6] else None,
            "query": " ".join(str(row[7] or "").split()),
        }
        holder.update(targets.parse_application_name(row[1] or ""))
        return holder

    def note_step(self, label: str, action: str) -> None:
        """Name the step now running in the session's application_name, which other
        sessions read (``status``, the admin's now-running page, a DBA's pg_stat_activity)."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('application_name', %s, false)",
                [targets.application_name(step=label.split(" ", 1)[0], action=action)],
            )

    def release(self) -> None:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [PG_LOCK_KEY])
                cursor.execute(
                    "SELECT set_config('application_name', %s, false)",
                    [targets.application_name()],
                )
        except DatabaseError:
            # The session is gone, and the server dropped its lock with it.
            logger.info("could not release the migration lock; its session already ended")
