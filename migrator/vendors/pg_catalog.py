"""PostgreSQL's schema as comparable data, read from the system catalogs.

One query per kind of object, never one per table, all sent together as one
``UNION ALL`` (one round trip): each part returns ``(kind, key, attributes as JSON)``.
The server's own functions spell every definition the way it will always spell it
(``pg_get_indexdef``, ``pg_get_constraintdef``, ``pg_get_viewdef``, ``pg_get_triggerdef``,
``pg_get_functiondef``, ``format_type``), so two databases built by the same scripts
read the same, and a hand change shows.

Only the current schema is read (``current_schema()``), and nothing that belongs to an
extension (its functions, types and tables) except the extension's name.  Attributes
with nothing to say are left out (``jsonb_strip_nulls``): a table is ``{}`` unless it is
UNLOGGED, partitioned, commented...

``read(names=...)`` reads only the objects of those names and what belongs to them
(the columns, constraints, indexes and triggers of a named table, the sequences it
owns); with ``since`` it also reads whatever a transaction newer than that watermark
wrote in the catalogs, whatever its name, and returns the names it found and the next
watermark (see ``migrator.validation.tracker``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import weakref
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError

Key = tuple[str, ...]
Objects = dict[Key, dict[str, Any]]

_REL = """
    SELECT c.oid, c.relname, c.relkind, c.relpersistence, c.reloptions, c.relispartition,
           c.relpartbound, c.relrowsecurity
    FROM pg_class c
    WHERE c.relnamespace = (SELECT oid FROM ns)
      AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND c.relname <> ALL(%(ignored)s::text[])
      {filter}
      AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                      AND e.objid = c.oid AND e.deptype = 'e')
