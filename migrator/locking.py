"""The migration lock: one ``run``/``rollback``/``repair``/``backup`` per database at a time.

Both kinds die with their process, so a killed run never leaves a stale lock (the
Liquibase/yoyo lock-row problem); each vendor module has its own (``vendors/``):

- PostgreSQL: a session-level advisory lock on the migrating connection itself, held
  outside any transaction, so ``CREATE INDEX CONCURRENTLY`` in a non-atomic step never
  waits on a session of our own (flyway #1654).
- SQLite: ``flock`` on a file beside the database (``<db>.tbmigrate.lock``), which also
  records who holds it so that a waiting run can say so.

While a run holds the lock it names the step it is on (``Held.note_step``): the
holder's description then says what is running, for ``status`` and the admin.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.db import connections

from migrator import targets, vendors
from migrator.errors import LockTimeout
from migrator.vendors.postgresql import PG_LOCK_KEY

__all__ = ["PG_LOCK_KEY", "holder_description", "is_locked", "migration_lock"]

POLL_SECONDS = 0.2


def holder_description(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process"
    parts = [
        str(holder.get(key)) for key in ("application_name", "user", "host") if holder.get(key)
    ]
    if holder.get("pid") and not str(holder.get("application_name", "")).startswith(
        f"tbmigrate pid={holder['pid']}"
    ):
        parts.append(f"pid {holder['pid']}")
    if holder.get("backend_pid"):
        parts.append(f"server process {holder['backend_pid']}")
    if holder.get("since"):
        parts.append(f"since {holder['since']}")
    if holder.get("step") and holder.get("action"):
        parts.append(f"now at {holder['action']} {holder['step']}")
    return ", ".join(parts) or "another process"


class Held:
    """The lock while it is held: lets the holder say which step it is on."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock

    def note_step(self, label: str, action: str) -> None:
        self._lock.note_step(label, action)


@contextlib.contextmanager
def migration_lock(
    alias: str, timeout: float, on_wait: Callable[[str], None] | None = None
) -> Iterator[Held]:
    """Hold the lock for the body; wait up to ``timeout`` seconds, then raise ``LockTimeout``."""
    lock = vendors.of(connections[alias]).migration_lock()
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
        yield Held(lock)
    finally:
        lock.release()


def is_locked(alias: str) -> dict[str, Any] | None:
    """Who holds the lock right now (``None`` when free); never waits."""
    lock = vendors.of(connections[alias]).migration_lock()
    probe = getattr(lock, "probe", None)
    if probe is not None:  # SQLite: look without creating the lock file
        return None if probe() else (lock.holder() or {})
    if lock.try_acquire():
        lock.release()
        return None
    return lock.holder() or {}
