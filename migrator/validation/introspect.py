"""A database's schema as comparable data, read from the catalogs, and the differences.

Every object becomes one entry of a flat map, ``key -> attributes`` (the catalog
readers, ``migrator/vendors/pg_catalog.py`` and ``sqlite_catalog.py``, fill it with one
query per kind of object):

=======================  ==========================================  ===========================
object                   key                                         attributes compared
=======================  ==========================================  ===========================
table                    ``("table", t)``                            PG: UNLOGGED, partitioning,
                                                                     options, row security,
                                                                     comment; SQLite: STRICT,
                                                                     WITHOUT ROWID,
                                                                     AUTOINCREMENT, its SQL
view                     ``("view", v)``                             definition, materialized
column                   ``("column", t, c)``                        type, nullable, default,
                                                                     generated, identity,
                                                                     collation, comment
primary key              ``("primary key", t)``                      columns
index                    ``("index", t, name)``                      columns (expressions, DESC),
                                                                     unique, method, predicate,
                                                                     definition
unique constraint        ``("unique constraint", t, "a,b")``         definition (PG: DEFERRABLE,
                                                                     NULLS NOT DISTINCT)
foreign key              ``("foreign key", t, "a,b", "u.x,y")``      ON DELETE / ON UPDATE,
                                                                     MATCH, DEFERRABLE, NOT VALID
check                    ``("check", t, name)`` (SQLite unnamed:     definition, NOT VALID
                         its text)
exclusion constraint     ``("exclusion constraint", t, name)``       definition
trigger                  ``("trigger", t, name)``                    definition, enabled or not
function / procedure     ``("function", "f(integer)")``              definition (body included)
sequence                 ``("sequence", s)``                         type, start, increment, min,
                                                                     max, cycle, owned by,
                                                                     identity
enum / domain            ``("enum", e)`` / ``("domain", d)``         values / type, NOT NULL,
                                                                     default, checks
extension                ``("extension", x)``                        (present or not)
=======================  ==========================================  ===========================

Flat keys make the comparison a matter of set operations, and keep it honest across
vendors: unique constraints and foreign keys are keyed by what they constrain, not by
their names, because SQLite has no stable names for them; indexes, CHECKs and triggers
by name, because scripts drop them by name.  Definitions are the database's own
spelling (``pg_get_indexdef``, the normalised ``sqlite_master`` text): both sides of a
comparison always come from the same vendor.  A table or column replaced by one of
the same shape is a rename (``renames``), reported as one difference.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from migrator import conf
from migrator.vendors import pg_catalog, sqlite_catalog

Key = tuple[str, ...]
Objects = dict[Key, dict[str, Any]]

# Attributes that repeat, as one text, what finer attributes already say: shown only
# when nothing finer differs (an index's whole definition, a SQLite table's statement).
FALLBACK = {"table": "sql", "index": "definition"}


@dataclass(frozen=True)
class Schema:
    objects: Objects

    @cached_property
    def tables(self) -> set[str]:
        return {key[1] for key in self.objects if key[0] == "table"}

    @cached_property
    def views(self) -> set[str]:
        return {key[1] for key in self.objects if key[0] == "view"}

    def columns(self, table: str) -> list[str]:
        return self._columns.get(table, [])

    @cached_property
    def _columns(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for key in self.objects:
            if key[0] == "column":
                found.setdefault(key[1], []).append(key[2])
        return found


def ignored_tables() -> set[str]:
    return {str(name) for name in conf.get("IGNORED_TABLES")}


def read_objects(
    connection: Any,
    *,
    names: Collection[str] | None = None,
    kinds: Collection[str] | None = None,
    ignored: Iterable[str] | None = None,
) -> Objects:
    """The objects of ``connection``'s database from its catalogs (``names``: lower case)."""
    skip = ignored_tables() if ignored is None else set(ignored)
    if connection.vendor == "postgresql":
        return pg_catalog.read(
            connection, names=names, kinds=kinds or pg_catalog.ALL_KINDS, ignored=skip
        ).objects
    return sqlite_catalog.read(
        connection, names=names, kinds=kinds or sqlite_catalog.ALL_KINDS, ignored=skip
    )


