"""Measuring what a rollback destroys, as its statements run: frozen ``Loss`` values.

A ``LossMeter`` is a ``connection.execute_wrapper``: before a statement that may
destroy data (``DROP``, ``DELETE``, ``TRUNCATE``, ``RENAME``, ``ALTER ... TYPE``,
``UPDATE``) runs, it counts, once, each table the statement names that existed when
the rollback began: its rows, and each column's non-null values (and those that
differ from the column's literal default, which an ``up`` would put back).  When the
downs are done, ``measure()`` compares the catalog with the one read at the start:

- a table gone is a loss of its rows, unless a table of the same columns appeared
  (a rename: no loss, and the rows moved are compared with the count);
- a column gone is a loss of its values, unless a column of the same type appeared in
  the same table (a rename);
- a surviving table with fewer rows lost the difference (``DELETE``, ``TRUNCATE``, a
  rebuild that forgot rows);
- a table or column gone that no statement named (a ``DO`` block, a function, a
  cascade) was not counted in time: it is ``unmeasured``, and the caller counts it
  after rolling back (the objects are there again) and decides.

The meter reads through the driver's own cursor, so its counts are neither captured
as the steps' statements nor seen by the step's wrappers.  It never writes.  Judging
(what is a FAIL, what the messages say) is ``validation/rollback.py``'s job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from migrator.validation.introspect import ignored_tables

_WORD = re.compile(r"[A-Za-z_][\w$]*")
_QUOTED = re.compile(r'"((?:[^"]|"")+)"|`([^`]+)`|\[([^\]]+)\]')
# Words that make a statement worth counting before it runs.
DESTRUCTIVE = frozenset({"drop", "delete", "truncate", "rename", "type", "update", "replace"})
# A default that is a plain literal ('UTC', 'UTC'::character varying, 0, 1.5, TRUE): safe
# to evaluate in a query (unlike nextval(), which would advance a sequence).
_LITERAL = re.compile(
    r"^\(?\s*('(?:[^']|'')*'|-?\d+(?:\.\d+)?|true|false)\s*\)?"
    r"(?:::[a-z ]+(?:\(\d+(?:,\s*\d+)?\))?)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    default: str | None


@dataclass(frozen=True)
class Loss:
    """One thing a rollback would destroy (``count`` > 0), or could not measure."""

    kind: Literal["table", "column", "rows", "unmeasured"]
    table: str
    count: int = 0  # rows of a table / values of a column that differ from its default
    column: str | None = None
    values: int = 0  # a column's non-null values (its default's included)
    default: str | None = None
    total: int | None = None  # the table's rows before (kind "rows")
    by: str | None = None  # the step whose statement did it

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Rename:
    kind: Literal["table", "column"]
    table: str  # the table (for a column rename) or the old table name
    old: str
    new: str

    def describe(self) -> str:
        if self.kind == "table":
            return f"table {self.old} renamed to {self.new}"
        return f"column {self.table}.{self.old} renamed to {self.new}"


@dataclass
class Measured:
    """What the downs did, measured."""

    losses: list[Loss] = field(default_factory=list)
    renames: list[Rename] = field(default_factory=list)
    dropped_tables: list[str] = field(default_factory=list)
    dropped_columns: list[str] = field(default_factory=list)  # "table.column"
    # Tables that DELETE/TRUNCATE reached (a preview on an empty scratch copy cannot count).
    written: dict[str, str] = field(default_factory=dict)  # table -> step

    @property
    def unmeasured(self) -> list[Loss]:
        return [loss for loss in self.losses if loss.kind == "unmeasured"]

    @property
    def real(self) -> list[Loss]:
        return [loss for loss in self.losses if loss.kind != "unmeasured" and loss.count]


@dataclass
class _Snapshot:
    rows: int
    values: dict[str, int]
    not_default: dict[str, int]


class LossMeter:
    """Count, just before they go, what the statements of a rollback destroy."""

    def __init__(self, connection: Any, *, preload: list[str] | tuple[str, ...] = ()) -> None:
        self.connection = connection
        self.skip = ignored_tables()
        self.start = read_columns(connection, self.skip)
        self._known = {name.lower(): name for name in self.start}
        self.snapshots: dict[str, _Snapshot] = {}
        self.step: str | None = None
        self.touched_by: dict[str, str] = {}  # table -> the step that first touched it
        self.written: dict[str, str] = {}
        for table in preload:
            if table in self.start:
                self._snapshot(table)

    # -- while the downs run -------------------------------------------------------------
    def __call__(self, execute, sql, params, many, context):
        text = str(sql)
        words = {w.lower() for w in _WORD.findall(text)}
        if words & DESTRUCTIVE:
            if '"' in text or "`" in text or "[" in text:
                for groups in _QUOTED.findall(text):
                    words.update(g.replace('""', '"').lower() for g in groups if g)
            named = [self._known[w] for w in words if w in self._known]
            for table in named:
                self.touched_by.setdefault(table, self.step or "")
                if words & {"delete", "truncate"}:
                    self.written.setdefault(table, self.step or "")
                if table not in self.snapshots:
                    self._snapshot(table)
        return execute(sql, params, many, context)

    def _snapshot(self, table: str) -> None:
        columns = self.start[table]
        q = self.connection.ops.quote_name
        parts = ["COUNT(*)"]
        for column in columns:
            parts.append(f"COUNT({q(column.name)})")
            literal = _literal(column.default)
            if literal is not None:
                parts.append(
                    f"SUM(CASE WHEN {q(column.name)} IS NOT NULL AND {q(column.name)} <> "
                    f"{literal} THEN 1 ELSE 0 END)"
                )
        row = _raw_one(self.connection, f"SELECT {', '.join(parts)} FROM {q(table)}")
        values, not_default, i = {}, {}, 1
        for column in columns:
            values[column.name] = int(row[i] or 0)
            i += 1
            if _literal(column.default) is not None:
                not_default[column.name] = int(row[i] or 0)
                i += 1
            else:
                not_default[column.name] = values[column.name]
        self.snapshots[table] = _Snapshot(int(row[0] or 0), values, not_default)

    # -- when the downs are done -----------------------------------------------------------
    def measure(self) -> Measured:
        """Compare the catalog with the start; still inside the rollback's transaction."""
        end = read_columns(self.connection, self.skip)
        found = Measured(written=dict(self.written))
        vanished = [t for t in self.start if t not in end]
        appeared = [t for t in end if t not in self.start]
        moved: dict[str, str] = {}  # old table -> its new name
        for table in vanished:
            # Same columns first; else the same column types and the same rows (a table
            # renamed with some of its columns renamed too).
            candidates = [t for t in appeared if t not in moved.values()]
            shape, types = _shape(self.start[table]), _types(self.start[table])
            twin = next((t for t in candidates if _shape(end[t]) == shape), None)
            if twin is None:
                twin = next(
                    (
                        t
                        for t in candidates
                        if _types(end[t]) == types and self._same_rows(table, t)
                    ),
                    None,
                )
            if twin is not None:
                moved[table] = twin
                found.renames.append(Rename("table", table, table, twin))
        for table in vanished:
            if table in moved:
                continue
            found.dropped_tables.append(table)
            snap = self.snapshots.get(table)
            by = self.touched_by.get(table)
            if snap is None:
                found.losses.append(Loss("unmeasured", table, by=by))
            else:
                found.losses.append(Loss("table", table, snap.rows, by=by))
        for table in self.start:
            now_name = moved.get(table, table)
            if now_name not in end:
                continue
            self._compare_columns(found, table, now_name, end[now_name])
            snap = self.snapshots.get(table)
            if snap is not None:
                rows_now = int(
                    _raw_one(
                        self.connection,
                        f"SELECT COUNT(*) FROM {self.connection.ops.quote_name(now_name)}",
                    )[0]
                    or 0
                )
                if rows_now < snap.rows:
                    found.losses.append(
                        Loss(
                            "rows",
                            table,
                            snap.rows - rows_now,
                            total=snap.rows,
                            by=self.touched_by.get(table),
                        )
                    )
        return found

    def _compare_columns(
        self, found: Measured, table: str, now_name: str, now: list[Column]
    ) -> None:
        before = {c.name: c for c in self.start[table]}
        after = {c.name: c for c in now}
        gone = [c for name, c in before.items() if name not in after]
        new = [c for name, c in after.items() if name not in before]
        snap = self.snapshots.get(table)
        for column in gone:
            twin = next(
                (
                    c
                    for c in new
                    if c.type == column.type and self._holds(now_name, c, snap, column)
                ),
                None,
            )
            if twin is not None:
                new.remove(twin)
                found.renames.append(Rename("column", now_name, column.name, twin.name))
                continue
            found.dropped_columns.append(f"{table}.{column.name}")
            by = self.touched_by.get(table)
            if snap is None:
                found.losses.append(Loss("unmeasured", table, column=column.name, by=by))
                continue
            loss = Loss(
                "column",
                table,
                snap.not_default[column.name],
                column=column.name,
                values=snap.values[column.name],
                default=column.default,
                by=by,
            )
            found.losses.append(loss)

    def _same_rows(self, old: str, new: str) -> bool:
        snap = self.snapshots.get(old)
        if snap is None:
            return False
        q = self.connection.ops.quote_name
        return int(_raw_one(self.connection, f"SELECT COUNT(*) FROM {q(new)}")[0] or 0) == snap.rows

    def _holds(self, table: str, new: Column, snap: _Snapshot | None, old: Column) -> bool:
        """Whether ``new`` holds what ``old`` held (a rename moves every value; a drop
        and an add of the same type leaves the new column empty or at its default)."""
        if snap is None or not snap.values.get(old.name):
            return True
        q = self.connection.ops.quote_name
        row = _raw_one(self.connection, f"SELECT COUNT({q(new.name)}) FROM {q(table)}")
        return int(row[0] or 0) == snap.values[old.name]


