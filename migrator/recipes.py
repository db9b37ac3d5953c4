"""The safe recipes behind ``db.set_not_null``, ``db.add_check``, ``db.add_foreign_key``,
``db.drop_constraint`` and ``db.create_index``, on PostgreSQL and on SQLite.

On PostgreSQL each recipe splits a change that would hold ``ACCESS EXCLUSIVE`` through a
scan of the table into short statements that take the strong lock only for an instant,
and a long one that takes a lock that blocks no reader or writer:

- a constraint is added ``NOT VALID`` (enforced for new rows from then on, existing
  rows not checked: instant), then ``VALIDATE CONSTRAINT`` scans the table under ``SHARE
  UPDATE EXCLUSIVE``, which lets every ``SELECT``, ``INSERT``, ``UPDATE`` and ``DELETE``
  through;
- ``SET NOT NULL`` after a validated ``CHECK (c IS NOT NULL)`` skips its scan
  (PostgreSQL 12+), and the check is then dropped;
- ``CREATE INDEX CONCURRENTLY`` builds without blocking writes.

Each statement is one ``db.execute``: in a non-atomic step it runs in autocommit and a
lock timeout retries that statement alone (``Database.retried``); in an atomic step the
statements share the step's transaction (so the first strong lock is held to the commit)
and a lock timeout retries the whole step.  Every recipe first reads the catalog and
does only what is missing, so a rerun after an interruption finishes the job.

On SQLite, which has one writer at a time and no such locks, a constraint change is a
table rebuild (``migrator/sqlite_rebuild.py``), checked first so that rows breaking the
new rule give the same clear error as on PostgreSQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import DatabaseError, IntegrityError

from migrator import sqlite_rebuild, vendors
from migrator.errors import SchemaChangeError
from migrator.timeouts import sqlstate

if TYPE_CHECKING:
    from migrator.database import Database

CHECK_VIOLATION = "23514"
FOREIGN_KEY_VIOLATION = "23503"
UNIQUE_VIOLATION = "23505"
MAX_IDENTIFIER_BYTES = 63  # PostgreSQL truncates longer names (NAMEDATALEN - 1)
ON_DELETE = ("NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT")


def identifier(*parts: str) -> str:
    """``parts`` joined with ``_``, shortened with a hash when PostgreSQL would truncate it
    (a truncated name would not be found again by name, and a rerun would not be a no-op)."""
    name = "_".join(parts)
    raw = name.encode()
    if len(raw) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:8]
    return raw[: MAX_IDENTIFIER_BYTES - 9].decode(errors="ignore") + "_" + digest


def names(value: str | Sequence[str]) -> list[str]:
    """One column name or several."""
    return [value] if isinstance(value, str) else list(value)


def _quoted(db: Database, columns: Sequence[str]) -> str:
    return ", ".join(db.quote(c) for c in columns)


def _detail(exc: BaseException) -> str:
    """PostgreSQL's DETAIL of an error (``Key (order_id)=(99) is not present ...``)."""
    seen: BaseException | None = exc
    while seen is not None:
        diag = getattr(seen, "diag", None)
        detail = getattr(diag, "message_detail", None)
        if detail:
            return str(detail).strip().rstrip(".")
        seen = seen.__cause__ or seen.__context__
    return ""


# -- what is there ---------------------------------------------------------------------
def column_not_null(db: Database, table: str, column: str) -> bool | None:
    """Whether ``table.column`` is NOT NULL; None when there is no such column.  Read
    from the catalog, which takes no lock on the table (Django's introspection reads a row
    of it, and would wait behind the very session a helper must not queue behind)."""
    if db.is_postgresql:
        found = db._catalog(
            "SELECT a.attnotnull FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) "
            "AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped",
            [db.quote(table), column],
        )
    else:
        found = db._catalog(
            'SELECT "notnull" FROM pragma_table_info(%s) WHERE name = %s COLLATE NOCASE',
            [table, column],
        )
    return bool(found[0][0]) if found else None


def table_exists(db: Database, table: str) -> bool:
    if db.is_postgresql:
        return bool(db._catalog("SELECT to_regclass(%s) IS NOT NULL", [db.quote(table)])[0][0])
    return bool(
        db._catalog(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s COLLATE NOCASE",
            [table],
        )
    )


