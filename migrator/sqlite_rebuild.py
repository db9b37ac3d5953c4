"""Change a SQLite table the way ``ALTER TABLE`` cannot: by rebuilding it.

SQLite alters little in place (add and rename a column, rename a table); dropping a
column that an index or constraint uses, making a column NOT NULL or nullable, adding or
dropping a CHECK or a FOREIGN KEY all mean writing the table anew.  This module does it
the documented way (https://sqlite.org/lang_altertable.html#otheralter, the procedure
Django's schema editor follows in ``_remake_table``), for any change of the table's
definition:

1. with foreign keys off *before* the transaction (SQLite ignores the pragma inside
   one, and dropping a parent table with them on deletes or nulls its children's rows:
   knex #1598, sequelize #5007), in one transaction:
2. the views, and the triggers of other tables, that name the table are dropped (SQLite
   refuses to rename a table while a view or trigger names a missing one);
3. ``CREATE TABLE`` a new table with the changed definition, copy every row into it,
   drop the old table, rename the new one;
4. its indexes and triggers, the AUTOINCREMENT counter, then the views and the other
   triggers are put back, each as it was written;
5. no row of the table or of the tables that reference it may point at nothing that did
   not already, else it is all undone.

Inside a migration step's own transaction (an atomic step: tbmigrate turned foreign keys
off before it began, and ``fkguard`` checks the step before it commits) the same work
runs in that transaction.

The definition is edited as text, split into its items (column definitions and table
constraints) by a small tokenizer that knows SQLite's quotes and comments.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, transaction

from migrator.errors import SchemaChangeError

if TYPE_CHECKING:
    from migrator.database import Database

_TOKEN = re.compile(
    r"""
      '(?:[^']|'')*'            # a string
    | "(?:[^"]|"")*"            # quoted identifiers
    | `(?:[^`]|``)*`
    | \[[^\]]*\]
    | --[^\n]*                  # comments
    | /\*.*?(?:\*/|$)
    | [A-Za-z_][\w$]*           # a word
    | \S                        # any other character
    """,
    re.S | re.X,
)
_TABLE_CONSTRAINT = {"constraint", "primary", "unique", "check", "foreign"}
TEMP_PREFIX = "tbmigrate_rebuild_"


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int

    @property
    def comment(self) -> bool:
        return self.text.startswith(("--", "/*"))

    @property
    def word(self) -> str:
        """Lower case for a bare word; "" for anything else."""
        return self.text.lower() if self.text[0].isalpha() or self.text[0] == "_" else ""

    @property
    def name(self) -> str:
        """The identifier it spells, unquoted (bare words as written)."""
        head = self.text[0]
        if head == '"':
            return self.text[1:-1].replace('""', '"')
        if head == "`":
            return self.text[1:-1].replace("``", "`")
        if head == "[":
            return self.text[1:-1]
        return self.text