def introspect(
    connection: Any,
    ignored: Iterable[str] | None = None,
    *,
    names_only: bool = False,
    columns_only: bool = False,
) -> Schema:
    """Read every object of ``connection``'s database (see the module's table).

    ``names_only`` reads just the table and view names: unlike a column description
    that never waits behind another session's lock on a table.  ``columns_only`` reads
    the tables and their columns (type, nullable, default): what a data-loss preview
    needs.  Each is one catalog query per kind, whatever the number of tables.
    """
    kinds: tuple[str, ...] | None = None
    if names_only:
        return Schema(_names(connection, ignored_tables() if ignored is None else set(ignored)))
    if columns_only:
        kinds = ("table", "column")
    return Schema(read_objects(connection, kinds=kinds, ignored=ignored))


def _names(connection: Any, skip: set[str]) -> Objects:
    """Just the tables and views, by name: no definition is computed, no lock is taken."""
    if connection.vendor == "postgresql":
        sql = (
            "SELECT c.relname, c.relkind IN ('v', 'm') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') AND n.nspname = current_schema()"
        )
    else:
        sql = (
            "SELECT name, type = 'view' FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite\\_%%' ESCAPE '\\'"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [])
        rows = cursor.fetchall()
    return {
        ("view" if is_view else "table", name): {} for name, is_view in rows if name not in skip
    }


def table_columns(connection: Any, tables: Iterable[str]) -> dict[str, set[str] | None]:
    """The column names of each of ``tables`` (``None``: it does not exist), from the
    catalog: what a dry run reads after each step, for the tables that step named."""
    names = sorted(set(tables))
    found: dict[str, set[str] | None] = dict.fromkeys(names)
    if not names:
        return found
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT c.relname, a.attname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
                "AND NOT a.attisdropped "
                "WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema() "
                "AND c.relname = ANY(%s)",
                [names],
            )
        else:
            marks = ", ".join(["%s"] * len(names))
            cursor.execute(
                "SELECT m.name, p.name FROM sqlite_master AS m "
                "LEFT JOIN pragma_table_info(m.name) AS p "
                f"WHERE m.type = 'table' AND m.name IN ({marks})",
                names,
            )
        rows = cursor.fetchall()
    for table, column in rows:
        columns = found.get(table) or set()
        if column is not None:
            columns.add(column)
        found[table] = columns
    return found


# -- renames ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Rename:
    """A table or column of ``before`` that is in ``after`` under another name.

    ``table`` is the table's name in ``before`` (for a table rename, ``old`` itself).
    """

    kind: str  # "table" | "column"
    table: str
    old: str
    new: str

    def describe(self) -> str:
        if self.kind == "table":
            return f"table {self.old} renamed to {self.new}"
        return f"column {self.table}.{self.old} renamed to {self.new}"


_SHAPE_SKIP = {"comment"}


def _shape(attrs: dict[str, Any]) -> tuple[Any, ...]:
    return _frozen({k: v for k, v in attrs.items() if k not in _SHAPE_SKIP})


def renames(before: Schema, after: Schema) -> list[Rename]:
    """Tables and columns of ``before`` replaced in ``after`` by one of the same shape.

    A table that is gone and a new one with exactly the same columns (names, types,
    nullability, defaults) are one table renamed; within a table on both sides, a
    column that is gone and a new one with the same attributes are a column renamed.
    Only one-to-one matches count: two new tables of the shape of one gone table are
    not guessed between.  Works on any ``Schema`` that has its columns, also the
    ``columns_only`` ones of a dry run (``validation.dryrun``), so the rollback preview
    can tell a rename from a drop.
    """
    found: list[Rename] = []
    gone = sorted(before.tables - after.tables)
    new = sorted(after.tables - before.tables)

    def table_shape(schema: Schema, table: str) -> tuple[Any, ...]:
        return tuple(
            sorted(
                (column, _shape(schema.objects[("column", table, column)]))
                for column in schema.columns(table)
            )
        )

    if gone and new:
        shapes_new: dict[tuple[Any, ...], list[str]] = {}
        for table in new:
            shape = table_shape(after, table)
            if shape:
                shapes_new.setdefault(shape, []).append(table)
        shapes_gone: dict[tuple[Any, ...], list[str]] = {}
        for table in gone:
            shapes_gone.setdefault(table_shape(before, table), []).append(table)
        for shape, olds in shapes_gone.items():
            candidates = shapes_new.get(shape, [])
            if shape and len(olds) == 1 and len(candidates) == 1:
                found.append(Rename("table", olds[0], olds[0], candidates[0]))
    for table in sorted(before.tables & after.tables):
        old_cols = set(before.columns(table))
        new_cols = set(after.columns(table))
        missing, extra = old_cols - new_cols, new_cols - old_cols
        if not missing or not extra:
            continue
        by_shape: dict[tuple[Any, ...], tuple[list[str], list[str]]] = {}
        for column in sorted(missing):
            by_shape.setdefault(_shape(before.objects[("column", table, column)]), ([], []))[
                0
            ].append(column)
        for column in sorted(extra):
            shape = _shape(after.objects[("column", table, column)])
            if shape in by_shape:
                by_shape[shape][1].append(column)
        for olds, news in by_shape.values():
            if len(olds) == 1 and len(news) == 1:
                found.append(Rename("column", table, olds[0], news[0]))
    return found