@dataclass(frozen=True)
class Constraint:
    kind: str  # "c" check, "f" foreign key, "u" unique, "p" primary key, ... (pg_constraint)
    validated: bool
    definition: str


def pg_constraint(db: Database, table: str, name: str) -> Constraint | None:
    found = db._catalog(
        "SELECT contype, convalidated, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = to_regclass(%s) AND conname = %s",
        [db.quote(table), name],
    )
    return Constraint(str(found[0][0]), bool(found[0][1]), str(found[0][2])) if found else None


@dataclass(frozen=True)
class Index:
    table: str
    columns: tuple[str, ...]
    unique: bool
    valid: bool
    plain: bool  # a b-tree on columns, without expressions or WHERE

    def same(self, db: Database, table: str, columns: Sequence[str], unique: bool) -> bool:
        same_table = (
            self.table == table if db.is_postgresql else sqlite_rebuild.same_name(self.table, table)
        )
        return (
            same_table
            and self.plain
            and self.unique == unique
            and [c.lower() for c in self.columns] == [c.lower() for c in columns]
        )

    def describe(self) -> str:
        how = "UNIQUE " if self.unique else ""
        extra = "" if self.plain else ", with expressions, a WHERE or another method"
        return f"{how}on {self.table} ({', '.join(self.columns)}){extra}"


def index(db: Database, name: str) -> Index | None:
    """The index ``name`` (of the current schema on PostgreSQL), or None."""
    if db.is_postgresql:
        found = db._catalog(
            """
            SELECT t.relname, i.indisunique, i.indisvalid,
                   i.indexprs IS NULL AND i.indpred IS NULL AND am.amname = 'btree',
                   ARRAY(SELECT a.attname
                         FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                         WHERE k.n <= i.indnkeyatts ORDER BY k.n)
            FROM pg_index i
            JOIN pg_class c ON c.oid = i.indexrelid
            JOIN pg_class t ON t.oid = i.indrelid
            JOIN pg_am am ON am.oid = c.relam
            WHERE i.indexrelid = to_regclass(%s)
            """,
            [db.quote(name)],
        )
        if not found:
            return None
        row = found[0]
        return Index(str(row[0]), tuple(row[4]), bool(row[1]), bool(row[2]), bool(row[3]))
    found = db._catalog(
        "SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND name = %s COLLATE NOCASE",
        [name],
    )
    if not found:
        return None
    table = str(found[0][0])
    listed = db._catalog(
        'SELECT "unique", partial FROM pragma_index_list(%s) WHERE name = %s COLLATE NOCASE',
        [table, name],
    )
    unique, partial = listed[0] if listed else (0, 0)
    columns = [c for (c,) in db._catalog("SELECT name FROM pragma_index_info(%s)", [name])]
    plain = not partial and all(c is not None for c in columns)
    return Index(table, tuple(str(c) for c in columns), bool(unique), True, plain)


# -- NOT NULL --------------------------------------------------------------------------
def not_null_check_name(table: str, column: str) -> str:
    """The CHECK that ``set_not_null`` adds for a while.  (Not ``<t>_<c>_not_null``:
    PostgreSQL 18 gives that name to the NOT NULL constraint itself.)"""
    return identifier(table, column, "not_null_check")


def set_not_null(db: Database, table: str, column: str) -> None:
    what = "set_not_null"
    not_null = column_not_null(db, table, column)
    if not_null is None:
        raise SchemaChangeError(f"{what}: table {table} has no column {column}")

    def violation(detail: str) -> str:
        return (
            f"{what}: some rows of {table} have {column} NULL; fill them first (e.g. "
            f'db.batched_update("{table}", "{column} = ...", "{column} IS NULL")), then run '
            "again (nothing was changed)"
        )

    if db.is_sqlite:
        if not not_null:
            if db.fetchone(
                f"SELECT 1 FROM {db.quote(table)} WHERE {db.quote(column)} IS NULL LIMIT 1"
            ):
                raise SchemaChangeError(violation(""))
            sqlite_rebuild.set_not_null(db, table, column, True)
        return
    q_table, q_column = db.quote(table), db.quote(column)
    check = not_null_check_name(table, column)
    existing = pg_constraint(db, table, check)
    if existing is not None and existing.kind != "c":
        raise SchemaChangeError(
            f"{what}: {table} has a constraint named {check} that is not the CHECK this "
            f"helper adds ({existing.definition}); rename or drop it, then run again"
        )
    if not not_null:
        if existing is None:
            # ACCESS EXCLUSIVE for an instant: new rows are checked from now on.
            db.execute(
                f"ALTER TABLE {q_table} ADD CONSTRAINT {db.quote(check)} "
                f"CHECK ({q_column} IS NOT NULL) NOT VALID"
            ).close()
        if existing is None or not existing.validated:
            validate(db, table, check, violation, added=existing is None)
        # ACCESS EXCLUSIVE for an instant: the validated check proves the column has no
        # NULL, so PostgreSQL 12+ does not scan the table.
        db.execute(f"ALTER TABLE {q_table} ALTER COLUMN {q_column} SET NOT NULL").close()
    if existing is not None or not not_null:
        db.execute(f"ALTER TABLE {q_table} DROP CONSTRAINT IF EXISTS {db.quote(check)}").close()


