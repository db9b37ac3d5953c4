"""Pending steps rehearsed on a scratch database, with what PostgreSQL did at each statement.

The lock-hazard gate (``hazards.py``) must know what the pending steps will run and
what each statement does to the tables it touches, without running anything on the
live database (a dry run there would take the live locks).  So a throw-away database
is made on the same server (``scratch.scratch_database``), the live schema is copied
into it without rows (``pg_dump --schema-only | pg_restore``; where that cannot be
done, the applied scripts are replayed there instead, as ``tbmigrate sql`` does), and
the pending steps are applied there with the executor ``run`` uses, every statement
captured.  Around each
statement PostgreSQL is asked, on the scratch database, what only it knows for sure:

- **which strong locks the transaction held before the statement** (``pg_locks``):
  SHARE or stronger, taken by an earlier statement of the same transaction, on a table
  that existed before the run (so traffic uses it);
- **whether the statement rewrote its table**: an ``ALTER TABLE`` that rewrites gives
  the table a new ``relfilenode`` (PostgreSQL's own decision, so a binary-compatible
  type change such as ``varchar(20)`` to ``text``, or a constant default, is seen not
  to rewrite, while a volatile default or ``int`` to ``bigint`` is);
- **whether a ``SET NOT NULL`` must scan**: not when the column is already ``NOT
  NULL``, nor when a validated ``CHECK (column IS NOT NULL)`` proves it (PostgreSQL
  12+ then skips the scan: what ``db.set_not_null`` relies on).

Each probe is a catalog query on the scratch database's own connection, sent past
Django's execute wrappers, that cannot fail on user text (names are compared, never
cast).  ``db.batched_update`` calls are noted as they are made: on the empty scratch
table they send no ``UPDATE``, yet in an atomic step their batches would share one
transaction on the live table.

A step that fails on the scratch database (a data migration that expects rows the
empty database does not have) keeps the statements it ran, with its error, and the
rehearsal goes on with the next step.  ``track=True`` also follows, with a
``Tracker``, what each step created, dropped or renamed (``phases.py`` needs it, on
both vendors).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connections

from migrator import history, targets
from migrator.errors import MigrationFailed
from migrator.executor import OWN_TABLES, Executor
from migrator.scripts import Script
from migrator.sql_preview import shown_params
from migrator.validation import statements
from migrator.validation.introspect import Schema
from migrator.validation.scratch import copy_live_schema, scratch_database
from migrator.validation.tracker import Changes, Tracker

# Table locks that block writers (SHARE and up) or everyone (ACCESS EXCLUSIVE).
STRONG_MODES = ("ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")
TableKey = tuple[str, str]  # (schema, table)


@dataclass
class Statement:
    """One statement of a rehearsed step, with what PostgreSQL did around it."""

    number: int  # 1-based, in the step
    sql: str
    params: Any
    shape: statements.Shape
    transaction: int | None  # which transaction of the step; None: autocommit
    held_before: tuple[tuple[str, str, str], ...] = ()  # (schema, table, mode)
    table: TableKey | None = None  # shape.table as the scratch database resolved it
    rewrote: bool = False
    proven_not_null: frozenset[str] = frozenset()  # SET NOT NULL columns that skip the scan
    helper: str | None = None  # "batched_update": a call, not a statement


@dataclass
class Step:
    script: Script
    statements: list[Statement] = field(default_factory=list)
    error: str = ""
    changes: Changes | None = None  # with track=True
    before: Schema | None = None
    after: Schema | None = None


@dataclass
class Rehearsal:
    vendor: str
    steps: list[Step] = field(default_factory=list)
    existing: set[TableKey] = field(default_factory=set)  # tables before the first step
    copy_failed: str = ""  # why the live schema was not copied (the scripts were replayed)


def rehearse(
    alias: str,
    before: Callable[[], Sequence[Script]],
    steps: Sequence[Script],
    *,
    track: bool = False,
) -> Rehearsal:
    """Make a scratch database like ``alias``'s, then apply ``steps`` there, each
    statement captured with its facts; a failing step keeps its error and the next
    one runs.

    On PostgreSQL the scratch database gets ``alias``'s live schema, no rows
    (``backup.copy_schema``): the steps meet the tables they will meet, also those
    no script made (an adopted database, a hand fix).  Where the copy cannot be made
    (no ``pg_dump``, an extension the user may not create) the scripts ``before()``
    are replayed instead, as on SQLite, and ``Rehearsal.copy_failed`` says why; a
    script of ``before()`` that fails then raises ``MigrationFailed``."""
    vendor = targets.vendor(alias)
    result = Rehearsal(vendor)
    sink = io.StringIO()  # what scripts print on the scratch database is nobody's output
    with scratch_database(alias) as scratch:
        copied = False
        if vendor == "postgresql":
            result.copy_failed = copy_live_schema(alias, scratch)  # makes tbmigrate's tables
            copied = not result.copy_failed
        if not copied:
            history.ensure_schema(scratch)
        with Executor(scratch, script_output=sink) as executor:
            for script in () if copied else before():
                try:
                    executor.apply(script)
                except MigrationFailed as exc:
                    raise MigrationFailed(
                        f"cannot check the pending steps: replaying the applied migrations on "
                        f"a scratch {vendor} database failed: {exc}",
                        exc.version,
                    ) from exc
            connection = connections[scratch]
            probe = _Probe(connection) if vendor == "postgresql" else None
            if probe is not None:
                result.existing = probe.tables()
            tracker = Tracker(connection) if track else None
            for script in steps:
                step = Step(script)
                result.steps.append(step)
                capture = _Capture(step, probe, result.existing)
                wrapped = dataclasses.replace(script, up=capture.around(script.up))
                with _tracked(tracker, step):
                    try:
                        executor.apply(wrapped)
                    except MigrationFailed as exc:
                        step.error = str(exc)
    return result


@contextlib.contextmanager
def _tracked(tracker: Tracker | None, step: Step) -> Iterator[None]:
    if tracker is None:
        yield
        return
    step.before = tracker.schema()
    with tracker.step() as changes:
        yield
    step.changes = changes
    step.after = tracker.schema()


class _Probe:
    """Catalog questions to the scratch database, past Django's execute wrappers."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.connection.ensure_connection()
        with self.connection.connection.cursor() as cursor:
            cursor.execute(sql, list(params) if params else None)
            return list(cursor.fetchall())

    def tables(self) -> set[TableKey]:
        rows = self._rows(
            "SELECT n.nspname, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname <> 'information_schema' "
            "AND n.nspname NOT LIKE 'pg\\_%'"
        )
        return {(str(a), str(b)) for a, b in rows}

    def resolve(self, name: statements.Name) -> tuple[TableKey, int, int] | None:
        """(schema, table), relfilenode and oid of ``name`` as the search path finds it."""
        rows = self._rows(
            "SELECT n.nspname, c.relname, c.relfilenode, c.oid FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = %s AND c.relkind IN ('r', 'p', 'm') "
            "AND (n.nspname = %s OR (%s::text IS NULL AND pg_table_is_visible(c.oid)))",
            [name.name, name.schema, name.schema],
        )
        if not rows:
            return None
        schema, table, filenode, oid = rows[0]
        return (str(schema), str(table)), int(filenode), int(oid)

    def filenode(self, oid: int) -> int | None:
        rows = self._rows("SELECT relfilenode FROM pg_class WHERE oid = %s", [oid])
        return int(rows[0][0]) if rows else None

    def proven_not_null(self, oid: int, columns: Sequence[str]) -> frozenset[str]:
        """The ``columns`` whose ``SET NOT NULL`` needs no scan: already NOT NULL, or
        proved by a validated ``CHECK (column IS NOT NULL)`` (one conjunct of it)."""
        rows = self._rows(
            "SELECT a.attname, a.attnotnull, ARRAY(SELECT pg_get_constraintdef(k.oid) "
            "FROM pg_constraint k WHERE k.conrelid = a.attrelid AND k.contype = 'c' "
            "AND k.convalidated) FROM pg_attribute a "
            "WHERE a.attrelid = %s AND a.attname = ANY(%s) AND NOT a.attisdropped",
            [oid, list(columns)],
        )
        return frozenset(
            str(name)
            for name, notnull, checks in rows
            if notnull or any(_proves_not_null(str(check), str(name)) for check in checks)
        )

    def strong_locks(self) -> list[tuple[str, str, str]]:
        return [
            (str(a), str(b), str(c))
            for a, b, c in self._rows(
                "SELECT n.nspname, c.relname, l.mode FROM pg_locks l "
                "JOIN pg_class c ON c.oid = l.relation "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted "
                "AND c.relkind IN ('r', 'p', 'm') AND l.mode = ANY(%s) "
                "ORDER BY n.nspname, c.relname",
                [list(STRONG_MODES)],
            )
        ]