def _replace_word(text: str, old: str, new: str) -> str:
    pattern = rf'(?<![\w$])("?){re.escape(old)}\1(?![\w$])'
    return re.sub(pattern, lambda m: m.group(1) + new + m.group(1), text, flags=re.IGNORECASE)


def _rename_in(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return _replace_word(value, old, new)
    if isinstance(value, list):
        return [_rename_in(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _rename_in(v, old, new) for k, v in value.items()}
    return value


def _apply_renames(objects: Objects, found: list[Rename]) -> Objects:
    """``objects`` as they would read had the renames been made there too."""
    result = dict(objects)
    for rename in found:
        renamed: Objects = {}
        for key, attrs in result.items():
            kind = key[0]
            if rename.kind == "table":
                new_key = tuple(
                    rename.new
                    if (i == 1 and part == rename.old and kind not in OWNERLESS - {"table"})
                    else (
                        _rename_ref(part, rename.old, rename.new)
                        if kind == "foreign key" and i == 3
                        else part
                    )
                    for i, part in enumerate(key)
                )
                text = kind not in ("function", "procedure")
                renamed[new_key] = _rename_in(attrs, rename.old, rename.new) if text else attrs
                continue
            # a column: its own key, the keys and attributes of its table's objects, the
            # foreign keys that reference it, and the views and triggers that name its table
            new_key = key
            if key[1] == rename.table:
                if kind == "column" and key[2] == rename.old:
                    new_key = (kind, key[1], rename.new)
                elif kind in ("unique constraint", "foreign key"):
                    new_key = (kind, key[1], _rename_list(key[2], rename.old, rename.new), *key[3:])
            if kind == "foreign key":
                ref_table, _, ref_columns = new_key[3].partition(".")
                if ref_table == rename.table:
                    columns = _rename_list(ref_columns, rename.old, rename.new)
                    new_key = (*new_key[:3], f"{ref_table}.{columns}")
            mentions = key[1] == rename.table or (
                kind in ("view", "trigger") and _mentions(attrs, rename.table)
            )
            renamed[new_key] = (
                _rename_in(attrs, rename.old, rename.new)
                if mentions and kind != "column"
                else attrs
            )
        result = renamed
    return result


def _rename_ref(ref: str, old: str, new: str) -> str:
    table, dot, columns = ref.partition(".")
    return (new if table == old else table) + dot + columns


def _rename_list(columns: str, old: str, new: str) -> str:
    return ",".join(new if c == old else c for c in columns.split(","))


def _mentions(attrs: dict[str, Any], name: str) -> bool:
    text = " ".join(str(v) for v in attrs.values())
    return _replace_word(text, name, "\x00") != text


# -- differences -----------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    """One way ``actual`` differs from ``expected``."""

    key: Key
    change: str  # missing | extra | changed | renamed
    expected: dict[str, Any] | None
    actual: dict[str, Any] | None
    renamed_to: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        return describe_object(self.key, self.expected or self.actual or {})

    def describe(self, origin: str | None = None) -> str:
        what = self.name
        if self.change == "missing":
            text = f"{what} is missing"
            return text + (f" (created by {origin})" if origin else "")
        if self.change == "extra":
            text = f"{what} is not created by any applied script"
            return text + (f" (it should have been dropped by {origin})" if origin else "")
        if self.change == "renamed":
            text = f"{what} is renamed to {self.renamed_to} (same columns and types)"
            if self.key[0] == "column":
                text = f"{what} is renamed to {self.key[1]}.{self.renamed_to} (same type)"
            return text + (f" (created by {origin})" if origin else "")
        text = f"{what}: " + "; ".join(self.changes())
        return text + (f" (as set by {origin})" if origin else "")

    def changes(self) -> list[str]:
        """``["allows NULL, expected NOT NULL", "type is text, expected ..."]``."""
        if self.notes:
            return list(self.notes)
        exp, act = self.expected or {}, self.actual or {}
        differing = [a for a in sorted(set(exp) | set(act)) if exp.get(a) != act.get(a)]
        fallback = FALLBACK.get(self.key[0])
        if fallback in differing and len(differing) > 1:
            differing.remove(fallback)
        return [_change(attr, exp.get(attr), act.get(attr)) for attr in differing]

    def as_dict(self) -> dict[str, Any]:
        found = {
            "object": self.key[0],
            "table": self.key[1],
            "name": self.name,
            "change": self.change,
            "expected": self.expected,
            "actual": self.actual,
        }
        if self.renamed_to is not None:
            found["renamed_to"] = self.renamed_to
        return found


def _change(attr: str, expected: Any, actual: Any) -> str:
    if attr == "nullable":
        return "allows NULL, expected NOT NULL" if actual else "is NOT NULL, expected to allow NULL"
    if attr == "not_valid":
        return (
            "is NOT VALID (rows older than it were never checked), expected validated"
            if actual
            else "is validated, expected NOT VALID"
        )
    if attr == "unlogged":
        return "is UNLOGGED, expected logged" if actual else "is logged, expected UNLOGGED"
    if attr in ("sql", "definition") and isinstance(expected, str) and isinstance(actual, str):
        return _text_change(attr, expected, actual)
    verb = "are" if attr in ("columns", "values", "options", "checks") else "is"
    return f"{attr} {verb} {_show(attr, actual)}, expected {_show(attr, expected)}"


def _text_change(attr: str, expected: str, actual: str) -> str:
    """Where two long texts part: ``definition differs: ... here, ... expected``."""
    if len(expected) + len(actual) <= 160:
        return f"{attr} is {actual}, expected {expected}"
    start = 0
    while start < min(len(expected), len(actual)) and expected[start] == actual[start]:
        start += 1
    head = max(0, start - 30)

    def cut(text: str) -> str:
        piece = text[head : head + 70]
        return ("..." if head else "") + piece + ("..." if head + 70 < len(text) else "")

    return f"{attr} differs: {cut(actual)!r} here, {cut(expected)!r} expected"


def _show(attr: str, value: Any) -> str:
    if attr == "default":
        return "no default" if value is None else f"DEFAULT {value}"
    if attr == "comment":
        return "no comment" if value is None else repr(value)
    if attr == "state":
        return "enabled" if value is None else str(value)
    if attr == "deferrable":
        return "NOT DEFERRABLE" if not value else str(value)
    if value is None:
        return "none"
    if isinstance(value, list):
        return "(" + ", ".join(map(str, value)) + ")"
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k}: {v}" for k, v in sorted(value.items())) + ")"
    return str(value)