def tokens(sql: str) -> list[Token]:
    """``sql`` as tokens, comments dropped."""
    found = [Token(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(sql)]
    return [t for t in found if not t.comment]


def same_name(a: str, b: str) -> bool:
    """SQLite compares identifiers without regard to (ASCII) case."""
    return a.lower() == b.lower()


def mentions(sql: str, name: str) -> bool:
    """Whether ``sql`` has a token spelling the identifier ``name`` (quoted or not)."""
    return any(same_name(t.name, name) for t in tokens(sql) if t.text[0] not in "'")


@dataclass
class Item:
    """One entry between the parentheses of ``CREATE TABLE``."""

    sql: str
    column: str | None = None  # its name, for a column definition
    constraint: str | None = None  # its name, for a named table constraint

    @classmethod
    def parse(cls, sql: str) -> Item:
        parts = tokens(sql)
        if not parts:
            raise SchemaChangeError(f"cannot read the table definition item {sql!r}")
        first = parts[0]
        if first.word in _TABLE_CONSTRAINT:
            named = first.word == "constraint" and len(parts) > 1
            return cls(sql, constraint=parts[1].name if named else None)
        return cls(sql, column=first.name)


@dataclass
class Definition:
    """A ``CREATE TABLE`` statement as its head, items and tail (``WITHOUT ROWID``...)."""

    head: str
    items: list[Item]
    tail: str

    @classmethod
    def parse(cls, sql: str) -> Definition:
        depth, start, opened = 0, 0, -1
        items: list[Item] = []
        for token in tokens(sql):
            if token.text == "(":
                depth += 1
                if depth == 1 and opened < 0:
                    opened = start = token.end
            elif token.text == ")":
                depth -= 1
                if depth == 0 and opened >= 0:
                    items.append(Item.parse(_without_comments(sql[start : token.start])))
                    return cls(sql[: opened - 1], items, sql[token.end :])
            elif token.text == "," and depth == 1:
                items.append(Item.parse(_without_comments(sql[start : token.start])))
                start = token.end
        raise SchemaChangeError("cannot read the table definition")

    def column(self, name: str) -> Item | None:
        return next((i for i in self.items if i.column and same_name(i.column, name)), None)

    def constraint(self, name: str) -> Item | None:
        return next((i for i in self.items if i.constraint and same_name(i.constraint, name)), None)

    def sql_for(self, quoted_name: str) -> str:
        return f"CREATE TABLE {quoted_name} ({', '.join(i.sql for i in self.items)}){self.tail}"


def _without_comments(sql: str) -> str:
    """``sql`` with its comments gone (an item's ``-- note`` would swallow the comma
    written after it), stripped."""
    out, last = [], 0
    for match in _TOKEN.finditer(sql):
        if match.group(0).startswith(("--", "/*")):
            out.append(sql[last : match.start()] + " ")
            last = match.end()
    out.append(sql[last:])
    return "".join(out).strip()


def not_null_clause(column_sql: str, wanted: bool) -> str | None:
    """``column_sql`` (a column definition) made NOT NULL (``wanted``) or nullable;
    None when it already is.  Only the column's own clauses count: a ``NULL`` inside
    ``DEFAULT (NULL)`` or ``CHECK (x IS NULL)`` is not one."""
    parts = tokens(column_sql)
    depth, top = 0, []  # top: the indexes of the tokens outside parentheses
    for i, token in enumerate(parts):
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth -= 1
        elif depth == 0:
            top.append(i)
    words = [parts[i].word for i in top]
    not_null = next(
        (n for n in range(1, len(words)) if words[n - 1] == "not" and words[n] == "null"), None
    )
    if wanted:
        if not_null is not None:
            return None
        # A bare NULL clause (Django writes "x" integer NULL) would contradict it.
        cut = [
            top[n]
            for n, word in enumerate(words)
            if word == "null" and n > 0 and words[n - 1] not in {"default", "is", "not"}
        ]
        return _cut(column_sql, parts, [(i, i) for i in cut]) + " NOT NULL"
    if not_null is None:
        return None
    first, last = not_null - 1, not_null
    if first >= 2 and words[first - 2] == "constraint":
        first -= 2  # CONSTRAINT name NOT NULL
    if words[last + 1 : last + 3] == ["on", "conflict"] and last + 3 < len(words):
        last += 3  # NOT NULL ON CONFLICT IGNORE
    return _cut(column_sql, parts, [(top[first], top[last])])


def _cut(sql: str, parts: list[Token], spans: list[tuple[int, int]]) -> str:
    """``sql`` without the tokens ``parts[a..b]`` of each span, and the space before."""
    out, last = [], 0
    for a, b in spans:
        before = parts[a - 1].end if a > 0 else parts[a].start
        out.append(sql[last:before])
        last = parts[b].end
    out.append(sql[last:])
    return "".join(out).strip()


# -- the rebuild -----------------------------------------------------------------------
def _table_sql(db: Database, table: str) -> str | None:
    found = db._catalog("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = %s", [table])
    return str(found[0][0]) if found else None


def read(db: Database, table: str, what: str) -> Definition:
    sql = _table_sql(db, table)
    if sql is None:
        raise SchemaChangeError(f"{what}: table {table} does not exist")
    return Definition.parse(sql)


def copyable_columns(db: Database, table: str) -> list[str]:
    """The columns whose values a rebuild copies (generated ones compute themselves)."""
    return [
        name
        for name, hidden in db._catalog(
            "SELECT name, hidden FROM pragma_table_xinfo(%s) ORDER BY cid", [table]
        )
        if hidden not in (2, 3)
    ]


def rebuild(
    db: Database,
    table: str,
    definition: Definition,
    *,
    what: str,
    columns: list[str] | None = None,
    dropped_column: str | None = None,
) -> None:
    """Rebuild ``table`` with ``definition`` (its edited ``read``), copying ``columns``
    (every copyable one), keeping every row of every table, its indexes (but those on
    ``dropped_column``), triggers, views and AUTOINCREMENT counter.  ``what`` names the
    helper in errors."""
    columns = columns if columns is not None else copyable_columns(db, table)
    own = db._catalog(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = %s "
        "AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type, rowid",
        [table],
    )
    if dropped_column is not None:
        for kind, name, sql in own:
            if kind == "trigger" and mentions(sql, dropped_column):
                raise SchemaChangeError(
                    f"{what}: trigger {name} uses {table}.{dropped_column}; drop the trigger "
                    "first (and create it again after, if it is still wanted)"
                )
    others = _naming(db, table)
    with foreign_keys_off(db, what, table):
        has_sequence = db._catalog(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
        )
        found = (
            db._catalog("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
            if has_sequence
            else []
        )
        seq = found[0][0] if found else None
        q_table, temp = db.quote(table), db.quote(f"{TEMP_PREFIX}{table}")
        cols = ", ".join(db.quote(c) for c in columns)
        for kind, name, _ in reversed(others):
            db.execute(f"DROP {kind.upper()} {db.quote(name)}")
        db.execute(definition.sql_for(temp))
        db.execute(f"INSERT INTO {temp} ({cols}) SELECT {cols} FROM {q_table}")
        db.execute(f"DROP TABLE {q_table}")
        db.execute(f"ALTER TABLE {temp} RENAME TO {q_table}")
        for kind, name, sql in own:
            if kind == "index" and dropped_column and mentions(_after_on(sql), dropped_column):
                continue  # an index on the dropped column goes with it, as on PostgreSQL
            _recreate(db, what, kind, name, sql)
        if seq is not None:
            db.execute("UPDATE sqlite_sequence SET seq = %s WHERE name = %s", [seq, table])
        for kind, name, sql in others:
            _recreate(db, what, kind, name, sql)


def _naming(db: Database, table: str) -> list[tuple[str, str, str]]:
    """The views, and the triggers of other tables, that name ``table`` or such a view,
    in the order they were created (SQLite refuses to rename a table while one of them
    names a missing table, so they are dropped and put back around the swap)."""
    candidates = db._catalog(
        "SELECT type, name, tbl_name, sql FROM sqlite_master "
        "WHERE type IN ('view', 'trigger') AND sql IS NOT NULL ORDER BY rowid"
    )
    names, found = [table], set()
    grew = True
    while grew:
        grew = False
        for kind, name, tbl, sql in candidates:
            if name in found or (kind == "trigger" and same_name(tbl, table)):
                continue
            if any(mentions(sql, n) for n in names):
                found.add(name)
                names.append(name)
                grew = True
    return [(kind, name, sql) for kind, name, _tbl, sql in candidates if name in found]


def _after_on(index_sql: str) -> str:
    """The part of ``CREATE INDEX i ON t (cols) [WHERE ...]`` after the table name."""
    return index_sql.split("(", 1)[-1]


def _recreate(db: Database, what: str, kind: str, name: str, sql: str) -> None:
    try:
        db.execute(sql)
    except DatabaseError as exc:
        raise SchemaChangeError(
            f"{what}: the {kind} {name} does not work on the changed table "
            f"({str(exc).strip().splitlines()[0]}); drop it first, and create it again after "
            "in the form the new table needs"
        ) from exc


@contextlib.contextmanager
def foreign_keys_off(db: Database, what: str, table: str) -> Iterator[None]:
    """Run the body as one transaction with foreign keys off, then check that no row of
    ``table``, or pointing at it, is left pointing at nothing that was not already.

    Inside a transaction (an atomic step) foreign keys must already be off, since
    SQLite ignores the pragma there; the step's own check (``fkguard``) follows."""
    if db.connection.in_atomic_block:
        if db._catalog("PRAGMA foreign_keys")[0][0]:
            raise SchemaChangeError(
                f"{what} on SQLite rebuilds the table, which needs foreign keys off before "
                "the transaction starts; call it from a migration step (tbmigrate turns them "
                "off) or outside a transaction"
            )
        yield
        return
    was_on = bool(db._catalog("PRAGMA foreign_keys")[0][0])
    db.execute("PRAGMA foreign_keys = OFF")
    try:
        before = set(broken_references(db, table))
        with transaction.atomic(using=db.alias):
            yield
            new = [row for row in broken_references(db, table) if row not in before]
            if new:
                raise SchemaChangeError(
                    f"{what} would leave {len(new)} row(s) pointing at nothing (table, "
                    f"rowid, parent: {', '.join(map(str, new[:3]))}); nothing was changed"
                )
    finally:
        if was_on:
            db.execute("PRAGMA foreign_keys = ON")


def broken_references(db: Database, table: str) -> Iterator[tuple[Any, ...]]:
    """Rows of ``table``, and of the tables that reference it, whose foreign keys point at
    nothing: (table, rowid, parent)."""
    children = {
        name
        for (name,) in db._catalog(
            "SELECT m.name FROM sqlite_master AS m, pragma_foreign_key_list(m.name) AS f "
            "WHERE m.type = 'table' AND f.\"table\" = %s COLLATE NOCASE",
            [table],
        )
    }
    exists = _table_sql(db, table) is not None
    for name in sorted(children | ({table} if exists else set())):
        for row in db._catalog(f"PRAGMA foreign_key_check({db.quote(name)})"):
            if same_name(row[0], table) or same_name(row[2], table):
                yield (row[0], row[1], row[2])


# -- the changes -----------------------------------------------------------------------
def drop_column(db: Database, table: str, column: str) -> None:
    """Rebuild ``table`` without ``column``; its indexes and the table constraints that
    name it go with it (as on PostgreSQL)."""
    what = "drop_column"
    definition = read(db, table, what)
    if definition.column(column) is None:
        raise SchemaChangeError(f"{what}: table {table} has no column {column}")
    definition.items = [
        item
        for item in definition.items
        if not (item.column and same_name(item.column, column))
        and not (item.column is None and mentions(item.sql, column))
    ]
    columns = [c for c in copyable_columns(db, table) if not same_name(c, column)]
    rebuild(db, table, definition, what=what, columns=columns, dropped_column=column)


def set_not_null(db: Database, table: str, column: str, wanted: bool) -> bool:
    """Make ``column`` NOT NULL (``wanted``) or nullable; False when it already was."""
    what = "set_not_null" if wanted else "drop_not_null"
    definition = read(db, table, what)
    item = definition.column(column)
    if item is None:
        raise SchemaChangeError(f"{what}: table {table} has no column {column}")
    changed = not_null_clause(item.sql, wanted)
    if changed is None:
        return False
    item.sql = changed
    rebuild(db, table, definition, what=what)
    return True


def add_constraint(db: Database, table: str, name: str, clause: str, what: str) -> bool:
    """Add ``CONSTRAINT name <clause>`` to ``table``; False when one of that name is there."""
    definition = read(db, table, what)
    if definition.constraint(name) is not None:
        return False
    definition.items.append(Item(f"CONSTRAINT {db.quote(name)} {clause}", constraint=name))
    rebuild(db, table, definition, what=what)
    return True


def drop_constraint(db: Database, table: str, name: str) -> bool:
    """Drop the table constraint ``name``; False when there is none of that name."""
    what = "drop_constraint"
    definition = read(db, table, what)
    item = definition.constraint(name)
    if item is None:
        return False
    definition.items.remove(item)
    rebuild(db, table, definition, what=what)
    return True


def constraint_sql(db: Database, table: str, name: str) -> str | None:
    """The text of the table constraint ``name`` of ``table`` (None: there is none)."""
    sql = _table_sql(db, table)
    if sql is None:
        return None
    item = Definition.parse(sql).constraint(name)
    return item.sql if item else None
