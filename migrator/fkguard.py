"""SQLite: check, after each step, only the foreign keys the step could have broken.

Steps run with ``PRAGMA foreign_keys = OFF`` (see ``executor``), so before committing
the executor asks SQLite whether the step left rows pointing at nothing.  A whole
``PRAGMA foreign_key_check`` reads every table with a foreign key: on a big database,
once per step, that costs more than the steps.  So an authorizer callback notes which
tables a step writes, creates, alters or drops, and only those tables and the tables
whose foreign keys point at them are checked.  What was already broken before the run
(counted once per run) is not the step's fault and is not held against it.

Setting an authorizer expires SQLite's prepared statements, so a statement cached by
an earlier step is prepared again, and seen, when a later step runs it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from collections.abc import Iterator
from typing import Any

_WRITES = {sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE}


class ForeignKeyGuard:
    def __init__(self, connection: Any) -> None:
        self.connection = connection  # Django's SQLite connection
        self.written: set[str] = set()
        self.created: set[str] = set()
        self.dropped: set[str] = set()
        self.altered = False
        self.references = False  # a statement of the step said REFERENCES
        self._children: dict[str, set[str]] | None = None  # parent -> children
        self._baseline: Counter[tuple[str, str]] | None = None

    # -- while the step runs -------------------------------------------------------------
    @contextlib.contextmanager
    def tracking(self) -> Iterator[None]:
        if self._baseline is None:
            # Before the first step: what is already broken, and who points at whom.
            self._baseline = self._violations(None)
            self._children = self._foreign_keys()
        self.written, self.created, self.dropped, self.altered = set(), set(), set(), False
        self.references = False
        raw = self.connection.connection
        raw.set_authorizer(self._note)
        try:
            with self.connection.execute_wrapper(self._scan):
                yield
        finally:
            raw.set_authorizer(None)

    def _scan(self, execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        if not self.references and "references" in str(sql).lower():
            self.references = True
        return execute(sql, params, many, context)

    def _note(self, action: int, arg1: Any, arg2: Any, _db: Any, _source: Any) -> int:
        if action in _WRITES and arg1 and not arg1.startswith("sqlite_"):
            self.written.add(arg1)
        elif action == sqlite3.SQLITE_CREATE_TABLE and arg1 and not arg1.startswith("sqlite_"):
            self.created.add(arg1)
        elif action == sqlite3.SQLITE_DROP_TABLE and arg1 and not arg1.startswith("sqlite_"):
            self.dropped.add(arg1)
        elif action == sqlite3.SQLITE_ALTER_TABLE:
            self.altered = True
            if arg2:
                self.written.add(arg2)
        return sqlite3.SQLITE_OK

    # -- before the step commits ---------------------------------------------------------
    def new_violations(self) -> Counter[tuple[str, str]]:
        """Rows the step left pointing at missing rows: (table, parent) -> count."""
        reshaped = self.created | self.dropped
        touched = self.written | reshaped
        if not touched:
            return Counter()
        children = self._children or {}
        suspects = set(touched)
        for table in touched:
            suspects |= children.get(table, set())
        if self.altered:
            # A rename or rebuild changes who points at whom: read the map again.
            self._children = self._foreign_keys()
        else:
            # A table created without a REFERENCES clause points at nothing: only a
            # dropped one, or one created with a foreign key, changes the map.
            for table in self.dropped | (self.created if self.references else set()):
                self._refresh(table)
        for table in list(suspects):
            suspects |= (self._children or {}).get(table, set())
        # Only a table with a foreign key of its own can hold a broken reference.
        suspects &= self._referencing()
        if self.altered:
            suspects &= self._tables()
        else:
            suspects -= self.dropped - self.created
            suspects -= {t for t in self.dropped & self.created if not self._exists(t)}
        found: Counter[tuple[str, str]] = Counter()
        for table in suspects:
            found += self._violations(table)
        baseline = self._baseline or Counter()
        return Counter({key: n - baseline[key] for key, n in found.items() if n > baseline[key]})

    # -- reading SQLite --------------------------------------------------------------------
    def _violations(self, table: str | None) -> Counter[tuple[str, str]]:
        with self.connection.cursor() as cursor:
            if table is None:
                cursor.execute("PRAGMA foreign_key_check")
            else:
                cursor.execute(f"PRAGMA foreign_key_check({self.connection.ops.quote_name(table)})")
            return Counter((row[0], row[2]) for row in cursor.fetchall())

    def _foreign_keys(self) -> dict[str, set[str]]:
        with self.connection.cursor() as cursor:
            cursor.execute(
                'SELECT m.name, p."table" FROM sqlite_master AS m '
                "JOIN pragma_foreign_key_list(m.name) AS p WHERE m.type = 'table'"
            )
            children: dict[str, set[str]] = {}
            for child, parent in cursor.fetchall():
                children.setdefault(parent, set()).add(child)
            return children

    def _refresh(self, table: str) -> None:
        """``table`` was created or dropped: update what it points at."""
        children = self._children if self._children is not None else {}
        for kids in children.values():
            kids.discard(table)
        with self.connection.cursor() as cursor:
            cursor.execute('SELECT "table" FROM pragma_foreign_key_list(%s)', [table])
            for (parent,) in cursor.fetchall():
                children.setdefault(parent, set()).add(table)
        self._children = children

    def _referencing(self) -> set[str]:
        return set().union(*(self._children or {}).values())

    def _exists(self, table: str) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s", [table]
            )
            return cursor.fetchone() is not None

    def _tables(self) -> set[str]:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {row[0] for row in cursor.fetchall()}