def compare(expected: Schema, actual: Schema) -> list[Difference]:
    """Every difference; a missing or extra table is one difference, not one per column,
    and a renamed table or column is one difference too (see ``renames``)."""
    found_renames = renames(expected, actual)
    exp = _apply_renames(expected.objects, found_renames) if found_renames else expected.objects
    act = actual.objects
    found: list[Difference] = []
    for rename in found_renames:
        key = (
            ("table", rename.old)
            if rename.kind == "table"
            else ("column", rename.table, rename.old)
        )
        found.append(Difference(key, "renamed", expected.objects.get(key), None, rename.new))
    found.extend(_differences(exp, act))
    return _pair_checks(_drop_fallbacks(found))


def _differences(exp: Objects, act: Objects) -> list[Difference]:
    missing_tables = {k[1] for k in exp if k[0] in ("table", "view") and k not in act}
    extra_tables = {k[1] for k in act if k[0] in ("table", "view") and k not in exp}
    found: list[Difference] = []
    for key in sorted(set(exp) | set(act), key=_sort_key):
        in_exp, in_act = key in exp, key in act
        owner = key[1] if key[0] not in OWNERLESS else None
        if in_exp and not in_act:
            if owner in missing_tables:
                continue
            found.append(Difference(key, "missing", exp[key], None))
        elif in_act and not in_exp:
            if owner in extra_tables:
                continue
            found.append(Difference(key, "extra", None, act[key]))
        elif exp[key] != act[key]:
            found.append(Difference(key, "changed", exp[key], act[key]))
    return found