"""

_KINDS: dict[str, str] = {
    "table": """
    SELECT 'table', ARRAY[c.relname]::text[], jsonb_strip_nulls(jsonb_build_object(
        'unlogged', CASE WHEN c.relpersistence = 'u' THEN true END,
        'foreign', CASE WHEN c.relkind = 'f' THEN true END,
        'partition_key', CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
        'partition_of', CASE WHEN c.relispartition THEN
            (SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
             WHERE i.inhrelid = c.oid LIMIT 1) || ' ' || pg_get_expr(c.relpartbound, c.oid) END,
        'options', array_to_string(c.reloptions, ', '),
        'row_security', CASE WHEN c.relrowsecurity THEN true END,
        'comment', @comment(c.oid, pg_class, 0)))::text
    FROM rel c WHERE c.relkind IN ('r', 'p', 'f')""",
    "view": """
    SELECT 'view', ARRAY[c.relname]::text[], jsonb_strip_nulls(jsonb_build_object(
        'materialized', CASE WHEN c.relkind = 'm' THEN true END,
        'definition', pg_get_viewdef(c.oid),
        'options', array_to_string(c.reloptions, ', '),
        'comment', @comment(c.oid, pg_class, 0)))::text
    FROM rel c WHERE c.relkind IN ('v', 'm')""",
    "column": """
    SELECT 'column', ARRAY[c.relname, a.attname]::text[], jsonb_strip_nulls(jsonb_build_object(
        'type', format_type(a.atttypid, a.atttypmod),
        'nullable', NOT a.attnotnull,
        'default', CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
        'generated', CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END,
        'identity', CASE a.attidentity WHEN 'a' THEN 'ALWAYS' WHEN 'd' THEN 'BY DEFAULT' END,
        'collation', CASE WHEN a.attcollation <> t.typcollation THEN co.collname END,
        'comment', @comment(c.oid, pg_class, a.attnum)))::text
    FROM rel c
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    LEFT JOIN pg_collation co ON co.oid = a.attcollation
    WHERE c.relkind IN ('r', 'p', 'f')""",
    # Primary keys, unique, foreign key, CHECK and EXCLUDE constraints.  Unique
    # constraints and foreign keys are keyed by their columns, CHECK and EXCLUDE by name.
    "constraint": """
    SELECT CASE con.contype WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique constraint'
                WHEN 'f' THEN 'foreign key' WHEN 'c' THEN 'check'
                ELSE 'exclusion constraint' END,
        CASE con.contype
            WHEN 'p' THEN ARRAY[c.relname]
            WHEN 'u' THEN ARRAY[c.relname, kc.cols]
            WHEN 'f' THEN ARRAY[c.relname, kc.cols, ref.relname || '.' || rc.cols]
            ELSE ARRAY[c.relname, con.conname] END::text[],
        jsonb_strip_nulls(jsonb_build_object(
        'columns', CASE WHEN con.contype = 'p' THEN to_jsonb(kc.colarr) END,
        'definition', CASE WHEN con.contype IN ('u', 'c', 'x')
            THEN regexp_replace(pg_get_constraintdef(con.oid), ' NOT VALID$', '') END,
        'on_delete', CASE WHEN con.contype = 'f' THEN CASE con.confdeltype
            WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE'
            WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' END END,
        'on_update', CASE WHEN con.contype = 'f' THEN CASE con.confupdtype
            WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE'
            WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' END END,
        'match', CASE WHEN con.contype = 'f' AND con.confmatchtype = 'f' THEN 'FULL' END,
        'deferrable', CASE WHEN con.contype IN ('f', 'p') AND con.condeferrable THEN
            CASE WHEN con.condeferred THEN 'DEFERRABLE INITIALLY DEFERRED'
                 ELSE 'DEFERRABLE' END END,
        'not_valid', CASE WHEN NOT con.convalidated THEN true END,
        'comment', @comment(con.oid, pg_constraint, 0)))::text
    FROM pg_constraint con
    JOIN rel c ON c.oid = con.conrelid
    LEFT JOIN pg_class ref ON ref.oid = con.confrelid
    CROSS JOIN LATERAL (
        SELECT array_agg(a.attname::text ORDER BY k.i) AS colarr,
               string_agg(a.attname, ',' ORDER BY k.i) AS cols
        FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n) kc
    LEFT JOIN LATERAL (
        SELECT string_agg(a.attname, ',' ORDER BY k.i) AS cols
        FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
        JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n) rc ON true
    WHERE con.contype IN ('p', 'u', 'f', 'c', 'x')""",
    # Indexes that no constraint owns (a primary key's or a UNIQUE's index is the
    # constraint, compared above).
    "index": """
    SELECT 'index', ARRAY[c.relname, ic.relname]::text[], jsonb_strip_nulls(jsonb_build_object(
        'definition', pg_get_indexdef(i.indexrelid),
        'comment', @comment(ic.oid, pg_class, 0)))::text
    FROM pg_index i
    JOIN rel c ON c.oid = i.indrelid
    JOIN pg_class ic ON ic.oid = i.indexrelid
    WHERE NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid
                      AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x'))""",
    "trigger": """
    SELECT 'trigger', ARRAY[c.relname, tg.tgname]::text[], jsonb_strip_nulls(jsonb_build_object(
        'definition', pg_get_triggerdef(tg.oid),
        'state', CASE tg.tgenabled WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'enabled for replica only'
                 WHEN 'A' THEN 'enabled always' END,
        'comment', @comment(tg.oid, pg_trigger, 0)))::text
    FROM pg_trigger tg JOIN rel c ON c.oid = tg.tgrelid
    WHERE NOT tg.tgisinternal""",
    "function": """
    SELECT CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END,
        ARRAY[p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')']::text[],
        jsonb_strip_nulls(jsonb_build_object(
        'definition', pg_get_functiondef(p.oid),
        'comment', @comment(p.oid, pg_proc, 0)))::text
    FROM pg_proc p
    WHERE p.pronamespace = (SELECT oid FROM ns) AND p.prokind IN ('f', 'p')
      {filter_proname}
      AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass
                      AND e.objid = p.oid AND e.deptype = 'e')""",
    # A sequence is read with its own name or with the table that owns it.
    "sequence": """
    SELECT 'sequence', ARRAY[c.relname]::text[], jsonb_strip_nulls(jsonb_build_object(
        'type', format_type(s.seqtypid, NULL),
        'start', s.seqstart, 'increment', s.seqincrement,
        'min', s.seqmin, 'max', s.seqmax, 'cycle', CASE WHEN s.seqcycle THEN true END,
        'owned_by', o.owner, 'identity', CASE WHEN o.deptype = 'i' THEN true END,
        'unlogged', CASE WHEN c.relpersistence = 'u' THEN true END,
        'comment', @comment(c.oid, pg_class, 0)))::text
    FROM pg_class c
    JOIN pg_sequence s ON s.seqrelid = c.oid
    LEFT JOIN LATERAL (
        SELECT t.relname || '.' || a.attname AS owner, t.relname AS owner_table, d.deptype
        FROM pg_depend d
        JOIN pg_class t ON t.oid = d.refobjid
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        LIMIT 1) o ON true
    WHERE c.relnamespace = (SELECT oid FROM ns) AND c.relkind = 'S'
      AND c.relname <> ALL(%(ignored)s::text[])
      AND coalesce(o.owner_table, '') <> ALL(%(ignored)s::text[])
      {filter_sequence}
      AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                      AND e.objid = c.oid AND e.deptype = 'e')""",
    "type": """
    SELECT CASE t.typtype WHEN 'e' THEN 'enum' ELSE 'domain' END, ARRAY[t.typname]::text[],
        jsonb_strip_nulls(jsonb_build_object(
        'values', CASE WHEN t.typtype = 'e' THEN
            (SELECT jsonb_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e
             WHERE e.enumtypid = t.oid) END,
        'type', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
        'nullable', CASE WHEN t.typtype = 'd' THEN NOT t.typnotnull END,
        'default', t.typdefault,
        'collation', CASE WHEN t.typtype = 'd' AND t.typcollation <> bt.typcollation
            THEN co.collname END,
        'checks', CASE WHEN t.typtype = 'd' THEN
            (SELECT jsonb_object_agg(con.conname, pg_get_constraintdef(con.oid))
             FROM pg_constraint con WHERE con.contypid = t.oid) END,
        'comment', @comment(t.oid, pg_type, 0)))::text
    FROM pg_type t
    LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
    LEFT JOIN pg_collation co ON co.oid = t.typcollation
    WHERE t.typnamespace = (SELECT oid FROM ns) AND t.typtype IN ('e', 'd')
      {filter_typname}
      AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_type'::regclass
                      AND e.objid = t.oid AND e.deptype = 'e')""",
    "extension": """
    SELECT 'extension', ARRAY[x.extname]::text[], '{{}}'::text
    FROM pg_extension x
    WHERE x.extname <> 'plpgsql' {filter_extname}""",
}

