"""The ``db`` object handed to ``up(db)`` and ``down(db)``.

It wraps one Django connection so that most scripts are written once for both
databases: ``db.execute`` takes ``%s`` placeholders on PostgreSQL and SQLite, and the
helpers below hide the few places where the two differ.  The work of the bigger ones
lives beside it: the safe recipes (``set_not_null``, ``add_check``, ``add_foreign_key``,
``create_index``...) in ``migrator/recipes.py``, SQLite's table rebuild, done without
losing a single child row, in ``migrator/sqlite_rebuild.py``, and the adaptive
``batched_update`` in ``migrator/backfill.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import DatabaseError

from migrator import backfill, recipes, sqlite_rebuild

if TYPE_CHECKING:
    from migrator.timeouts import Retrying

_CONCURRENT_INDEX = re.compile(
    r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r'(?P<name>(?:"(?:[^"]|"")+"|[\w$]+)(?:\.(?:"(?:[^"]|"")+"|[\w$]+))?)\s+ON\b',
    re.IGNORECASE,
)
# Statements whose lock conflicts with no reader or writer (SHARE UPDATE EXCLUSIVE at
# most, and waits for old transactions that block nobody): while they wait, the table's
# traffic does not queue behind them.
_PATIENT = re.compile(
    r"^\s*(?:CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\b|DROP\s+INDEX\s+CONCURRENTLY\b"
    r"|REINDEX\s+(?:\([^)]*\)\s*)?(?:INDEX|TABLE|SCHEMA|DATABASE|SYSTEM)\s+CONCURRENTLY\b"
    r'|ALTER\s+TABLE\s+(?:ONLY\s+)?(?:"(?:[^"]|"")+"|[\w$.]+)\s+VALIDATE\s+CONSTRAINT\s+'
    r'(?:"(?:[^"]|"")+"|[\w$]+)\s*;?\s*$)',
    re.IGNORECASE,
)
T = TypeVar("T")


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
        retry settings say.  A statement whose lock blocks no reader or writer while it
        waits (``CREATE INDEX CONCURRENTLY``, ``DROP``/``REINDEX … CONCURRENTLY``,
        ``VALIDATE CONSTRAINT``) is *patient* instead: it may wait as long as the step's
        whole retry budget, since a short wait protects no traffic there, and would give up
        behind autovacuum (which yields only after ``deadlock_timeout``, 1 s) or throw an
        index build away at its last wait for old snapshots.  A ``CREATE INDEX
        CONCURRENTLY`` that gives up all the same leaves an INVALID index behind, which is
        dropped before the next try (and after the last).
        """

        def run() -> Any:
            cursor = self.connection.cursor()
            cursor.execute(sql, params)
            return cursor

        if _PATIENT.match(sql) and self.is_postgresql:
            return self.retried(
                lambda: self.patiently(run), cleanup=self._invalid_index_cleanup(sql)
            )
        return self.retried(run, cleanup=self._invalid_index_cleanup(sql))

    def patiently(self, work: Callable[[], T]) -> T:
        """``work()`` with the session's lock wait raised to the step's retry budget (in a
        non-atomic step; elsewhere as it is), then put back: for statements whose lock
        blocks nobody while they wait."""
        retrying = self.retrying
        if retrying is None or self.connection.in_atomic_block:
            return work()
        retrying.set_lock_timeout(retrying.limits.retry_budget or None)
        retrying.waits.patient_seconds = retrying.limits.retry_budget or None
        try:
            return work()
        finally:
            retrying.set_lock_timeout(retrying.limits.lock_timeout_at(1))

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

        def drop() -> None:
            with self.connection.cursor() as cursor:
                cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")

        try:
            self.patiently(drop)
        except DatabaseError:
            self.invalid_left.append(name)
            return False
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

    def _catalog(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """The rows of a look-up a helper makes in the catalog (``pg_catalog``,
        ``sqlite_master``, pragmas) to decide what to run.  Read past the connection's
        execute wrappers, so that it does not count among the step's statements: its audit
        event, ``tbmigrate sql`` and the lint's statement numbers show what the script
        changes, not how a helper looked (as the rollback's loss meter reads)."""
        self.connection.ensure_connection()
        with self.connection.wrap_database_errors:
            cursor = self.connection.create_cursor(None)  # the backend's, without wrappers
            try:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
            finally:
                cursor.close()

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
    # Every statement below goes through ``execute``: in a non-atomic step on PostgreSQL
    # it waits for its lock no longer than the step's short lock_timeout and is retried
    # alone when that fires; in an atomic step the step's lock timeout applies, and the
    # whole step is retried.  Catalog reads take no lock on the tables.
    def add_column(self, table: str, column: str, definition: str) -> None:
        """``ALTER TABLE t ADD COLUMN c <definition>`` (e.g. ``"TEXT DEFAULT 'UTC'"``)."""
        self.execute(
            f"ALTER TABLE {self.quote(table)} ADD COLUMN {self.quote(column)} {definition}"
        )

    def rename_column(self, table: str, old: str, new: str) -> None:
        """``ALTER TABLE t RENAME COLUMN old TO new`` (both databases; SQLite rewrites the
        indexes, views, triggers and foreign keys that name it).  A brief ACCESS EXCLUSIVE
        lock on PostgreSQL, taken with the step's short lock timeout and retried.  Done
        already (``old`` gone, ``new`` there): nothing to do, so a rerun is harmless."""
        if (
            recipes.column_not_null(self, table, old) is None
            and recipes.column_not_null(self, table, new) is not None
        ):
            return
        self.execute(
            f"ALTER TABLE {self.quote(table)} RENAME COLUMN {self.quote(old)} TO {self.quote(new)}"
        )

    def rename_table(self, old: str, new: str) -> None:
        """``ALTER TABLE old RENAME TO new``, as ``rename_column``: a brief lock, retried;
        nothing to do when already renamed."""
        if not recipes.table_exists(self, old) and recipes.table_exists(self, new):
            return
        self.execute(f"ALTER TABLE {self.quote(old)} RENAME TO {self.quote(new)}")

    def create_index(
        self,
        table: str,
        columns: str | Sequence[str],
        name: str | None = None,
        *,
        unique: bool = False,
        concurrently: bool = False,
    ) -> str:
        """Create an index and return its name (default ``<table>_<cols>_idx``).

        ``concurrently=True``: on PostgreSQL ``CREATE INDEX CONCURRENTLY``, which builds
        the index while reads and writes go on; it cannot run in a transaction, so the
        script needs ``atomic = False`` (asking for it in an atomic step fails before
        anything runs, on SQLite too, so the mistake shows on either database).  On
        SQLite a plain ``CREATE INDEX``.

        Idempotent: a valid index of that name and definition means done; another
        definition under that name is an error; an INVALID leftover of an earlier
        ``CONCURRENTLY`` that failed is dropped first.  A lock timeout is retried (in a
        non-atomic step), and a build that fails (lock waits exhausted, duplicates for a
        UNIQUE index) drops the INVALID index it left.
        """
        cols = recipes.names(columns)
        name = name or recipes.identifier(table, *cols, "idx")
        recipes.create_index(self, table, cols, name, unique=unique, concurrently=concurrently)
        return name

    def drop_index(self, name: str, *, concurrently: bool = False, if_exists: bool = True) -> None:
        """``DROP INDEX [CONCURRENTLY] [IF EXISTS]``; ``concurrently`` on PostgreSQL only,
        and only in a non-atomic step (an atomic one fails before anything runs)."""
        recipes.drop_index(self, name, concurrently=concurrently, if_exists=if_exists)

    def drop_column(self, table: str, column: str, *, if_exists: bool = False) -> None:
        """Drop a column on both databases; its indexes and table constraints go with it.

        PostgreSQL drops it in place (``ALTER TABLE ... DROP COLUMN``: a brief ACCESS
        EXCLUSIVE lock, no rewrite), with the step's short lock timeout and retries.
        SQLite rebuilds the table (``migrator/sqlite_rebuild.py``), keeping every row of
        the tables that reference it (knex #1598, sequelize #5007), its other indexes,
        triggers, views and AUTOINCREMENT counter.  A missing column is an error (a typo
        must not pass silently) unless ``if_exists=True``.
        """
        if if_exists and recipes.column_not_null(self, table, column) is None:
            return
        if self.is_postgresql:
            self.execute(f"ALTER TABLE {self.quote(table)} DROP COLUMN {self.quote(column)}")
            return
        sqlite_rebuild.drop_column(self, table, column)

    # -- the safe recipes (migrator/recipes.py) ------------------------------------------
    def set_not_null(self, table: str, column: str) -> None:
        """Make ``table.column`` NOT NULL without stalling the table's traffic.

        PostgreSQL: ``ADD CONSTRAINT <t>_<c>_not_null_check CHECK (c IS NOT NULL) NOT
        VALID`` (an instant under ACCESS EXCLUSIVE), ``VALIDATE CONSTRAINT`` (the scan,
        under SHARE UPDATE EXCLUSIVE: reads and writes go on), ``ALTER COLUMN c SET NOT
        NULL`` (an instant: PostgreSQL 12+ skips the scan thanks to the validated check),
        then the check is dropped.  SQLite: the table is rebuilt with the column NOT NULL.
        Rows with NULL: a clear error, and nothing changed (the NOT VALID check is dropped
        again).  Idempotent: a rerun after an interruption reuses what the first run
        did.  In an atomic step the statements share its transaction, so the ACCESS
        EXCLUSIVE lock of the first is held through the scan: use ``atomic = False`` for
        a big table.
        """
        recipes.set_not_null(self, table, column)

    def drop_not_null(self, table: str, column: str) -> None:
        """The down of ``set_not_null``: ``ALTER COLUMN c DROP NOT NULL`` on PostgreSQL (an
        instant, nothing scanned), a rebuild on SQLite; also drops the check an
        interrupted ``set_not_null`` may have left.  Nothing to do when already nullable."""
        recipes.drop_not_null(self, table, column)

    def add_check(self, table: str, name: str, expression: str) -> None:
        """Add ``CONSTRAINT name CHECK (expression)`` to ``table``.

        PostgreSQL: ``ADD CONSTRAINT ... NOT VALID`` (an instant), then ``VALIDATE
        CONSTRAINT`` (the scan, under SHARE UPDATE EXCLUSIVE), two statements, so in a
        non-atomic step the strong lock is held only for the first.  SQLite: checked,
        then the table rebuilt with the constraint.  Rows that break it: a clear error,
        nothing changed.  Idempotent (a constraint of that name is taken as this one; a
        NOT VALID one is validated)."""
        recipes.add_check(self, table, name, expression)

    def add_foreign_key(
        self,
        table: str,
        columns: str | Sequence[str],
        ref_table: str,
        ref_columns: str | Sequence[str] = ("id",),
        name: str | None = None,
        *,
        on_delete: str = "NO ACTION",
    ) -> str:
        """Add ``FOREIGN KEY (columns) REFERENCES ref_table (ref_columns)`` and return its
        name (default ``<table>_<cols>_fkey``, as PostgreSQL names them).

        ``on_delete``: ``NO ACTION`` (the default), ``RESTRICT``, ``CASCADE``, ``SET
        NULL`` or ``SET DEFAULT``.  PostgreSQL: ``NOT VALID`` (an instant, under SHARE
        ROW EXCLUSIVE on both tables), then ``VALIDATE CONSTRAINT`` (the scan, under SHARE
        UPDATE EXCLUSIVE on the table and ROW SHARE on the referenced one: nobody's
        reads or writes wait).  SQLite: checked, then the table rebuilt with the key,
        every row of every table kept.  Rows pointing at nothing: a clear error naming
        one, nothing changed.  Idempotent (by name)."""
        return recipes.add_foreign_key(
            self, table, columns, ref_table, ref_columns, name, on_delete
        )

    def drop_constraint(self, table: str, name: str) -> None:
        """The down of ``add_check`` and ``add_foreign_key`` (any named table constraint):
        ``DROP CONSTRAINT IF EXISTS`` on PostgreSQL (an instant), a rebuild on SQLite.
        Nothing to do when there is none of that name."""
        recipes.drop_constraint(self, table, name)

    # -- data at scale -----------------------------------------------------------------
    def batched_update(
        self,
        table: str,
        set_sql: str,
        where: str = "",
        params: Sequence[Any] = (),
        *,
        key: str = "id",
        batch_size: int | None = None,
        pause: float = 0.0,
        progress: bool | None = None,
        target_batch_seconds: float | None = None,
        max_rows_per_second: float | None = None,
    ) -> int:
        """``UPDATE table SET <set_sql> [WHERE <where>]`` in batches walked along ``key``
        (the primary key, or any unique indexed column); return the number of rows
        updated.

        Each batch is sized to take about ``target_batch_seconds`` (0.02 s by default),
        starting at ``batch_size`` rows (1,000 by default), growing while batches are
        quick and shrinking when they slow down; a batch that met lock waits is followed
        by a smaller one, and a slow-down by a pause as long as the time it lost, so a
        busy database gets room and a quiet one none (the control law:
        ``migrator/backfill.py``).  ``batch_size`` alone keeps every batch that size, as
        before.  ``max_rows_per_second`` caps the rate; ``pause`` is the least pause
        between batches.

        In a script with ``atomic = False`` every batch commits on its own, with its
        progress record, so trading traffic waits at most one batch, and a rerun resumes
        after the last committed key.  Make ``where`` false for rows already done
        (``"amount_cents IS NULL"``).  ``params`` fill the ``%s`` of ``set_sql`` and then
        of ``where``.  On a terminal a tqdm progress bar shows the rows done
        (``progress=False`` hides it).  In an atomic script the batches share the step's
        transaction, which then holds every row's lock until the end.
        """
        return backfill.batched_update(
            self,
            table,
            set_sql,
            where,
            params,
            key=key,
            batch_size=batch_size,
            pause=pause,
            progress=progress,
            target_batch_seconds=target_batch_seconds,
            max_rows_per_second=max_rows_per_second,
        )