def read_columns(connection: Any, skip: set[str]) -> dict[str, list[Column]]:
    """Every table with its columns (name, type, default), in one catalog query."""
    if connection.vendor == "postgresql":
        sql = (
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), "
            "pg_get_expr(d.adbin, d.adrelid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
            "AND NOT a.attisdropped "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema() "
            "ORDER BY c.relname, a.attnum"
        )
    else:
        sql = (
            "SELECT m.name, p.name, p.type, p.dflt_value FROM sqlite_master AS m "
            "LEFT JOIN pragma_table_info(m.name) AS p "
            "WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.cid"
        )
    tables: dict[str, list[Column]] = {}
    connection.ensure_connection()
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    for table, column, kind, default in rows:
        if table in skip:
            continue
        columns = tables.setdefault(table, [])
        if column is not None:
            columns.append(
                Column(
                    str(column), str(kind or "").lower(), None if default is None else str(default)
                )
            )
    return tables


def count_now(connection: Any, loss: Loss) -> Loss:
    """An ``unmeasured`` loss counted now (after the rollback's transaction was undone,
    the object is there again): its rows, or the column's non-null values."""
    q = connection.ops.quote_name
    if loss.column is None:
        rows = int(_raw_one(connection, f"SELECT COUNT(*) FROM {q(loss.table)}")[0] or 0)
        return Loss("table", loss.table, rows, by=loss.by)
    values = int(
        _raw_one(connection, f"SELECT COUNT({q(loss.column)}) FROM {q(loss.table)}")[0] or 0
    )
    return Loss("column", loss.table, values, column=loss.column, values=values, by=loss.by)


def _types(columns: list[Column]) -> tuple[str, ...]:
    return tuple(sorted(c.type for c in columns))


def _shape(columns: list[Column]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((c.name, c.type) for c in columns))


def _literal(default: str | None) -> str | None:
    if default is None:
        return None
    text = default.strip()
    return text if _LITERAL.match(text) else None


def _raw_one(connection: Any, sql: str) -> tuple[Any, ...]:
    """One row through the driver's own cursor: past Django's execute wrappers, so the
    meter is not measured, captured, or counted as the step's statements."""
    connection.ensure_connection()
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql)
        return tuple(cursor.fetchone() or (None,))
    finally:
        cursor.close()