def drop_not_null(db: Database, table: str, column: str) -> None:
    not_null = column_not_null(db, table, column)
    if not_null is None:
        raise SchemaChangeError(f"drop_not_null: table {table} has no column {column}")
    if db.is_sqlite:
        if not_null:
            sqlite_rebuild.set_not_null(db, table, column, False)
        return
    q_table = db.quote(table)
    if not_null:
        # ACCESS EXCLUSIVE for an instant: nothing to check, nothing rewritten.
        db.execute(f"ALTER TABLE {q_table} ALTER COLUMN {db.quote(column)} DROP NOT NULL").close()
    check = not_null_check_name(table, column)
    found = pg_constraint(db, table, check)
    if found is not None and found.kind == "c":  # left by an interrupted set_not_null
        db.execute(f"ALTER TABLE {q_table} DROP CONSTRAINT {db.quote(check)}").close()


# -- CHECK and FOREIGN KEY -------------------------------------------------------------
def validate(
    db: Database, table: str, name: str, violation: Callable[[str], str], *, added: bool
) -> None:
    """``VALIDATE CONSTRAINT``: a scan under SHARE UPDATE EXCLUSIVE (no reader or writer
    waits for it).  When rows break the constraint, the NOT VALID constraint this call
    ``added`` is dropped again (in a non-atomic step; an atomic one is rolled back), one
    that was there before is left as it was, and the error says so."""
    q_table, q_name = db.quote(table), db.quote(name)
    try:
        # Patient (Database.execute): its lock blocks no reader or writer while it waits.
        db.execute(f"ALTER TABLE {q_table} VALIDATE CONSTRAINT {q_name}").close()
    except DatabaseError as exc:
        if sqlstate(exc) not in (CHECK_VIOLATION, FOREIGN_KEY_VIOLATION):
            raise
        left = ""
        if not added:
            left = (
                f"; the NOT VALID constraint {name}, there before, stays as it was (ALTER TABLE "
                f"{q_table} DROP CONSTRAINT {q_name} if it is not wanted)"
            )
        elif not db.connection.in_atomic_block:
            try:
                db.execute(f"ALTER TABLE {q_table} DROP CONSTRAINT IF EXISTS {q_name}").close()
            except DatabaseError:
                left = (
                    f"; its NOT VALID constraint {name} could not be dropped: "
                    f"ALTER TABLE {q_table} DROP CONSTRAINT {q_name}"
                )
        raise SchemaChangeError(violation(_detail(exc)) + left) from exc


def _add_validated(
    db: Database,
    table: str,
    name: str,
    kind: str,
    clause: str,
    what: str,
    violation: Callable[[str], str],
) -> None:
    """PostgreSQL: ``ADD CONSTRAINT name <clause> NOT VALID``, then ``VALIDATE``; each
    only if not already done."""
    existing = pg_constraint(db, table, name)
    if existing is not None and existing.kind != kind:
        raise SchemaChangeError(
            f"{what}: {table} already has a constraint named {name} of another kind "
            f"({existing.definition}); drop it or choose another name"
        )
    if existing is None:
        db.execute(
            f"ALTER TABLE {db.quote(table)} ADD CONSTRAINT {db.quote(name)} {clause} NOT VALID"
        ).close()
    if existing is None or not existing.validated:
        validate(db, table, name, violation, added=existing is None)


