"""Checks and helpers every validation shares: reaching the database, loading scripts."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connections

from migrator import conf, history, locking, planner, redact, scripts, targets
from migrator.errors import MigratorError, ScriptError
from migrator.planner import MigrationState
from migrator.scripts import Script
from migrator.validation.base import CheckResult, failed, passed
from migrator.vendors import is_lock_timeout


def connectivity(alias: str) -> CheckResult:
    """Connect and say which server answered, and how fast (the seed's "database connectivity")."""
    started = time.perf_counter()
    try:
        connection = targets.connect(alias)
        version = server_version(connection)
    except MigratorError as exc:
        return failed("connectivity", str(exc))
    except DatabaseError as exc:
        return failed("connectivity", targets.connection_error_message(alias, exc))
    ms = (time.perf_counter() - started) * 1000
    return passed(
        "connectivity",
        f"connected to {version} in {ms:.0f} ms",
        {"server_version": version, "connect_ms": round(ms, 1)},
    )


@contextlib.contextmanager
def bounded_lock_waits(alias: str) -> Iterator[None]:
    """On PostgreSQL, make every statement of a validation give up on a lock after a while.

    Even reading a table's description waits behind another session's ``ACCESS
    EXCLUSIVE`` lock; a validation must report such a lock, not hang on it.  The
    session's ``lock_timeout`` is set to ``PREFLIGHT_LOCK_TIMEOUT`` and reset after.
    """
    connection = connections[alias]
    if connection.vendor != "postgresql":
        yield
        return
    seconds = float(conf.get("PREFLIGHT_LOCK_TIMEOUT"))
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = %s", [f"{int(seconds * 1000)}ms"])
    try:
        yield
    finally:
        with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")


def guarded(name: str, check: Callable[[], Any]) -> list[CheckResult]:
    """Run a check; a database error becomes a FAIL of that check instead of a crash."""
    try:
        found = check()
    except DatabaseError as exc:
        text = one_line(exc)
        hint = (
            " (another session holds a lock on a table it reads: see pg_locks, or "
            "`tbmigrate validate migration VERSION`'s locks check)"
            if is_lock_timeout(exc)
            else ""
        )
        return [failed(name, f"could not be checked: {text}{hint}")]
    if found is None:
        return []
    return [found] if isinstance(found, CheckResult) else list(found)


def one_line(exc: BaseException) -> str:
    lines = redact.scrub(str(exc)).strip().splitlines()
    first = lines[0].strip() if lines else ""
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__


def server_version(connection: Any) -> str:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return f"PostgreSQL {cursor.fetchone()[0].split()[0]}"
    return f"SQLite {sqlite3.sqlite_version}"


def sqlite_file(alias: str) -> Path | None:
    """The SQLite file of ``alias`` (``None`` for PostgreSQL or an in-memory database)."""
    if targets.vendor(alias) != "sqlite":
        return None
    name = str(connections.settings[alias].get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


def exists(alias: str) -> bool:
    """Whether ``alias`` can be opened without creating it (a missing SQLite file is not)."""
    path = sqlite_file(alias)
    return path is None or path.exists()


@dataclass
class Loaded:
    """The scripts that load, and one phrase for each that does not."""

    scripts: list[Script] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def by_version(self) -> dict[str, Script]:
        return {str(s.version): s for s in self.scripts}


def load_each(folder: Path) -> Loaded:
    """Load every script on its own, so one broken file does not hide the others."""
    loaded = Loaded()
    for path in scripts.script_files(folder):
        try:
            loaded.scripts.append(scripts.load_script(path))
        except ScriptError as exc:
            loaded.problems.append(str(exc))
    loaded.problems.extend(scripts._duplicates(loaded.scripts))  # the loader's own wording
    loaded.scripts.sort(key=lambda s: s.version)
    return loaded


def scripts_check(loaded: Loaded) -> CheckResult:
    if loaded.problems:
        return failed(
            "scripts",
            f"{len(loaded.problems)} script problem(s): "
            + "; ".join(loaded.problems)
            + " (run and rollback refuse to start until every script loads)",
            loaded.problems,
        )
    return passed("scripts", f"{len(loaded.scripts)} script(s) load", [])


def states(alias: str, loaded: Loaded) -> list[MigrationState]:
    """The planner's states; a journaled step (``in_progress``) is ``running`` while
    someone holds the migration lock and ``interrupted`` once nobody does."""
    records = history.load(alias)
    running = any(r.in_progress for r in records) and locking.is_locked(alias) is not None
    return planner.states(loaded.scripts, records, running=running)


def labels(items: Sequence[Any]) -> str:
    return ", ".join(item.label for item in items)