_COMMENT = re.compile(r"@comment\(([\w.]+), (\w+), ([\w.]+)\)")


def _expand(sql: str) -> str:
    """``@comment(c.oid, pg_class, 0)``: the object's comment, from pg_description by its
    index (``obj_description`` runs a query of its own per row, several times slower)."""
    return _COMMENT.sub(
        r"(SELECT ds.description FROM pg_description ds WHERE ds.objoid = \1 "
        r"AND ds.classoid = '\2'::regclass AND ds.objsubid = \3)",
        sql,
    )


_KINDS = {kind: _expand(sql) for kind, sql in _KINDS.items()}

# What each key kind is read by (``read(kinds=...)`` takes key kinds).
_PART_OF = {
    "table": "table",
    "view": "view",
    "column": "column",
    "primary key": "constraint",
    "unique constraint": "constraint",
    "foreign key": "constraint",
    "check": "constraint",
    "exclusion constraint": "constraint",
    "index": "index",
    "trigger": "trigger",
    "function": "function",
    "procedure": "function",
    "sequence": "sequence",
    "enum": "type",
    "domain": "type",
    "extension": "extension",
}
ALL_KINDS = frozenset(_PART_OF)

# Catalog rows written after a watermark (``xmin``), as the names ``read`` filters on:
# a relation's own (or the table of an index), the table of a constraint or a trigger.
# This catches what no statement names: objects made by dynamic SQL (a ``DO`` block
# creating partitions in a loop), indexes, constraints and triggers a partitioned
# table clones onto its partitions.  (Functions and types are always named.)
_TOUCHED = """
    SELECT CASE WHEN c.relkind IN ('i', 'I') THEN t.relname ELSE c.relname END AS n
    FROM pg_class c LEFT JOIN pg_index i ON i.indexrelid = c.oid
    LEFT JOIN pg_class t ON t.oid = i.indrelid
    WHERE c.relnamespace = (SELECT oid FROM ns) AND age(c.xmin) <= (SELECT span FROM recent)
    UNION SELECT t.relname FROM pg_constraint con JOIN pg_class t ON t.oid = con.conrelid
    WHERE con.connamespace = (SELECT oid FROM ns) AND age(con.xmin) <= (SELECT span FROM recent)
    UNION SELECT t.relname FROM pg_trigger tg JOIN pg_class t ON t.oid = tg.tgrelid
    WHERE NOT tg.tgisinternal AND age(tg.xmin) <= (SELECT span FROM recent)
      AND t.relnamespace = (SELECT oid FROM ns)
"""