def add_check(db: Database, table: str, name: str, expression: str) -> None:
    what = "add_check"

    def violation(detail: str) -> str:
        return (
            f"{what}: some rows of {table} break {name} (CHECK ({expression})); fix them, "
            "then run again (nothing was changed)"
        )

    clause = f"CHECK ({expression})"
    if db.is_sqlite:
        if sqlite_rebuild.constraint_sql(db, table, name) is not None:
            return
        if db.fetchone(f"SELECT 1 FROM {db.quote(table)} WHERE NOT ({expression}) LIMIT 1"):
            raise SchemaChangeError(violation(""))
        sqlite_rebuild.add_constraint(db, table, name, clause, what)
        return
    _add_validated(db, table, name, "c", clause, what, violation)


def add_foreign_key(
    db: Database,
    table: str,
    columns: str | Sequence[str],
    ref_table: str,
    ref_columns: str | Sequence[str],
    name: str | None,
    on_delete: str,
) -> str:
    what = "add_foreign_key"
    cols, refs = names(columns), names(ref_columns)
    if not cols or len(cols) != len(refs):
        raise SchemaChangeError(
            f"{what}: {len(cols)} column(s) of {table} for {len(refs)} of {ref_table}; "
            "give as many of each"
        )
    action = " ".join(on_delete.upper().split())
    if action not in ON_DELETE:
        raise SchemaChangeError(
            f"{what}: on_delete={on_delete!r} is not one of {', '.join(ON_DELETE)}"
        )
    name = name or identifier(table, *cols, "fkey")
    clause = (
        f"FOREIGN KEY ({_quoted(db, cols)}) REFERENCES {db.quote(ref_table)} "
        f"({_quoted(db, refs)})" + ("" if action == "NO ACTION" else f" ON DELETE {action}")
    )

    def violation(detail: str) -> str:
        example = f" ({detail})" if detail else ""
        return (
            f"{what}: some rows of {table} point at no row of {ref_table}{example}; fix, "
            "delete or set them NULL, then run again (nothing was changed)"
        )

    if db.is_sqlite:
        if sqlite_rebuild.constraint_sql(db, table, name) is not None:
            return name
        _sqlite_check_referenced_key(db, ref_table, refs, what)
        orphan = _sqlite_orphan(db, table, cols, ref_table, refs)
        if orphan is not None:
            raise SchemaChangeError(violation(orphan))
        sqlite_rebuild.add_constraint(db, table, name, clause, what)
        return name
    _add_validated(db, table, name, "f", clause, what, violation)
    return name


def _sqlite_check_referenced_key(db: Database, table: str, columns: list[str], what: str) -> None:
    """PostgreSQL refuses a foreign key to columns that are not a primary key or unique;
    SQLite would accept it and fail every later write ("foreign key mismatch"): refuse
    it here too."""
    wanted = sorted(c.lower() for c in columns)
    primary = [
        name
        for name, pk in db._catalog(
            "SELECT name, pk FROM pragma_table_info(%s) WHERE pk > 0 ORDER BY pk", [table]
        )
        if pk
    ]
    if not primary and not table_exists(db, table):
        raise SchemaChangeError(f"{what}: table {table} does not exist")
    keys = [sorted(c.lower() for c in primary)]
    for (index_name,) in db._catalog(
        'SELECT name FROM pragma_index_list(%s) WHERE "unique" AND NOT partial', [table]
    ):
        found = db._catalog("SELECT name FROM pragma_index_info(%s)", [index_name])
        keys.append(sorted(str(c).lower() for (c,) in found if c is not None))
    if wanted not in keys:
        raise SchemaChangeError(
            f"{what}: ({', '.join(columns)}) of {table} is neither its primary key nor "
            "unique, so it cannot be referenced (PostgreSQL refuses it too); make it unique "
            "first"
        )


