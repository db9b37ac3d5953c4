"""The ``db`` object handed to ``up(db)`` and ``down(db)``.

It wraps one Django connection so that most scripts are written once for both
databases: ``db.execute`` takes ``%s`` placeholders on PostgreSQL and SQLite, and the
helpers below hide the few places where the two differ (dropping a column on SQLite
means rebuilding the table, done here without losing a single child row).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import DatabaseError, transaction

if TYPE_CHECKING:
    from migrator.timeouts import Retrying

_CONCURRENT_INDEX = re.compile(
    r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r'(?P<name>(?:"(?:[^"]|"")+"|[\w$]+)(?:\.(?:"(?:[^"]|"")+"|[\w$]+))?)\s+ON\b',
    re.IGNORECASE,
)
T = TypeVar("T")
_IDENT = re.compile(r'^\s*("(?:[^"]|"")+"|\[[^\]]+\]|`[^`]+`|[^\s(,]+)')
_CONSTRAINT_WORDS = {"constraint", "primary", "unique", "check", "foreign"}


class Database:
    """What a migration script may use.  ``db.connection`` is the Django connection."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.alias: str = connection.alias
        self.vendor: str = connection.vendor
        # Set by the executor for a journaled (non-atomic) step: ``on_progress(info)`` is
        # called inside each committed batch's transaction, so the recorded progress is
        # exactly what committed; ``resume_points`` maps "table:key" to the last key an
        # earlier, unfinished attempt committed, where a rerun may start.
        self.on_progress: Callable[[dict[str, Any]], None] | None = None
        self.resume_points: dict[str, Any] = {}
        # Set by the executor for a non-atomic step on PostgreSQL: a statement (or a
        # batch) that lock_timeout gave up on is tried again (``timeouts.Retrying``).
        self.retrying: Retrying | None = None
        self.invalid_left: list[str] = []  # INVALID indexes a failed retry could not drop

    # -- running SQL -------------------------------------------------------------------
    @property
    def is_postgresql(self) -> bool:
        return self.vendor == "postgresql"

    @property
    def is_sqlite(self) -> bool:
        return self.vendor == "sqlite"

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        """Run one statement with ``%s`` placeholders; return the (open) cursor.

        In a non-atomic step (autocommit) a statement that PostgreSQL's lock_timeout
        gives up on has done nothing, and is tried again after a pause, as the step's
        retry settings say; a ``CREATE INDEX CONCURRENTLY`` that gives up leaves an
        INVALID index behind, which is dropped before the next try (and after the last).
        """

        def run() -> Any:
            cursor = self.connection.cursor()
            cursor.execute(sql, params)
            return cursor

        return self.retried(run, cleanup=self._invalid_index_cleanup(sql))

    def retried(self, work: Callable[[], T], cleanup: Callable[[], None] | None = None) -> T:
        """``work()``, tried again when a lock wait times out, where that is safe: in a
        non-atomic step on PostgreSQL, and outside any transaction (``work`` may open its
        own, as each batch of ``batched_update`` does: the timeout undoes all of it)."""
        if self.retrying is None or self.connection.in_atomic_block:
            return work()
        return self.retrying.run(work, cleanup=cleanup)

    def _invalid_index_cleanup(self, sql: str) -> Callable[[], None] | None:
        match = _CONCURRENT_INDEX.match(sql) if self.is_postgresql else None
        if match is None:
            return None
        name = match.group("name")

        def cleanup() -> None:
            self.drop_invalid_index(name)

        return cleanup

    def drop_invalid_index(self, name: str) -> bool:
        """Drop the index ``name`` if it is INVALID (what a failed ``CREATE INDEX
        CONCURRENTLY`` leaves: it slows every write and serves no read); True if dropped.
        ``name`` as written in SQL (quoted or not, schema-qualified or not).

        ``DROP INDEX CONCURRENTLY`` blocks no reader or writer while it waits, so in a
        retried step it may wait as long as the step's whole retry budget; one it still
        cannot drop is named in ``invalid_left`` (and in the step's error)."""
        if not self.is_postgresql:
            return False
        invalid = self.scalar(
            "SELECT NOT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)",
            [name],
        )
        if not invalid:
            return False
        retrying = self.retrying
        if retrying is not None:
            retrying.set_lock_timeout(retrying.limits.retry_budget or None)
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        except DatabaseError:
            self.invalid_left.append(name)
            return False
        finally:
            if retrying is not None:
                retrying.set_lock_timeout(retrying.limits.lock_timeout_at(1))
        return True

    def execute_script(self, sql: str, *, source: str = "", first_line: int = 1) -> None:
        """Run several ``;``-separated statements, one at a time, without parameters.

        Split as the database would (``migrator/sqlsplit.py``: dollar-quoted bodies,
        ``DO`` blocks, triggers and comments holding ``;`` stay whole).  A statement
        that fails is named in the error: its number, the line where it starts (in
        ``sql``, or in the file ``source`` whose line ``first_line`` it starts on) and
        its first line.  Inside the step's transaction (an atomic script) ``BEGIN``,
        ``COMMIT`` and the like are refused before anything runs: they would end
        tbmigrate's transaction, and with it the step's all-or-nothing.
        """
        from migrator.errors import SqlScriptError
        from migrator.sqlsplit import split

        statements = split(sql, first_line)
        if self.connection.in_atomic_block:
            for statement in statements:
                if statement.controls_transaction:
                    raise SqlScriptError(
                        f"{statement.where(source)}: {statement.head}: tbmigrate already runs "
                        "the step in a transaction; remove the statement, or make the script "
                        "non-atomic (atomic = False; first line of an SQL file: "
                        "-- tbmigrate: atomic=false)"
                    )
        for statement in statements:
            try:
                self.execute(statement.sql).close()
            except DatabaseError as exc:
                first, _, rest = str(exc).strip().partition("\n")
                message = f"{first} ({statement.where(source)}: {statement.head})"
                try:
                    named = type(exc)(message + (f"\n{rest}" if rest else ""))
                except Exception:  # an error class that wants other arguments
                    named = DatabaseError(message)
                raise named from exc

    def fetchall(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def fetchone(self, sql: str, params: Sequence[Any] | None = None) -> tuple[Any, ...] | None:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        row = self.fetchone(sql, params)
        return row[0] if row else None

    def quote(self, name: str) -> str:
        return self.connection.ops.quote_name(name)

    # -- portable types ----------------------------------------------------------------
    @property
    def auto_pk(self) -> str:
        """An auto-incrementing integer primary key column definition."""
        if self.is_postgresql:
            return "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
        return "INTEGER PRIMARY KEY AUTOINCREMENT"

    # -- introspection -----------------------------------------------------------------
    def tables(self) -> list[str]:
        with self.connection.cursor() as cursor:
            return list(self.connection.introspection.table_names(cursor))

    def table_exists(self, table: str) -> bool:
        return table in self.tables()

    def columns(self, table: str) -> list[str]:
        with self.connection.cursor() as cursor:
            description = self.connection.introspection.get_table_description(cursor, table)
        return [column.name for column in description]

    def column_exists(self, table: str, column: str) -> bool:
        return self.table_exists(table) and column in self.columns(table)

    def index_exists(self, name: str) -> bool:
        if self.is_postgresql:
            sql = "SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = %s"
        else:
            sql = "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = %s"
        return self.fetchone(sql, [name]) is not None

    # -- schema changes ----------------------------------------------------------------
    def add_column(self, table: str, column: str, definition: str) -> None:
        """``ALTER TABLE t ADD COLUMN c <definition>`` (e.g. ``"TEXT DEFAULT 'UTC'"``)."""
        self.execute(
            f"ALTER TABLE {self.quote(table)} ADD COLUMN {self.quote(column)} {definition}"
        )

    def rename_column(self, table: str, old: str, new: str) -> None:
        self.execute(
            f"ALTER TABLE {self.quote(table)} RENAME COLUMN {self.quote(old)} TO {self.quote(new)}"
        )

    def rename_table(self, old: str, new: str) -> None:
        self.execute(f"ALTER TABLE {self.quote(old)} RENAME TO {self.quote(new)}")

    def create_index(
        self,
        table: str,
        columns: Sequence[str],
        name: str | None = None,
        *,
        unique: bool = False,
        concurrently: bool = False,
    ) -> str:
        """Create an index and return its name (default ``<table>_<cols>_idx``).

        ``concurrently`` applies on PostgreSQL only, and needs a script with ``atomic = False``.
        """
        name = name or f"{table}_{'_'.join(columns)}_idx"
        how = "UNIQUE INDEX" if unique else "INDEX"
        if concurrently and self.is_postgresql:
            how += " CONCURRENTLY"
        cols = ", ".join(self.quote(c) for c in columns)
        self.execute(f"CREATE {how} {self.quote(name)} ON {self.quote(table)} ({cols})")
        return name

    def drop_index(self, name: str, *, concurrently: bool = False, if_exists: bool = True) -> None:
        how = "DROP INDEX"
        if concurrently and self.is_postgresql:
            how += " CONCURRENTLY"
        if if_exists:
            how += " IF EXISTS"
        self.execute(f"{how} {self.quote(name)}")

    def drop_column(self, table: str, column: str) -> None:
        """Drop a column on both databases; its indexes and table constraints go with it.

        PostgreSQL drops it in place.  SQLite gets the documented 12-step rebuild
        (https://sqlite.org/lang_altertable.html#otheralter): with foreign keys off, copy
        into a new table, swap it in, recreate the indexes and views, keep the
        AUTOINCREMENT counter, then check that no foreign key was broken.  Rows of tables
        that reference this one are never touched (knex #1598, sequelize #5007).
        """
        if self.is_postgresql:
            self.execute(f"ALTER TABLE {self.quote(table)} DROP COLUMN {self.quote(column)}")
            return
        _SqliteRebuild(self, table).drop_column(column)

    # -- data at scale -----------------------------------------------------------------
    def batched_update(
        self,
        table: str,
        set_sql: str,
        where: str = "",
        params: Sequence[Any] = (),
        *,
        key: str = "id",
        batch_size: int = 10_000,
        pause: float = 0.0,
        progress: bool | None = None,
    ) -> int:
        """``UPDATE table SET <set_sql> [WHERE <where>]`` in batches of ``batch_size`` rows
        walked along ``key`` (the primary key, or any unique indexed column); return the
        number of rows updated.

        In a script with ``atomic = False`` every batch commits on its own, so the
        table's rows are locked a batch at a time and trading traffic waits at most
        one batch (``pause`` seconds between batches give it more room).  Make
        ``where`` false for rows already done (``"amount_cents IS NULL"``): a run
        stopped half way then resumes where it stopped.  ``params`` fill the ``%s`` of
        ``set_sql`` and then of ``where``.  On a terminal a tqdm progress bar shows the
        rows done (``progress=False`` hides it).  In an atomic script the batches share
        the step's transaction, which then holds every row's lock until the end.
        """
        if batch_size < 1:
            raise ValueError("batched_update: batch_size must be at least 1")
        q_table, q_key = self.quote(table), self.quote(key)
        condition = f" AND ({where})" if where else ""
        set_params = list(params)[: set_sql.count("%s")]
        where_params = list(params)[len(set_params) :]
        bar = self._progress_bar(table, q_table, where, where_params, progress)
        done, after = 0, []  # after: [] for the first batch, else [the last key done]
        resume = self.resume_points.get(f"{table}:{key}")
        if resume is not None:
            after = [resume]
        own_batches = not self.connection.in_atomic_block
        started = time.monotonic()

        def one_batch() -> tuple[Any, int]:
            """One batch: (its upper key, rows updated), or (None, 0) when none is left."""
            above = f"{q_key} > %s AND " if after else ""
            with contextlib.ExitStack() as batch:
                if own_batches:
                    # Each batch commits on its own, with its progress record.
                    batch.enter_context(transaction.atomic(using=self.alias))
                upper = self.scalar(
                    f"SELECT MAX({q_key}) FROM (SELECT {q_key} FROM {q_table} "
                    f"WHERE {above}1 = 1{condition} ORDER BY {q_key} LIMIT %s) AS batch",
                    [*after, *where_params, batch_size],
                )
                if upper is None:
                    return None, 0
                cursor = self.execute(
                    f"UPDATE {q_table} SET {set_sql} WHERE {above}{q_key} <= %s{condition}",
                    [*set_params, *after, upper, *where_params],
                )
                count = max(cursor.rowcount, 0)
                cursor.close()
                if self.on_progress is not None:
                    elapsed = max(time.monotonic() - started, 1e-9)
                    self.on_progress(
                        {
                            "table": table,
                            "key": key,
                            "rows_done": done + count,
                            "rows_total": getattr(bar, "total", None),
                            "last_key": upper,
                            "rate": round((done + count) / elapsed, 1),
                            "batch_size": batch_size,
                            "updated_at": datetime.now(UTC).isoformat(),
                        }
                    )
            return upper, count

        try:
            while True:
                upper, count = self.retried(one_batch)
                if upper is None:
                    return done
                done += count
                after = [upper]
                if bar is not None:
                    bar.update(count)
                if pause:
                    time.sleep(pause)
        finally:
            if bar is not None:
                bar.close()

    def _progress_bar(
        self,
        table: str,
        q_table: str,
        where: str,
        where_params: list[Any],
        progress: bool | None,
    ) -> Any:
        import sys

        if progress is None:
            progress = sys.stderr.isatty()
        if not progress:
            return None
        from tqdm import tqdm

        total = self.scalar(
            f"SELECT COUNT(*) FROM {q_table}" + (f" WHERE {where}" if where else ""),
            where_params,
        )
        return tqdm(total=total, unit="rows", desc=f"  {table}", leave=False, file=sys.stderr)


class _SqliteRebuild:
    """Rebuild one SQLite table without a column, keeping everything else."""

    def __init__(self, db: Database, table: str) -> None:
        self.db = db
        self.table = table

    def drop_column(self, column: str) -> None:
        db = self.db
        in_transaction = db.connection.in_atomic_block
        if db.scalar("PRAGMA foreign_keys") and in_transaction:
            raise RuntimeError(
                "drop_column on SQLite needs foreign keys off before the transaction starts; "
                "call it from a migration step (tbmigrate turns them off) or outside a transaction"
            )
        if in_transaction:
            self._rebuild(column)
            return
        db.execute("PRAGMA foreign_keys = OFF")
        try:
            with transaction.atomic(using=db.alias):
                self._rebuild(column)
                broken = db.fetchall("PRAGMA foreign_key_check")
                if broken:
                    raise RuntimeError(f"drop_column would break foreign keys: {broken[:5]}")
        finally:
            db.execute("PRAGMA foreign_keys = ON")

    def _rebuild(self, column: str) -> None:
        db, table = self.db, self.table
        row = db.fetchone(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = %s", [table]
        )
        if row is None:
            raise ValueError(f"drop_column: table {table} does not exist")
        _head, items, tail = _split_create(row[0])
        kept, dropped = [], False
        for item in items:
            first = _first_identifier(item)
            if first.lower() not in _CONSTRAINT_WORDS and first.lower() == column.lower():
                dropped = True
            elif first.lower() in _CONSTRAINT_WORDS and _mentions(item, column):
                continue  # a table constraint on the dropped column goes with it (as on PostgreSQL)
            else:
                kept.append(item)
        if not dropped:
            raise ValueError(f"drop_column: table {table} has no column {column}")
        remaining = [c for c in db.columns(table) if c.lower() != column.lower()]
        dependents = db.fetchall(
            "SELECT type, name, sql FROM sqlite_master "
            "WHERE tbl_name = %s AND type IN ('index', 'trigger') AND sql IS NOT NULL",
            [table],
        )
        for kind, name, sql in dependents:
            if kind == "trigger" and _mentions(sql, column):
                raise ValueError(
                    f"drop_column: trigger {name} uses {table}.{column}; drop the trigger first"
                )
        views = [
            (name, sql)
            for name, sql in db.fetchall("SELECT name, sql FROM sqlite_master WHERE type = 'view'")
            if _mentions(sql, table)
        ]
        has_sequence = db.fetchone(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
        )
        seq = (
            db.scalar("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
            if has_sequence
            else None
        )
        temp = f"tbmigrate_rebuild_{table}"
        cols = ", ".join(db.quote(c) for c in remaining)
        for name, _ in views:
            db.execute(f"DROP VIEW {db.quote(name)}")
        db.execute(f"CREATE TABLE {db.quote(temp)} ({', '.join(kept)}){tail}")
        db.execute(f"INSERT INTO {db.quote(temp)} ({cols}) SELECT {cols} FROM {db.quote(table)}")
        db.execute(f"DROP TABLE {db.quote(table)}")
        db.execute(f"ALTER TABLE {db.quote(temp)} RENAME TO {db.quote(table)}")
        for kind, _name, sql in dependents:
            if kind == "index" and _mentions(sql.split("(", 1)[-1], column):
                continue  # an index on the dropped column goes with it
            db.execute(sql)
        if seq is not None:
            db.execute("UPDATE sqlite_sequence SET seq = %s WHERE name = %s", [seq, table])
        for _name, sql in views:
            db.execute(sql)


def _split_create(sql: str) -> tuple[str, list[str], str]:
    """Split ``CREATE TABLE x (a, b, CONSTRAINT ...) opts`` into head, items and tail."""
    depth, quote, start, items, head_end = 0, "", 0, [], -1
    for i, char in enumerate(sql):
        if quote:
            if char == quote:
                quote = ""
            continue
        if char in "\"'`[":
            quote = "]" if char == "[" else char
        elif char == "(":
            depth += 1
            if depth == 1:
                head_end, start = i, i + 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                items.append(sql[start:i].strip())
                return sql[:head_end], items, sql[i + 1 :]
        elif char == "," and depth == 1:
            items.append(sql[start:i].strip())
            start = i + 1
    raise ValueError("cannot parse the table definition")


def _first_identifier(item: str) -> str:
    match = _IDENT.match(item)
    if not match:
        return ""
    word = match.group(1)
    if word[0] in '"[`':
        word = word[1:-1].replace('""', '"')
    return word


def _mentions(sql: str, name: str) -> bool:
    pattern = rf'(?<![\w$])["\[`]?{re.escape(name)}["\]`]?(?![\w$])'
    return re.search(pattern, sql, flags=re.IGNORECASE) is not None