def _drop_fallbacks(found: list[Difference]) -> list[Difference]:
    """A table whose only difference is its whole statement (SQLite) is not repeated
    when a finer difference of that table (a column, a CHECK) already says what."""
    tables_with_more = {d.key[1] for d in found if d.key[0] not in OWNERLESS}
    kept = []
    for d in found:
        if (
            d.change == "changed"
            and d.key[0] == "table"
            and d.key[1] in tables_with_more
            and _only(d, FALLBACK["table"])
        ):
            continue
        kept.append(d)
    return kept


def _only(d: Difference, attr: str) -> bool:
    exp, act = d.expected or {}, d.actual or {}
    return [a for a in set(exp) | set(act) if exp.get(a) != act.get(a)] == [attr]


def _pair_checks(found: list[Difference]) -> list[Difference]:
    """One CHECK gone and one new on the same table: a changed CHECK (SQLite keys an
    unnamed one by its text)."""
    by_table: dict[str, dict[str, list[Difference]]] = {}
    for d in found:
        if d.key[0] == "check" and d.change in ("missing", "extra"):
            by_table.setdefault(d.key[1], {"missing": [], "extra": []})[d.change].append(d)
    result = list(found)
    for sides in by_table.values():
        if len(sides["missing"]) == 1 and len(sides["extra"]) == 1:
            gone, new = sides["missing"][0], sides["extra"][0]
            index = result.index(gone)
            result[index] = Difference(
                gone.key,
                "changed",
                gone.expected,
                new.actual,
                notes=(
                    f"is {(new.actual or {}).get('definition')}, expected "
                    f"{(gone.expected or {}).get('definition')}",
                ),
            )
            result.remove(new)
    return result


# Kinds whose key[1] is their own name, not the table they belong to.
OWNERLESS = {
    "table",
    "view",
    "function",
    "procedure",
    "sequence",
    "enum",
    "domain",
    "extension",
}


def describe_object(key: Key, attrs: dict[str, Any]) -> str:
    kind = key[0]
    if kind == "view":
        return ("materialized view " if attrs.get("materialized") else "view ") + key[1]
    if kind == "table":
        return f"table {key[1]}"
    if kind == "column":
        return f"column {key[1]}.{key[2]}"
    if kind == "primary key":
        return f"primary key of {key[1]}"
    if kind == "index":
        unique = "unique " if attrs.get("unique") else ""
        columns = ", ".join(attrs.get("columns", []))
        return f"{unique}index {key[2]} on {key[1]} ({columns})"
    if kind == "unique constraint":
        return f"unique constraint on {key[1]} ({key[2].replace(',', ', ')})"
    if kind == "foreign key":
        ref_table, _, ref_columns = key[3].partition(".")
        target = f"{ref_table} ({ref_columns.replace(',', ', ')})" if ref_columns else ref_table
        return f"foreign key {key[1]} ({key[2].replace(',', ', ')}) -> {target}"
    if kind == "check":
        if key[2].lower().startswith("check"):
            return f"check constraint on {key[1]} {key[2]}"
        return f"check constraint {key[2]} on {key[1]}"
    if kind in ("exclusion constraint", "trigger"):
        return f"{kind} {key[2]} on {key[1]}"
    if kind == "enum":
        return f"enum type {key[1]}"
    return f"{kind} {key[1]}"


_ORDER = {
    "table": 0,
    "view": 1,
    "column": 2,
    "primary key": 3,
    "index": 4,
    "unique constraint": 5,
    "foreign key": 6,
    "check": 7,
}


def _sort_key(key: Key) -> tuple[Any, ...]:
    return (key[1], _ORDER.get(key[0], 9), key)


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value
