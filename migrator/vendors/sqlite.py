"""SQLite: foreign keys around steps, a cheaper journal, waits for other writers, the
file lock, a signal that stops a statement, and a file deleted under us."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError

from migrator import signals, targets
from migrator.errors import DatabaseUnavailable
from migrator.timeouts import StepTimeouts
from migrator.vendors.base import Vendor

# SQLite calls the progress handler every this many virtual-machine instructions: often
# enough that a signal stops a long statement within milliseconds, rarely enough to cost
# nothing measurable.
PROGRESS_EVERY = 20_000


def gave_up_waiting(exc: BaseException) -> bool:
    """Another writer held the database for longer than the busy timeout."""
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text


class SQLite(Vendor):
    name = "sqlite"

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        self._fk_off = False
        self._journal = ""  # the journal mode to put back at the end
        self._path = targets.sqlite_path(connection.alias)
        self._inode: tuple[int, int] | None = None

    def start_session(self, timeouts: StepTimeouts, busy_seconds: float) -> None:
        """Wait for another writer up to ``busy_seconds`` (sqlite3's own default is 5 s,
        then "database is locked"), and truncate the rollback journal instead of
        deleting it at every commit (an unlink and a directory sync per step): as
        durable, cheaper, and only this connection's setting."""
        self._fk_off, self._journal = False, ""
        # A deferred transaction that has read cannot wait for another writer (SQLite
        # answers "database is locked" at once, rather than risk a deadlock): each step
        # takes the write lock when it begins, and waits for it there.
        self._mode = self.connection.transaction_mode
        self.connection.transaction_mode = "IMMEDIATE"
        with self.connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {max(int(busy_seconds * 1000), 0)}")
            cursor.execute("PRAGMA journal_mode")
            if str(cursor.fetchone()[0]).lower() == "delete":
                cursor.execute("PRAGMA journal_mode = TRUNCATE")
                self._journal = "DELETE"
        self._inode = _identity(self._path)

    def before_step(self, atomic: bool, limits: StepTimeouts | None = None) -> None:
        """Foreign keys off for an atomic step, on for a non-atomic one.

        SQLite ignores ``PRAGMA foreign_keys`` inside a transaction, and rebuilding a
        parent table with them enforced deletes or nulls its children's rows (knex #1598,
        sequelize #5007); so, as Django's schema editor does, they go off *before*
        ``BEGIN``, and ``fkguard`` checks each atomic step before it commits.
        """
        if self._fk_off != atomic:
            with self.connection.cursor() as cursor:
                cursor.execute(f"PRAGMA foreign_keys = {'OFF' if atomic else 'ON'}")
            self._fk_off = atomic

    @property
    def foreign_keys_off(self) -> bool:
        return self._fk_off

    def end_session(self, timeouts: StepTimeouts) -> None:
        self.connection.transaction_mode = getattr(self, "_mode", None)
        with contextlib.suppress(DatabaseError), self.connection.cursor() as cursor:
            if self._fk_off:
                cursor.execute("PRAGMA foreign_keys = ON")
            if self._journal:
                cursor.execute(f"PRAGMA journal_mode = {self._journal}")
        self._fk_off, self._journal = False, ""

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A statement runs in C, where a Python signal handler cannot raise: the
        progress handler stops it (``OperationalError: interrupted``) once a signal has
        been received, and the executor turns that back into the signal."""
        raw = self.connection.connection

        def check() -> int:
            return 1 if signals.received() is not None else 0

        raw.set_progress_handler(check, PROGRESS_EVERY)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                raw.set_progress_handler(None, PROGRESS_EVERY)

    def check_present(self) -> None:
        """SQLite goes on writing into a file that was deleted (into its unlinked inode,
        which vanishes with the last handle): say so instead of "succeeding"."""
        if self._path is None or self._inode is None:
            return
        now = _identity(self._path)
        if now != self._inode:
            what = "was deleted" if now is None else "was replaced by another file"
            raise DatabaseUnavailable(
                f"the SQLite file {self._path} {what} while tbmigrate was using it; what was "
                "written since went into the old file and is lost with it. Nothing more was "
                "applied: restore the file (or a backup), then `tbmigrate status`"
            )

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return gave_up_waiting(exc)

    def migration_lock(self) -> FileLock:
        return FileLock(self.connection)


def _identity(path: Any) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


class FileLock:
    """``flock`` on ``<db>.tbmigrate.lock``, which also records who holds it (and the step
    it is on) so that a waiting run, ``status`` and the admin can say so."""

    def __init__(self, connection: Any) -> None:
        name = str(connection.settings_dict["NAME"])
        self.path = f"{name}.tbmigrate.lock"
        self.handle: Any = None
        self._facts: dict[str, Any] = {}

    def probe(self) -> bool:
        """Whether the lock is free, creating nothing (a missing lock file: nobody holds
        it, since a holder creates it first)."""
        try:
            handle = open(self.path, encoding="utf-8")  # noqa: SIM115
        except FileNotFoundError:
            return True
        except OSError:
            return True
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            handle.close()
        return True

    def try_acquire(self) -> bool:
        from migrator import history

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
        self._facts = {
            "pid": who.pid,
            "user": who.user,
            "host": who.host,
            "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        }
        self._write(self._facts)
        return True

    def _write(self, facts: dict[str, Any]) -> None:
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(json.dumps(facts))
        self.handle.flush()

    def note_step(self, label: str, action: str) -> None:
        with contextlib.suppress(OSError):
            self._write({**self._facts, "step": label, "action": action})

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