_WANTED = "= ANY((SELECT a FROM wanted)::name[])"
_FILTERS = {
    "filter": f"AND c.relname {_WANTED}",
    "filter_proname": f"AND p.proname {_WANTED}",
    "filter_typname": f"AND t.typname {_WANTED}",
    "filter_extname": f"AND x.extname {_WANTED}",
    # a sequence of a wanted name, or owned by a wanted table: found by index, not by
    # scanning every relation
    "filter_sequence": f"""AND c.oid = ANY(ARRAY(
        SELECT q.oid FROM pg_class q WHERE q.relname {_WANTED}
          AND q.relnamespace = (SELECT oid FROM ns) AND q.relkind = 'S'
        UNION ALL
        SELECT d.objid FROM pg_depend d
        WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid IN (SELECT oid FROM rel)
          AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))""",
}
_NO_FILTERS = dict.fromkeys(_FILTERS, "")


@dataclass
class Reading:
    objects: Objects = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)  # names found written after ``since``
    watermark: int | None = None  # the next ``since``


@functools.cache
def _sql(parts: tuple[str, ...], filtered: bool, touched: bool, scan: bool = True) -> str:
    """The reading: ``touched`` returns the next watermark, ``scan`` also looks for
    catalog rows written since the last one."""
    filters = _FILTERS if filtered else _NO_FILTERS
    sql = "WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = current_schema()), "
    if touched and not scan:
        sql += "touched AS (SELECT NULL::name AS n WHERE false), "
    elif touched:
        # age(xmin): how many transactions ago a row was written; a row written at or
        # after the watermark is younger than the watermark itself (xids do not compare
        # with < across wraparound, ages do).
        sql += f"recent AS (SELECT age(%(since)s::text::xid) AS span), touched AS ({_TOUCHED}), "
    if filtered:
        extra = " || ARRAY(SELECT n FROM touched)::name[]" if touched else ""
        sql += f"wanted AS (SELECT %(names)s::name[]{extra} AS a), "
    sql += f"rel AS ({_REL.format(**filters)}) "
    sql += " UNION ALL ".join(f"({_KINDS[part].format(**filters)})" for part in parts)
    if touched:
        sql += (
            " UNION ALL SELECT 'touched', ARRAY(SELECT n FROM touched WHERE n IS NOT NULL), "
            "(pg_snapshot_xmax(pg_current_snapshot())::text::bigint & 4294967295)::text"
        )
    return sql