def _proves_not_null(definition: str, column: str) -> bool:
    """Whether ``CHECK (...)`` as ``pg_get_constraintdef`` writes it has ``column IS NOT
    NULL`` as one of its top-level ``AND`` conjuncts."""
    tokens = statements.tokenize(definition)
    if len(tokens) < 3 or not tokens[0].is_word("check"):
        return False
    body = tokens[1:]
    while len(body) >= 2 and body[0].is_op("(") and body[-1].is_op(")"):
        body = body[1:-1]
    for part in statements._split(body, "and"):
        while len(part) >= 2 and part[0].is_op("(") and part[-1].is_op(")"):
            part = part[1:-1]
        if (
            len(part) == 4
            and part[0].kind in ("word", "ident")
            and part[0].value == column
            and [t.value for t in part[1:]] == ["is", "not", "null"]
        ):
            return True
    return False


class _Capture:
    """Wraps a step's function: records each statement with the probes' answers."""

    def __init__(self, step: Step, probe: _Probe | None, existing: set[TableKey]) -> None:
        self.step = step
        self.probe = probe
        self.existing = existing
        self.blocks: list[Any] = []  # the outermost atomic block of each transaction seen

    def around(self, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def run(db: Any) -> Any:
            original = getattr(db, "batched_update", None)
            if original is not None:

                def batched_update(*args: Any, **kwargs: Any) -> Any:
                    table = args[0] if args else kwargs.get("table")
                    self._note_helper("batched_update", str(table), db.connection)
                    return original(*args, **kwargs)

                db.batched_update = batched_update
            with db.connection.execute_wrapper(self):
                return func(db)

        return run

    def _transaction(self, connection: Any) -> int | None:
        if not connection.in_atomic_block or not connection.atomic_blocks:
            return None
        outer = connection.atomic_blocks[0]
        for i, block in enumerate(self.blocks):
            if block is outer:
                return i
        self.blocks.append(outer)
        return len(self.blocks) - 1

    def _held(self, connection: Any, transaction: int | None) -> tuple[tuple[str, str, str], ...]:
        if self.probe is None or transaction is None:
            return ()
        return tuple(
            (schema, table, mode)
            for schema, table, mode in self.probe.strong_locks()
            if (schema, table) in self.existing
        )

    def _note_helper(self, helper: str, table: str, connection: Any) -> None:
        transaction = self._transaction(connection)
        name = statements.Name(None, table, table)
        resolved = self.probe.resolve(name) if self.probe is not None else None
        self.step.statements.append(
            Statement(
                number=len(self.step.statements) + 1,
                sql=f"db.{helper}({table!r}, ...)",
                params=None,
                shape=statements.Shape("update", table=name),
                transaction=transaction,
                held_before=self._held(connection, transaction),
                table=resolved[0] if resolved else None,
                helper=helper,
            )
        )

    def __call__(self, execute, sql, params, many, context):
        connection = context["connection"]
        text = str(sql)
        if OWN_TABLES in text:  # a batched_update's progress record: not the script's
            return execute(sql, params, many, context)
        shape = statements.parse(text)
        transaction = self._transaction(connection)
        entry = Statement(
            number=len(self.step.statements) + 1,
            sql=text,
            params=shown_params(text, params, many),
            shape=shape,
            transaction=transaction,
        )
        probe = self.probe
        resolved = None
        if probe is not None:
            entry.held_before = self._held(connection, transaction)
            if shape.table is not None:
                resolved = probe.resolve(shape.table)
            if resolved is not None:
                entry.table = resolved[0]
                wanted = [a.column for a in shape.actions if a.kind == "set-not-null" and a.column]
                if wanted:
                    entry.proven_not_null = probe.proven_not_null(resolved[2], wanted)
        self.step.statements.append(entry)
        result = execute(sql, params, many, context)
        if probe is not None and resolved is not None and shape.verb == "alter-table":
            entry.rewrote = probe.filenode(resolved[2]) not in (None, resolved[1])
        return result
