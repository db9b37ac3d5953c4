"""SQLite's schema as comparable data: ``sqlite_master`` and the table-valued pragmas.

Everything SQLite knows about a table is the ``CREATE`` statement it keeps in
``sqlite_master``; the pragmas (``pragma_table_xinfo``, ``pragma_index_list``,
``pragma_index_xinfo``, ``pragma_foreign_key_list``) are SQLite's own reading of it.
Each kind of object is read with one query over all tables (a pragma joined to
``sqlite_master``), never one query per table.  What no pragma says is read from the
statement itself, normalised (``normalise``): CHECK constraints, column collations,
``DEFERRABLE`` foreign keys, ``AUTOINCREMENT``, ``STRICT`` and ``WITHOUT ROWID``, and the
text of views and triggers.

The table's whole normalised statement is kept too (attribute ``sql``): a difference
that no finer attribute explains (a generated column's expression, an ``ON CONFLICT``
clause) still shows, as "its definition differs".

Unique constraints and foreign keys are keyed by their columns, since SQLite names
them ``sqlite_autoindex_t_1`` and by position; a CHECK by its name when it has one,
else by its text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable
from typing import Any

Key = tuple[str, ...]
Objects = dict[Key, dict[str, Any]]

ALL_KINDS = frozenset(
    {
        "table",
        "view",
        "column",
        "primary key",
        "index",
        "unique constraint",
        "foreign key",
        "check",
        "trigger",
    }
)

_TOKEN = re.compile(
    r"""
      '(?:[^']|'')*'            # a string
    | "(?:[^"]|"")*"            # a quoted identifier
    | `[^`]*`
    | \[[^\]]*\]
    | --[^\n]*                  # comments
    | /\*.*?\*/
    | [A-Za-z_][\w$]*           # a word
    | \d+(?:\.\d*)?(?:[eE][+-]?\d+)? | \.\d+
    | ->> | -> | <= | >= | <> | != | == | \|\| | << | >>   # operators of two characters
    | \S                        # any other character
    """,
    re.S | re.X,
)
_PLAIN = re.compile(r"^[A-Za-z_][\w$]*$")
_NO_SPACE_BEFORE = {")", ",", ".", ";"}
_NO_SPACE_AFTER = {"(", "."}


def tokens(sql: str) -> list[str]:
    """``sql`` as tokens: words and plain identifiers lower case, comments dropped.

    SQLite compares identifiers without regard to case, quoted or not, so ``"Users"``,
    ``[users]`` and ``USERS`` are one token ``users``; a quoted name that needs its
    quotes keeps them (lower case).  String literals are kept as written.
    """
    found = []
    for token in _TOKEN.findall(sql):
        if token.startswith(("--", "/*")):
            continue
        head = token[0]
        if head in '"`[':
            inner = token[1:-1].replace('""', '"') if head == '"' else token[1:-1]
            token = inner.lower() if _PLAIN.match(inner) else '"' + inner.lower() + '"'
        elif head != "'":
            token = token.lower()
        found.append(token)
    return found


def join(parts: Iterable[str]) -> str:
    out = ""
    previous = ""
    for token in parts:
        if out and token not in _NO_SPACE_BEFORE and previous not in _NO_SPACE_AFTER:
            out += " "
        out += token
        previous = token
    return out


def normalise(sql: str | None) -> str:
    """One spelling of a ``CREATE`` statement: spacing, case, quotes, ``IF NOT EXISTS`` gone.

    Two databases built by the same scripts store the same text, but a table rebuilt by
    ``db.drop_column`` or renamed (SQLite then writes ``CREATE TABLE "b"``) is spelled
    differently for the same meaning; this makes those equal.
    """
    if not sql:
        return ""
    parts = tokens(sql)
    for i in range(min(len(parts), 5)):
        if parts[i : i + 3] == ["if", "not", "exists"]:
            del parts[i : i + 3]
            break
    while parts and parts[-1] == ";":
        parts.pop()
    return join(parts)


# -- parsing a CREATE TABLE ------------------------------------------------------------
_COLUMN_STOP = {
    "constraint",
    "primary",
    "not",
    "null",
    "unique",
    "check",
    "default",
    "collate",
    "references",
    "generated",
    "as",
}
_TABLE_CONSTRAINTS = {"constraint", "primary", "unique", "check", "foreign"}


def _group(parts: list[str], start: int) -> int:
    """The index just past the parenthesised group opening at ``parts[start]``."""
    depth = 0
    for i in range(start, len(parts)):
        if parts[i] == "(":
            depth += 1
        elif parts[i] == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(parts)


def split_table(sql: str) -> tuple[list[list[str]], list[str]]:
    """The items of ``CREATE TABLE t (item, item, ...) tail`` as token lists, and the tail."""
    parts = tokens(sql)
    if "(" not in parts:
        return [], []
    open_at = parts.index("(")
    end = _group(parts, open_at)
    items: list[list[str]] = [[]]
    depth = 0
    for token in parts[open_at + 1 : end - 1]:
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        if token == "," and depth == 0:
            items.append([])
        else:
            items[-1].append(token)
    return [item for item in items if item], parts[end:]


def _names(parts: list[str]) -> list[str]:
    """``["a", "b"]`` from the tokens ``( a , b )``: each item's first word."""
    names: list[str] = []
    current: list[str] = []
    for token in parts[1:-1]:
        if token == ",":
            names.append(current[0] if current else "")
            current = []
        else:
            current.append(token)
    if current:
        names.append(current[0])
    return [n.strip('"') for n in names]


def _after_references(parts: list[str], at: int) -> tuple[str, list[str], str]:
    """From ``REFERENCES p (x) ON DELETE ... DEFERRABLE ...``: parent, columns, deferrable."""
    parent = parts[at + 1].strip('"') if at + 1 < len(parts) else ""
    i = at + 2
    columns: list[str] = []
    if i < len(parts) and parts[i] == "(":
        end = _group(parts, i)
        columns = _names(parts[i:end])
        i = end
    rest = parts[i:]
    deferrable = ""
    if "deferrable" in rest:
        at_d = rest.index("deferrable")
        negated = at_d > 0 and rest[at_d - 1] == "not"
        deferred = rest[at_d + 1 : at_d + 3] == ["initially", "deferred"]
        if not negated:
            deferrable = "DEFERRABLE INITIALLY DEFERRED" if deferred else "DEFERRABLE"
    return parent, columns, deferrable


def parse_table(sql: str) -> dict[str, Any]:
    """What the pragmas do not say about a table, read from its ``CREATE TABLE``.

    Returns ``options`` (``STRICT``, ``WITHOUT ROWID``), ``autoincrement``, each
    column's ``collation`` and ``generated`` expression, the CHECK constraints
    (``[(name or "", "CHECK (...)")]``) and, per foreign key ``(columns, parent)``,
    whether it is ``DEFERRABLE``.
    """
    items, tail = split_table(sql)
    found: dict[str, Any] = {
        "options": join(tail).upper().replace(" ,", ","),
        "autoincrement": False,
        "collations": {},
        "generated": {},
        "checks": [],
        "deferrable": {},
    }
    for item in items:
        first = item[0]
        if first in _TABLE_CONSTRAINTS:
            _table_constraint(item, found)
        else:
            _column(item, found)
    return found


def _table_constraint(item: list[str], found: dict[str, Any]) -> None:
    name = ""
    if item[0] == "constraint" and len(item) > 2:
        name, item = item[1].strip('"'), item[2:]
    if item[0] == "check":
        end = _group(item, 1)
        found["checks"].append((name, "CHECK " + join(item[1:end])))
    elif item[0] == "foreign" and "references" in item:
        columns = _names(item[2 : _group(item, 2)])
        parent, _, deferrable = _after_references(item, item.index("references"))
        found["deferrable"][(tuple(columns), parent)] = deferrable


def _column(item: list[str], found: dict[str, Any]) -> None:
    column = item[0].strip('"')
    i = 1
    while i < len(item):
        token = item[i]
        if token == "collate" and i + 1 < len(item):
            found["collations"][column] = item[i + 1].strip('"')
        elif token == "autoincrement":
            found["autoincrement"] = True
        elif token == "check" and i + 1 < len(item) and item[i + 1] == "(":
            end = _group(item, i + 1)
            name = item[i - 1].strip('"') if i >= 2 and item[i - 2] == "constraint" else ""
            found["checks"].append((name, "CHECK " + join(item[i + 1 : end])))
            i = end
            continue
        elif token == "as" and i + 1 < len(item) and item[i + 1] == "(":
            end = _group(item, i + 1)
            found["generated"][column] = join(item[i + 1 : end]) + (
                " STORED" if end < len(item) and item[end] == "stored" else ""
            )
            i = end
            continue
        elif token == "references":
            parent, _, deferrable = _after_references(item, i)
            found["deferrable"][((column,), parent)] = deferrable
        i += 1


def index_where(sql: str) -> str | None:
    """The predicate of a partial index (``CREATE INDEX ... WHERE <this>``)."""
    parts = tokens(sql)
    depth = 0
    for i, token in enumerate(parts):
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif token == "where" and depth == 0:
            return join(parts[i + 1 :])
    return None


# -- reading ---------------------------------------------------------------------------
def master(connection: Any) -> dict[tuple[str, str], tuple[str, str]]:
    """``{(type, name): (table it belongs to, its SQL)}`` for every schema object: what a
    tracker compares after each step to know what the step changed."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
        return {(t, n): (tbl, sql or "") for t, n, tbl, sql in cursor.fetchall()}


def read(
    connection: Any,
    *,
    names: Collection[str] | None = None,
    kinds: Collection[str] = ALL_KINDS,
    ignored: Collection[str] = (),
) -> Objects:
    """Every object of the kinds asked for, ``{key: attributes}``.

    ``names`` (lower case) limits the reading to the tables, views and triggers of
    those names and whatever belongs to those tables.
    """
    skip = {name.lower() for name in ignored}
    where, params = "", []
    if names is not None:
        where = " AND lower(m.tbl_name) IN (SELECT value FROM json_each(%s))"
        params = [json.dumps(sorted(names))]
    objects: Objects = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.type, m.name, m.tbl_name, m.sql FROM sqlite_master m "
            "WHERE m.name NOT LIKE 'sqlite\\_%%' ESCAPE '\\'" + where + " ORDER BY m.rowid",
            params,
        )
        rows = [r for r in cursor.fetchall() if r[2].lower() not in skip]
        tables = {name: sql or "" for kind, name, _t, sql in rows if kind == "table"}
        parsed = {name: parse_table(sql) for name, sql in tables.items()}
        for kind, name, table, sql in rows:
            if kind == "table" and "table" in kinds:
                info = parsed[name]
                attrs: dict[str, Any] = {"sql": normalise(sql)}
                if info["options"]:
                    attrs["options"] = info["options"]
                if info["autoincrement"]:
                    attrs["autoincrement"] = True
                objects[("table", name)] = attrs
            elif kind == "view" and "view" in kinds:
                objects[("view", name)] = {"definition": normalise(sql)}
            elif kind == "trigger" and "trigger" in kinds:
                objects[("trigger", table, name)] = {"definition": normalise(sql)}
        if not tables:
            return objects
        if "column" in kinds or "primary key" in kinds:
            _columns(cursor, where, params, tables, parsed, kinds, objects)
        if "check" in kinds:
            for table, info in parsed.items():
                seen: dict[str, int] = {}
                for name, definition in info["checks"]:
                    label = name or definition
                    seen[label] = seen.get(label, 0) + 1
                    if seen[label] > 1:
                        label = f"{label} #{seen[label]}"
                    objects[("check", table, label)] = {"definition": definition}
        if "index" in kinds or "unique constraint" in kinds:
            _indexes(cursor, where, params, tables, rows, kinds, objects)
        if "foreign key" in kinds:
            _foreign_keys(cursor, where, params, tables, parsed, objects)
    return objects


def _columns(cursor, where, params, tables, parsed, kinds, objects) -> None:
    cursor.execute(
        'SELECT m.name, p.name, p.type, p."notnull", p.dflt_value, p.pk, p.hidden '
        "FROM sqlite_master m JOIN pragma_table_xinfo(m.name) p "
        "WHERE m.type = 'table'" + where + " ORDER BY m.name, p.cid",
        params,
    )
    keys: dict[str, list[tuple[int, str]]] = {}
    for table, column, type_, notnull, default, pk, hidden in cursor.fetchall():
        if table not in tables:
            continue
        info = parsed[table]
        if "column" in kinds:
            attrs: dict[str, Any] = {
                "type": type_,
                "nullable": not notnull,
                "default": None if default is None else str(default),
            }
            collation = info["collations"].get(column) or _lookup(info["collations"], column)
            if collation:
                attrs["collation"] = collation
            if hidden in (2, 3):
                attrs["generated"] = _lookup(info["generated"], column) or "?"
            objects[("column", table, column)] = attrs
        if pk:
            keys.setdefault(table, []).append((pk, column))
    if "primary key" in kinds:
        for table, columns in keys.items():
            objects[("primary key", table)] = {"columns": [c for _, c in sorted(columns)]}


def _lookup(mapping: dict[str, Any], column: str) -> Any:
    lowered = column.lower()
    return next((v for k, v in mapping.items() if k.lower() == lowered), None)


def _indexes(cursor, where, params, tables, rows, kinds, objects) -> None:
    index_sql = {name: sql or "" for kind, name, _t, sql in rows if kind == "index"}
    cursor.execute(
        'SELECT m.name, il.name, il."unique", il.origin, ix.seqno, ix.name, ix."desc", '
        "ix.coll FROM sqlite_master m JOIN pragma_index_list(m.name) il "
        "JOIN pragma_index_xinfo(il.name) ix "
        "WHERE m.type = 'table' AND ix.key = 1" + where + " ORDER BY m.name, il.name, ix.seqno",
        params,
    )
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for table, index, unique, origin, _seq, column, desc, _coll in cursor.fetchall():
        if table not in tables or origin == "pk":
            continue
        entry = found.setdefault(
            (table, index), {"unique": bool(unique), "origin": origin, "columns": []}
        )
        shown = column if column is not None else "<expression>"
        entry["columns"].append(shown + (" DESC" if desc else ""))
    for (table, index), entry in found.items():
        if entry["origin"] == "u":
            if "unique constraint" in kinds:
                columns = ",".join(c for c in entry["columns"])
                objects[("unique constraint", table, columns)] = {}
            continue
        if "index" not in kinds:
            continue
        sql = index_sql.get(index, "")
        attrs: dict[str, Any] = {"columns": entry["columns"], "unique": entry["unique"]}
        if "<expression>" in " ".join(entry["columns"]):
            attrs["columns"] = _index_columns(sql) or entry["columns"]
        predicate = index_where(sql)
        if predicate:
            attrs["where"] = predicate
        attrs["definition"] = normalise(sql)
        objects[("index", table, index)] = attrs


def _index_columns(sql: str) -> list[str]:
    """The key items of ``CREATE INDEX i ON t (a, lower(b) DESC)`` as written."""
    parts = tokens(sql)
    if "(" not in parts:
        return []
    start = parts.index("(")
    end = _group(parts, start)
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for token in parts[start + 1 : end - 1]:
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        if token == "," and depth == 0:
            items.append(join(current))
            current = []
        else:
            current.append(token)
    if current:
        items.append(join(current))
    return [item.replace(" desc", " DESC").replace(" asc", "") for item in items]


def _foreign_keys(cursor, where, params, tables, parsed, objects) -> None:
    cursor.execute(
        'SELECT m.name, f.id, f.seq, f."table", f."from", f."to", f.on_update, f.on_delete, '
        "f.match FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f "
        "WHERE m.type = 'table'" + where + " ORDER BY m.name, f.id, f.seq",
        params,
    )
    groups: dict[tuple[str, int], dict[str, Any]] = {}
    for table, fk_id, _seq, parent, from_, to, on_update, on_delete, match in cursor.fetchall():
        if table not in tables:
            continue
        entry = groups.setdefault(
            (table, fk_id),
            {"parent": parent, "from": [], "to": [], "attrs": {}},
        )
        entry["from"].append(from_)
        entry["to"].append(to)
        entry["attrs"] = {"on_delete": on_delete, "on_update": on_update}
        if match and match.upper() != "NONE":
            entry["attrs"]["match"] = match
    for (table, _id), entry in groups.items():
        to = entry["to"] if all(c is not None for c in entry["to"]) else []
        key = ("foreign key", table, ",".join(entry["from"]), f"{entry['parent']}.{','.join(to)}")
        attrs = dict(entry["attrs"])
        deferrable = _deferrable(parsed[table]["deferrable"], entry["from"], entry["parent"])
        if deferrable:
            attrs["deferrable"] = deferrable
        objects[key] = attrs


def _deferrable(
    known: dict[tuple[tuple[str, ...], str], str], columns: list[str], parent: str
) -> str:
    wanted = (tuple(c.lower() for c in columns), parent.lower())
    for (cols, table), value in known.items():
        if (tuple(c.lower() for c in cols), table.lower()) == wanted:
            return value
    return ""