_PARAMS = ("names", "ignored", "since")
_TYPES = {"names": "text[]", "ignored": "text[]", "since": "bigint"}
# The statements prepared on each session (a server-side session, by its driver object).
_prepared: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def _execute(connection: Any, sql: str, params: dict[str, Any], prepare: bool) -> list[Any]:
    """Run ``sql``; with ``prepare``, as a statement prepared once per session.

    Planning a dozen joins costs more than running them on a few objects, and Django
    turns psycopg's own preparation off (``prepare_threshold = None``), so the
    statement is prepared with SQL's ``PREPARE`` and run with ``EXECUTE``.  Only in
    autocommit (a failed ``EXECUTE`` must not abort a caller's transaction), and once
    again if the session lost it (a script's ``DEALLOCATE ALL``).
    """
    used = [name for name in _PARAMS if f"%({name})s" in sql]
    if not prepare or connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    connection.ensure_connection()
    raw = connection.connection
    done = _prepared.setdefault(raw, set())
    name = "tbmigrate_catalog_" + hashlib.sha1(sql.encode()).hexdigest()[:12]
    values = [params[p] for p in used]
    execute = f"EXECUTE {name}(" + ", ".join(["%s"] * len(used)) + ")"
    for attempt in (1, 2):
        if name not in done:
            numbered = sql
            for n, param in enumerate(used, start=1):
                numbered = numbered.replace(f"%({param})s", f"${n}")
            types = ", ".join(_TYPES[p] for p in used)
            with connection.cursor() as cursor:
                cursor.execute(f"PREPARE {name} ({types}) AS {numbered}")
            done.add(name)
        try:
            with connection.cursor() as cursor:
                cursor.execute(execute, values)
                return list(cursor.fetchall())
        except DatabaseError as exc:
            if attempt == 2 or "does not exist" not in str(exc):
                raise
            done.discard(name)
    raise AssertionError("unreachable")  # pragma: no cover


def read(
    connection: Any,
    *,
    names: Collection[str] | None = None,
    kinds: Collection[str] = ALL_KINDS,
    ignored: Collection[str] = (),
    since: int | None = None,
    scan: bool = True,
    prepare: bool = False,
) -> Reading:
    """Every object of the key kinds asked for.

    ``names`` are as the catalog spells them (unquoted identifiers in lower case);
    ``since`` (with ``names``) returns the next watermark and, with ``scan``, adds
    whatever was written after that one (a scan of the catalogs: for steps whose
    statements may do what they do not name).
    ``prepare``: the statement is prepared once per session (for a reading repeated
    after every step of a replay).
    """
    parts = tuple(sorted({_PART_OF[kind] for kind in kinds}))
    filtered = names is not None
    touched = filtered and since is not None
    params: dict[str, Any] = {"ignored": sorted(ignored)}
    if filtered:
        params["names"] = sorted(names or ())
    if touched and scan:
        params["since"] = since
    wanted = set(kinds)
    reading = Reading()
    for kind, key, attrs in _execute(
        connection, _sql(parts, filtered, touched, scan), params, prepare
    ):
        if kind == "touched":
            reading.touched = set(key)
            reading.watermark = int(attrs)
        elif kind in wanted:
            found = json.loads(attrs) if attrs else {}
            if kind == "index":
                found = {**index_parts(found.get("definition", "")), **found}
            reading.objects[(kind, *key)] = found
    return reading


def watermark(connection: Any) -> int:
    """The ``since`` that makes the next ``read`` see what later transactions write."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint & 4294967295")
        return int(cursor.fetchone()[0])


_USING = re.compile(r" USING (\w+) \(")


def index_parts(definition: str) -> dict[str, Any]:
    """``columns``, ``unique``, ``method`` and ``where`` of a ``pg_get_indexdef`` text.

    One call of ``pg_get_indexdef`` per index, parsed here, costs a third of asking the
    server for each column and the predicate as well.
    """
    match = _USING.search(definition)
    if not match:
        return {"unique": definition.startswith("CREATE UNIQUE")}
    start = match.end() - 1
    depth, quote, end = 0, "", len(definition)
    items: list[str] = []
    current: list[str] = []
    for i in range(start, len(definition)):
        char = definition[i]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
            if depth == 1:
                current = []
                continue
        elif char == ")":
            depth -= 1
            if depth == 0:
                items.append("".join(current).strip())
                end = i + 1
                break
        elif char == "," and depth == 1:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts: dict[str, Any] = {
        "columns": items,
        "unique": definition.startswith("CREATE UNIQUE"),
        "method": match.group(1),
    }
    rest = definition[end:]
    where = rest.find(" WHERE ")
    if where >= 0:
        parts["where"] = rest[where + 7 :].strip()
    return parts
