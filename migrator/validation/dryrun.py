"""Run ``up``s or ``down``s on the live database inside a transaction that is always rolled back.

Both databases roll DDL back, so a step run this way leaves nothing behind (one
exception: PostgreSQL sequences advanced by a dry-run ``INSERT`` stay advanced).
What it did is kept: every statement (``connection.execute_wrapper``, as the
executor records them), the tables it locked or named, and whatever ``inspect``
reads at the end, still inside the transaction (the schema after, row counts).

SQLite ignores ``PRAGMA foreign_keys`` inside a transaction, and a table rebuild
with foreign keys on cascades into the children even when it is rolled back later
(the executor's docstring has the story), so foreign keys go off *before* ``BEGIN``
and on again after, and the step is checked for new dangling rows as the executor
does.  On PostgreSQL a ``lock_timeout`` bounds the wait for a lock, so a dry run
behind a session holding a table never hangs.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, connections, transaction

from migrator import conf, redact
from migrator.database import Database
from migrator.validation.common import one_line
from migrator.validation.introspect import Schema, ignored_tables, introspect, table_columns
from migrator.vendors import is_lock_timeout

Step = tuple[str, Callable[[Database], Any]]  # (label, up or down)


@dataclass
class DryRun:
    """What a rolled-back run of some steps did."""

    statements: list[dict[str, Any]] = field(default_factory=list)
    statement_count: int = 0
    completed: list[str] = field(default_factory=list)  # labels of the steps that finished
    failed_step: str | None = None
    error: str | None = None
    lock_timeout: bool = False
    locks: dict[str, str] = field(default_factory=dict)  # table -> strongest mode we took (PG)
    named: set[str] = field(default_factory=set)  # existing tables the statements name
    before: Schema | None = None
    after: Schema | None = None
    inspected: Any = None
    # (step, {table it named: its columns after the step, None if gone}), see ``track``
    trail: list[tuple[str, dict[str, set[str] | None]]] = field(default_factory=list)
    words: set[str] = field(default_factory=set)  # every word of every statement, lower case

    def dropped_by(self, table: str, column: str | None = None) -> str | None:
        """The step after which ``table`` (or ``table.column``) was gone (needs ``track``)."""
        for label, changed in self.trail:
            if table not in changed:
                continue
            columns = changed[table]
            if columns is None or (column is not None and column not in columns):
                return label
        return None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def tables(self) -> list[str]:
        """Existing tables the steps touched: locked by them (PostgreSQL) or named."""
        existing = self.before.tables if self.before else set()
        return sorted((set(self.locks) | self.named) & existing)


_WORD = re.compile(r"[A-Za-z_][\w$]*")
_QUOTED = re.compile(r'"((?:[^"]|"")+)"|`([^`]+)`|\[([^\]]+)\]')


class _Capture:
    """Keeps the first statements, and the words of all of them: the tables a step
    names are found among its words (a set lookup per table, however long the SQL)."""

    def __init__(self, result: DryRun, limit: int) -> None:
        self.result = result
        self.limit = limit
        self.step = ""
        self.step_words: set[str] = set()

    def __call__(self, execute, sql, params, many, context):
        self.result.statement_count += 1
        text = str(sql)
        self.step_words.update(word.lower() for word in _WORD.findall(text))
        if '"' in text or "`" in text or "[" in text:
            for groups in _QUOTED.findall(text):
                self.step_words.update(g.replace('""', '"').lower() for g in groups if g)
        if len(self.result.statements) < self.limit:
            entry: dict[str, Any] = {"step": self.step, "sql": redact.scrub(str(sql))}
            if params and not many:
                entry["params"] = [
                    p if isinstance(p, int | float | str | bool | type(None)) else str(p)
                    for p in params
                ]
            self.result.statements.append(entry)
        return execute(sql, params, many, context)


def dry_run(
    alias: str,
    steps: Sequence[Step],
    *,
    inspect: Callable[[Any, DryRun], Any] | None = None,
    lock_timeout: float | None = None,
    names_only: bool = False,
    columns_only: bool = False,
    track: bool = False,
) -> DryRun:
    """Run ``steps`` in order in one transaction, then roll it back; never raises for a step.

    ``names_only``: compare table names only before and after (enough to say what the
    steps create, and it reads no table, so a locked table is met only by the steps).
    ``columns_only``: tables and columns only (see ``introspect``).
    ``track``: after each step, note the columns of the tables it named, to tell which
    step dropped what (``DryRun.dropped_by``).
    """
    connection = connections[alias]
    result = DryRun()
    capture = _Capture(result, int(conf.get("MAX_STATEMENTS_KEPT")))
    try:
        result.before = introspect(connection, names_only=names_only, columns_only=columns_only)
        known = {table.lower(): table for table in result.before.tables}
        with _foreign_keys_off(connection), transaction.atomic(using=alias):
            try:
                baseline = _fk_violations(connection)
                _set_lock_timeout(connection, lock_timeout)
                for label, func in steps:
                    result.failed_step = capture.step = label
                    capture.step_words = set()
                    with connection.execute_wrapper(capture):
                        func(Database(connection))
                    result.completed.append(label)
                    result.words |= capture.step_words
                    if track:
                        named = [known[w] for w in capture.step_words if w in known]
                        result.trail.append((label, table_columns(connection, named)))
                result.failed_step = None
                _check_foreign_keys(connection, baseline)
                result.locks = _own_locks(connection)
                result.named = _named_tables(result.words, result.before.tables)
                result.after = introspect(
                    connection, names_only=names_only, columns_only=columns_only
                )
                if inspect is not None:
                    result.inspected = inspect(connection, result)
            finally:
                transaction.set_rollback(True, using=alias)
    except Exception as exc:
        result.error = one_line(exc)
        result.lock_timeout = is_lock_timeout(exc)
    if result.before is not None:
        result.named = _named_tables(result.words | capture.step_words, result.before.tables)
    return result


@contextlib.contextmanager
def _foreign_keys_off(connection: Any) -> Iterator[None]:
    if connection.vendor != "sqlite":
        yield
        return
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA foreign_keys")
        was_on = bool(cursor.fetchone()[0])
        cursor.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        if was_on:
            with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
                cursor.execute("PRAGMA foreign_keys = ON")


def _fk_violations(connection: Any) -> Counter[tuple[str, str]]:
    if connection.vendor != "sqlite":
        return Counter()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA foreign_key_check")
        return Counter((row[0], row[2]) for row in cursor.fetchall())


def _check_foreign_keys(connection: Any, baseline: Counter[tuple[str, str]]) -> None:
    """Fail as the executor would when the steps leave new rows pointing at nothing."""
    if connection.vendor != "sqlite":
        return
    new = _fk_violations(connection) - baseline
    if new:
        (table, parent), count = next(iter(new.items()))
        raise DatabaseError(
            f"the step would leave {count} row(s) of {table} pointing at missing rows of "
            f"{parent} (foreign key check failed)"
        )


def _set_lock_timeout(connection: Any, seconds: float | None) -> None:
    if connection.vendor != "postgresql":
        return
    if seconds is None:
        seconds = float(conf.get("PREFLIGHT_LOCK_TIMEOUT"))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = %s", [f"{int(seconds * 1000)}ms"])
        statement_timeout = conf.get("PG_STATEMENT_TIMEOUT")
        if statement_timeout is not None:
            cursor.execute(
                "SET LOCAL statement_timeout = %s", [f"{int(float(statement_timeout) * 1000)}ms"]
            )


# The strongest table lock each mode name stands for, weakest first (PostgreSQL docs,
# "Table-Level Lock Modes").
LOCK_MODES = (
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)


def _own_locks(connection: Any) -> dict[str, str]:
    """Tables this transaction locked, with the strongest mode taken (PostgreSQL only).

    Read before anything else in the transaction looks at the tables, since
    introspection itself takes ``AccessShareLock`` on each.
    """
    if connection.vendor != "postgresql":
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, l.mode FROM pg_locks l "
            "JOIN pg_class c ON c.oid = l.relation "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' "
            "AND c.relkind IN ('r', 'p') AND n.nspname = current_schema()"
        )
        found: dict[str, str] = {}
        skip = ignored_tables()
        for table, mode in cursor.fetchall():
            if table in skip:
                continue
            if table not in found or _rank(mode) > _rank(found[table]):
                found[table] = mode
    return found


def _rank(mode: str) -> int:
    return LOCK_MODES.index(mode) if mode in LOCK_MODES else -1


def _named_tables(words: set[str], tables: set[str]) -> set[str]:
    """Existing tables whose names appear in the statements (as words, quoted or not)."""
    return {t for t in tables if t.lower() in words}
