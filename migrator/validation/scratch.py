"""Throw-away databases to replay scripts on, removed whatever happens.

The expected schema is *derived*, never hand-kept: the scripts are replayed on an
empty database of the same vendor and the result is introspected.  That database
must vanish afterwards, also when a script raises half-way or the user presses
Ctrl-C, so everything happens in one ``try/finally`` whose cleanup does not depend
on how far the set-up got (``DROP DATABASE IF EXISTS`` runs even if ``CREATE``
was interrupted).

- SQLite: a file in a new temporary folder; the folder is deleted.

Neither waits for the disk at each commit (``synchronous = OFF``,
``synchronous_commit = off``): nothing in them needs to survive a crash.
- PostgreSQL: ``CREATE DATABASE tbmigrate_scratch_<pid>_<random>`` on the server of
  the alias being validated, dropped ``WITH (FORCE)`` (PostgreSQL 13+), which also
  ends any session a misbehaving script left open on it.  The user needs the
  ``CREATEDB`` privilege; without it the error says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from django.db import DatabaseError, connections

from migrator import history, redact, targets
from migrator.errors import DatabaseUnavailable
from migrator.executor import Executor
from migrator.scripts import Script
from migrator.validation.introspect import Key, Schema, introspect
from migrator.validation.tracker import Tracker

logger = logging.getLogger(__name__)

PREFIX = targets.SCRATCH_PREFIX

# tbmigrate's own tables and Django's migration record: made afresh on a scratch copy.
COPY_EXCLUDES = (*history.TABLES, "django_migrations")


def copy_live_schema(source: str, scratch: str) -> str:
    """Copy ``source``'s schema, no rows, into the new PostgreSQL scratch database
    ``scratch`` (``backup.copy_schema``) and make tbmigrate's tables there; ``""`` when
    done, else why not, the scratch database left empty (pg_restore's one transaction)."""
    from migrator import backup
    from migrator.errors import BackupFailed

    try:
        backup.copy_schema(source, scratch, exclude=COPY_EXCLUDES)
    except BackupFailed as exc:
        return str(exc)
    history.ensure_schema(scratch)
    return ""


def scratch_name() -> str:
    return f"{PREFIX}{os.getpid()}_{secrets.token_hex(4)}"


@contextlib.contextmanager
def scratch_database(server_alias: str, vendor: str | None = None) -> Iterator[str]:
    """Yield the alias of a new, empty database; drop it on the way out, always.

    ``server_alias`` says where a PostgreSQL scratch database is created (its server
    and credentials); it is not otherwise touched.  ``vendor`` defaults to its vendor.
    """
    vendor = vendor or targets.vendor(server_alias)
    name = scratch_name()
    if vendor == "sqlite":
        with _sqlite(name) as alias:
            yield alias
    elif vendor == "postgresql":
        with _postgresql(server_alias, name) as alias:
            yield alias
    else:  # pragma: no cover - targets.require rejects other vendors first
        raise DatabaseUnavailable(f"no scratch database for {vendor}")


@contextlib.contextmanager
def _sqlite(name: str) -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="tbmigrate-scratch-"))
    try:
        targets.add(
            name,
            {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(folder / f"{name}.sqlite3"),
                # a throw-away file: its commits need not wait for the disk
                "OPTIONS": {"init_command": "PRAGMA synchronous = OFF"},
            },
        )
        yield name
    finally:
        targets.remove(name)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _postgresql(server_alias: str, name: str) -> Iterator[str]:
    server = connections[server_alias]
    config = dict(connections.settings[server_alias])
    config["NAME"] = name
    config.pop("TEST", None)
    try:
        try:
            with server.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
                # A throw-away database: its commits need not wait for the WAL to reach
                # the disk (a step commits as often as in a run; here nobody needs it).
                cursor.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        except DatabaseError as exc:
            reason = (redact.scrub(str(exc)).strip().splitlines() or ["?"])[0]
            hint = (
                "; give the user the CREATEDB privilege (ALTER ROLE ... CREATEDB)"
                if "permission denied" in reason.lower()
                else ""
            )
            raise DatabaseUnavailable(
                f"cannot create a scratch database on {targets.describe(server_alias)}: "
                f"{reason}{hint}"
            ) from exc
        targets.add(name, config)
        yield name
    finally:
        targets.remove(name)
        _drop_soon(server_alias, name)


# Threads dropping scratch databases, while ``drops_in_background`` is active.
_pending: ContextVar[list[threading.Thread] | None] = ContextVar(
    "tbmigrate_scratch_drops", default=None
)


@contextlib.contextmanager
def drops_in_background() -> Iterator[None]:
    """Drop the PostgreSQL scratch databases of the body in a thread; wait at the end.

    ``DROP DATABASE`` waits for a checkpoint, which on a busy server takes seconds; a
    validation that has read the scratch database's schema goes on with the live one
    meanwhile.  Every drop is finished when the body ends, also on an error or Ctrl-C
    (the thread is not a daemon: the process does not end before it).
    """
    threads: list[threading.Thread] = []
    token = _pending.set(threads)
    try:
        yield
    finally:
        _pending.reset(token)
        for thread in threads:
            thread.join()


def _drop_soon(server_alias: str, name: str) -> None:
    threads = _pending.get()
    if threads is None:
        _drop(server_alias, name)
        return

    def work() -> None:
        try:
            _drop(server_alias, name)
        finally:
            connections[server_alias].close()  # this thread's own connection

    thread = threading.Thread(target=work, name=f"drop {name}")
    thread.start()
    threads.append(thread)


def _drop(server_alias: str, name: str) -> None:
    """Drop the scratch database, retrying once on a fresh connection."""
    for attempt in (1, 2):
        try:
            with connections[server_alias].cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except DatabaseError as exc:
            logger.warning(
                "could not drop scratch database %s (attempt %s): %s", name, attempt, exc
            )
            connections[server_alias].close()
    logger.error("scratch database %s was left behind; drop it by hand", name)


@dataclass
class Replayed:
    """The schema the scripts build, and which script made each object what it is."""

    expected: Schema
    origins: dict[Key, str] = field(default_factory=dict)
    steps: int = 0
    reads: int = 0  # catalog readings made along the way (one per step at most, + 2)


def replay(alias: str, to_apply: Sequence[Script]) -> Replayed:
    """Apply ``to_apply`` in order on ``alias`` with the executor; the schema they build.

    The executor is the one ``run`` uses (a transaction per step, foreign keys off
    before ``BEGIN`` on SQLite, non-atomic scripts in autocommit), so the replay builds
    exactly what ``run`` would.  It records history and audit rows in the scratch
    database as usual; they are ignored and vanish with it.  After each step a
    ``Tracker`` reads what the step changed, to know which script last set each
    object (``origins``: for an object of the final schema the script that gave it
    its final attributes; for one that is gone at the end, the script that dropped
    it); the final schema is read whole.  ``MigrationFailed`` propagates, naming the
    script.
    """
    history.ensure_schema(alias)
    connection = connections[alias]
    tracker = Tracker(connection)
    made: dict[Key, str] = {}
    dropped: dict[Key, str] = {}
    with Executor(alias) as executor:
        for script in to_apply:
            with tracker.step() as changes:
                executor.apply(script)
            for key, (_old, new) in changes.items():
                if new is None:
                    dropped[key] = script.label
                else:
                    made[key] = script.label
                    dropped.pop(key, None)
    expected = introspect(connection)
    origins = {key: made[key] for key in expected.objects if key in made}
    origins.update({key: label for key, label in dropped.items() if key not in expected.objects})
    return Replayed(expected, origins, len(to_apply), tracker.reads + 1)
