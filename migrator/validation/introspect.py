"""A database's schema as comparable data, read with Django's introspection.

Every object becomes one entry of a flat map, ``key -> attributes``:

====================  ======================================  ==============================
object                key                                     attributes compared
====================  ======================================  ==============================
table / view          ``("table", t)`` / ``("view", v)``
column                ``("column", t, c)``                    type, nullable, default
primary key           ``("primary key", t)``                  columns
index                 ``("index", t, name)``                  columns, unique, type
unique constraint     ``("unique constraint", t, "a,b")``
foreign key           ``("foreign key", t, "a", "u.id")``
====================  ======================================  ==============================

Flat keys make the comparison a matter of set operations, and keep it honest across
vendors: unique constraints and foreign keys are keyed by what they constrain, not by
their names, because SQLite has no stable names for them (Django reports ``fk_0`` and
``__unnamed_constraint_1__``); indexes are keyed by name, because ``down`` scripts drop
them by name.  Column types are the database's own spelling (``character varying(20)``
on PostgreSQL, the declared ``VARCHAR(20)`` on SQLite): both sides of a comparison
always come from the same vendor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from migrator import conf

Key = tuple[str, ...]


@dataclass(frozen=True)
class Schema:
    objects: dict[Key, dict[str, Any]]

    @cached_property
    def tables(self) -> set[str]:
        return {key[1] for key in self.objects if key[0] == "table"}

    def columns(self, table: str) -> list[str]:
        return self._columns.get(table, [])

    @cached_property
    def _columns(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for key in self.objects:
            if key[0] == "column":
                found.setdefault(key[1], []).append(key[2])
        return found


@dataclass(frozen=True)
class Difference:
    """One way ``actual`` differs from ``expected``."""

    key: Key
    change: str  # missing | extra | changed
    expected: dict[str, Any] | None
    actual: dict[str, Any] | None

    @property
    def identity(self) -> tuple[Any, ...]:
        """Hashable identity, to recognise the same difference again (see ``roundtrip``)."""
        return (self.key, self.change, _frozen(self.expected), _frozen(self.actual))

    def describe(self, origin: str | None = None) -> str:
        what = describe_object(self.key, self.expected or self.actual or {})
        if self.change == "missing":
            text = f"{what} is missing"
            return text + (f" (created by {origin})" if origin else "")
        if self.change == "extra":
            text = f"{what} is not created by any applied script"
            return text + (f" (it should have been dropped by {origin})" if origin else "")
        assert self.expected is not None and self.actual is not None
        text = f"{what}: " + "; ".join(self.changes())
        return text + (f" (as set by {origin})" if origin else "")

    def changes(self) -> list[str]:
        """``["allows NULL, expected NOT NULL", "type is text, expected ..."]``."""
        exp, act = self.expected or {}, self.actual or {}
        found = []
        for attr in sorted(set(exp) | set(act)):
            if exp.get(attr) == act.get(attr):
                continue
            if attr == "nullable":
                found.append(
                    "allows NULL, expected NOT NULL"
                    if act.get(attr)
                    else "is NOT NULL, expected to allow NULL"
                )
            else:
                verb = "are" if attr == "columns" else "is"
                found.append(
                    f"{attr} {verb} {_show(attr, act.get(attr))}, "
                    f"expected {_show(attr, exp.get(attr))}"
                )
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "object": self.key[0],
            "table": self.key[1],
            "name": describe_object(self.key, self.expected or self.actual or {}),
            "change": self.change,
            "expected": self.expected,
            "actual": self.actual,
        }


def ignored_tables() -> set[str]:
    return {str(name) for name in conf.get("IGNORED_TABLES")}


def introspect(
    connection: Any,
    ignored: Iterable[str] | None = None,
    *,
    names_only: bool = False,
    columns_only: bool = False,
) -> Schema:
    """Read every table, column, index and constraint of ``connection``'s database.

    ``names_only`` reads just the table and view names, from the catalog: unlike a
    column description (``SELECT * FROM t LIMIT 1`` on PostgreSQL), that never waits
    behind another session's lock on a table.  ``columns_only`` reads the tables and
    their columns with defaults, in one catalog query (no constraints, no indexes):
    what a data-loss preview needs, at a cost that does not grow per table.
    """
    skip = ignored_tables() if ignored is None else set(ignored)
    if columns_only:
        return _columns_schema(connection, skip)
    objects: dict[Key, dict[str, Any]] = {}
    intro = connection.introspection
    with connection.cursor() as cursor:
        for info in intro.get_table_list(cursor):
            name = info.name
            if name in skip or name.startswith("sqlite_"):
                continue
            if info.type in ("v", "m"):
                objects[("view", name)] = {}
                continue
            objects[("table", name)] = {}
            if names_only:
                continue
            types = _pg_column_types(cursor, connection, name)
            for column in intro.get_table_description(cursor, name):
                objects[("column", name, column.name)] = {
                    "type": types.get(column.name, str(column.type_code)),
                    "nullable": bool(column.null_ok),
                    "default": None if column.default is None else str(column.default),
                }
            for constraint_name, c in intro.get_constraints(cursor, name).items():
                columns = [str(col) for col in c["columns"]]
                if c["primary_key"]:
                    objects[("primary key", name)] = {"columns": columns}
                elif c["foreign_key"]:
                    ref_table, ref_column = c["foreign_key"]
                    key = ("foreign key", name, ",".join(columns), f"{ref_table}.{ref_column}")
                    objects[key] = {}
                elif c["index"]:
                    objects[("index", name, constraint_name)] = {
                        "columns": columns,
                        "unique": bool(c["unique"]),
                        "type": c.get("type") or "",
                    }
                elif c["unique"]:
                    objects[("unique constraint", name, ",".join(columns))] = {}
    return Schema(objects)


def _columns_schema(connection: Any, skip: set[str]) -> Schema:
    if connection.vendor == "postgresql":
        sql = (
            "SELECT c.relname, a.attname, pg_get_expr(d.adbin, d.adrelid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
            "AND NOT a.attisdropped "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema()"
        )
    else:
        sql = (
            "SELECT m.name, p.name, p.dflt_value FROM sqlite_master AS m "
            "LEFT JOIN pragma_table_info(m.name) AS p "
            "WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'"
        )
    objects: dict[Key, dict[str, Any]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql)
        for table, column, default in cursor.fetchall():
            if table in skip:
                continue
            objects[("table", table)] = {}
            if column is not None:
                objects[("column", table, column)] = {
                    "default": None if default is None else str(default)
                }
    return Schema(objects)


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
            rows = cursor.fetchall()
        else:
            rows = []
            for name in names:
                cursor.execute(
                    "SELECT m.name, p.name FROM sqlite_master AS m "
                    "LEFT JOIN pragma_table_info(m.name) AS p "
                    "WHERE m.type = 'table' AND m.name = %s",
                    [name],
                )
                rows.extend(cursor.fetchall())
    for table, column in rows:
        columns = found.get(table) or set()
        if column is not None:
            columns.add(column)
        found[table] = columns
    return found


def _pg_column_types(cursor: Any, connection: Any, table: str) -> dict[str, str]:
    """PostgreSQL's exact spelling of each column type (``numeric(20,8)``), by column.

    Django's ``FieldInfo`` gives the type's oid and sizes; ``format_type`` turns them
    into the name a person would write, also for enums and domains, whose oids differ
    between two databases built by the same scripts.
    """
    if connection.vendor != "postgresql":
        return {}
    cursor.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        [connection.ops.quote_name(table)],
    )
    return {row[0]: row[1] for row in cursor.fetchall()}


def compare(expected: Schema, actual: Schema) -> list[Difference]:
    """Every difference; a missing or extra table is one difference, not one per column."""
    exp, act = expected.objects, actual.objects
    missing_tables = {k[1] for k in exp if k[0] == "table" and k not in act}
    extra_tables = {k[1] for k in act if k[0] == "table" and k not in exp}
    found: list[Difference] = []
    for key in sorted(set(exp) | set(act), key=_sort_key):
        in_exp, in_act = key in exp, key in act
        owner = key[1] if key[0] not in ("table", "view") else None
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


def origins(snapshots: Sequence[tuple[str, Schema]]) -> dict[Key, str]:
    """Which script last set each object, and which script dropped a vanished one.

    ``snapshots`` are the schemas after each replayed script, oldest first.  For an
    object of the final schema the answer is the script that gave it its final
    attributes; for one that existed earlier and is gone at the end, the script that
    removed it.  Used to tell the user where to look.
    """
    if not snapshots:
        return {}
    final = snapshots[-1][1].objects
    found: dict[Key, str] = {}
    for key, attrs in final.items():
        label = snapshots[-1][0]
        for snap_label, snap in reversed(snapshots):
            if snap.objects.get(key) != attrs:
                break
            label = snap_label
        found[key] = label
    for index, (_label, snap) in enumerate(snapshots[:-1]):
        for key in snap.objects:
            if key not in final and key not in snapshots[index + 1][1].objects:
                found[key] = snapshots[index + 1][0]
    return found


def describe_object(key: Key, attrs: dict[str, Any]) -> str:
    kind = key[0]
    if kind in ("table", "view"):
        return f"{kind} {key[1]}"
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
        ref_table, _, ref_column = key[3].partition(".")
        return f"foreign key {key[1]} ({key[2].replace(',', ', ')}) -> {ref_table} ({ref_column})"
    return " ".join(key)


def _show(attr: str, value: Any) -> str:
    if attr == "default":
        return "no default" if value is None else f"DEFAULT {value}"
    if isinstance(value, list):
        return "(" + ", ".join(map(str, value)) + ")"
    return str(value)


_ORDER = {"table": 0, "view": 1, "column": 2, "primary key": 3, "index": 4}


def _sort_key(key: Key) -> tuple[Any, ...]:
    table = key[1]
    return (table, _ORDER.get(key[0], 5), key)


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value