def _sqlite_orphan(
    db: Database, table: str, cols: list[str], ref_table: str, refs: list[str]
) -> str | None:
    """A row of ``table`` whose key points at nothing, spelled as PostgreSQL does."""
    child = [f"child.{db.quote(c)}" for c in cols]
    row = db.fetchone(
        f"SELECT {', '.join(child)} FROM {db.quote(table)} AS child WHERE "
        + " AND ".join(f"{c} IS NOT NULL" for c in child)
        + f" AND NOT EXISTS (SELECT 1 FROM {db.quote(ref_table)} AS parent WHERE "
        + " AND ".join(f"parent.{db.quote(r)} = {c}" for r, c in zip(refs, child, strict=True))
        + ") LIMIT 1"
    )
    if row is None:
        return None
    values = ", ".join(str(v) for v in row)
    return f'Key ({", ".join(cols)})=({values}) is not present in table "{ref_table}"'


def drop_constraint(db: Database, table: str, name: str) -> None:
    if db.is_sqlite:
        sqlite_rebuild.drop_constraint(db, table, name)
        return
    if pg_constraint(db, table, name) is not None:
        # ACCESS EXCLUSIVE for an instant.
        db.execute(f"ALTER TABLE {db.quote(table)} DROP CONSTRAINT IF EXISTS {db.quote(name)}")


# -- indexes ---------------------------------------------------------------------------
def refuse_in_transaction(db: Database, what: str) -> None:
    if db.connection.in_atomic_block:
        raise SchemaChangeError(
            f"{what}(concurrently=True) cannot run inside the step's transaction "
            f"({what.split('_')[0].upper()} INDEX CONCURRENTLY never runs in one): set "
            "atomic = False in the script (an SQL file: -- tbmigrate: atomic=false)"
        )


def create_index(
    db: Database,
    table: str,
    columns: Sequence[str],
    name: str,
    *,
    unique: bool,
    concurrently: bool,
) -> None:
    what = "create_index"
    if concurrently:
        refuse_in_transaction(db, what)
    found = index(db, name)
    if found is not None and found.valid:
        if found.same(db, table, columns, unique):
            return
        raise SchemaChangeError(
            f"{what}: an index named {name} already exists ({found.describe()}), not "
            f"{'UNIQUE ' if unique else ''}on {table} ({', '.join(columns)}); drop it, or "
            "give this one another name"
        )
    if found is not None:  # an INVALID leftover of a CREATE INDEX CONCURRENTLY
        if db.connection.in_atomic_block:
            db.execute(f"DROP INDEX {db.quote(name)}").close()
        elif not db.drop_invalid_index(db.quote(name)):
            raise SchemaChangeError(
                f"{what}: the INVALID index {name} left by an earlier attempt could not be "
                f"dropped; DROP INDEX CONCURRENTLY {db.quote(name)} once nothing blocks it, "
                "then run again"
            )
    how = "UNIQUE INDEX" if unique else "INDEX"
    if concurrently and db.is_postgresql:
        how += " CONCURRENTLY"
    sql = f"CREATE {how} {db.quote(name)} ON {db.quote(table)} ({_quoted(db, columns)})"
    try:
        # A lock timeout is retried by db.execute, which drops the INVALID index each
        # failed CREATE INDEX CONCURRENTLY leaves before trying again, and after the last.
        db.execute(sql).close()
    except DatabaseError as exc:
        # (concurrently=True never gets here inside a transaction.)
        gave_up = vendors.of(db.connection).is_lock_timeout(exc)
        if concurrently and db.is_postgresql and not (db.retrying and gave_up):
            db.drop_invalid_index(db.quote(name))
        if isinstance(exc, IntegrityError):
            detail = _detail(exc) or str(exc).strip().splitlines()[0]
            left = (
                f"; it left the INVALID index {name}: DROP INDEX CONCURRENTLY {db.quote(name)}"
                if name in db.invalid_left or db.quote(name) in db.invalid_left
                else ""
            )
            raise SchemaChangeError(
                f"{what}: {table} has duplicate values of ({', '.join(columns)}) ({detail}), "
                f"so the UNIQUE index {name} cannot be built; remove the duplicates, then run "
                f"again{left or ' (nothing was left behind)'}"
            ) from exc
        raise


def drop_index(db: Database, name: str, *, concurrently: bool, if_exists: bool) -> None:
    if concurrently:
        refuse_in_transaction(db, "drop_index")
    how = "DROP INDEX"
    if concurrently and db.is_postgresql:
        how += " CONCURRENTLY"
    if if_exists:
        how += " IF EXISTS"
    db.execute(f"{how} {db.quote(name)}").close()
