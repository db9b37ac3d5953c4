"""The migration lock: one ``run``/``rollback`` per database at a time.

Both kinds die with their process, so a killed run never leaves a stale lock
(the Liquibase/yoyo lock-row problem):

- PostgreSQL: a session-level advisory lock on the migrating connection itself.  It
  is held outside any transaction, so ``CREATE INDEX CONCURRENTLY`` in a non-atomic
  step never waits on a session of our own (flyway #1654).
- SQLite: ``flock`` on a file beside the database (``<db>.tbmigrate.lock``), which
  also records who holds it so that a waiting run can say so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, connections

from migrator import history, targets
from migrator.errors import DatabaseUnavailable, LockTimeout

logger = logging.getLogger(__name__)

# "tbmigrat" as a signed 64-bit integer: the advisory lock key, per database.
PG_LOCK_KEY = int.from_bytes(b"tbmigrat", "big")
POLL_SECONDS = 0.2


def holder_description(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process"
    parts = [
        str(holder.get(key)) for key in ("application_name", "user", "host") if holder.get(key)
    ]
    if holder.get("pid"):
        parts.append(f"pid {holder['pid']}")
    if holder.get("backend_pid"):
        parts.append(f"server process {holder['backend_pid']}")
    if holder.get("since"):
        parts.append(f"since {holder['since']}")
    return ", ".join(parts) or "another process"


@contextlib.contextmanager
def migration_lock(
    alias: str, timeout: float, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the lock for the body; wait up to ``timeout`` seconds, then raise ``LockTimeout``."""
    lock = _PostgresLock(alias) if targets.vendor(alias) == "postgresql" else _FileLock(alias)
    deadline = time.monotonic() + max(timeout, 0)
    told = False
    while not lock.try_acquire():
        holder = lock.holder()
        if time.monotonic() >= deadline:
            raise LockTimeout(
                f"database {targets.describe(alias)} is being migrated by "
                f"{holder_description(holder)}; gave up after {timeout:g} s "
                "(wait for it to finish, or raise --lock-timeout)"
            )
        if not told and on_wait:
            on_wait(f"waiting for the migration lock held by {holder_description(holder)}...")
            told = True
        time.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        lock.release()


class _PostgresLock:
    def __init__(self, alias: str) -> None:
        self.connection = connections[alias]

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
            SELECT a.pid, a.application_name, a.usename, host(a.client_addr), a.backend_start
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
        return {
            "backend_pid": row[0],
            "application_name": row[1],
            "user": row[2],
            "host": row[3],
            "since": row[4].strftime("%Y-%m-%d %H:%M:%S") if row[4] else None,
        }

    def release(self) -> None:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [PG_LOCK_KEY])
        except DatabaseError:
            # The session is gone, and the server dropped its lock with it.
            logger.info("could not release the migration lock; its session already ended")


class _FileLock:
    def __init__(self, alias: str) -> None:
        name = str(connections[alias].settings_dict["NAME"])
        self.path = f"{name}.tbmigrate.lock"
        self.handle: Any = None

    def try_acquire(self) -> bool:
        if self.handle is None:
            try:
                self.handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise DatabaseUnavailable(
                    f"cannot create the lock file {self.path}: {exc.strerror} "
                    "(the folder of the SQLite file must be writable)"
                ) from None
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        who = history.actor()
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(
            json.dumps(
                {
                    "pid": who.pid,
                    "user": who.user,
                    "host": who.host,
                    "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
                }
            )
        )
        self.handle.flush()
        return True

    def holder(self) -> dict[str, Any] | None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                return json.loads(handle.read() or "null")
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.seek(0)
                self.handle.truncate()
                self.handle.flush()
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


def is_locked(alias: str) -> dict[str, Any] | None:
    """Who holds the lock right now (``None`` when free); never waits."""
    lock = _PostgresLock(alias) if targets.vendor(alias) == "postgresql" else _FileLock(alias)
    if lock.try_acquire():
        lock.release()
        return None
    return lock.holder() or {}
