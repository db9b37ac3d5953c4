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

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, ...]
Objects = dict[Key, dict[str, Any]]

_REL = """
    SELECT c.oid, c.relname, c.relkind, c.relpersistence, c.reloptions, c.relispartition,
           c.relpartbound, c.relrowsecurity
    FROM pg_class c
    WHERE c.relnamespace = (SELECT oid FROM ns)
      AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND c.relname <> ALL(%(ignored)s::text[])
      AND (%(all)s OR lower(c.relname) IN (SELECT n FROM names))
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
        'comment', obj_description(c.oid, 'pg_class')))::text
    FROM rel c WHERE c.relkind IN ('r', 'p', 'f')""",
    "view": """
    SELECT 'view', ARRAY[c.relname]::text[], jsonb_strip_nulls(jsonb_build_object(
        'materialized', CASE WHEN c.relkind = 'm' THEN true END,
        'definition', pg_get_viewdef(c.oid),
        'options', array_to_string(c.reloptions, ', '),
        'comment', obj_description(c.oid, 'pg_class')))::text
    FROM rel c WHERE c.relkind IN ('v', 'm')""",
    "column": """
    SELECT 'column', ARRAY[c.relname, a.attname]::text[], jsonb_strip_nulls(jsonb_build_object(
        'type', format_type(a.atttypid, a.atttypmod),
        'nullable', NOT a.attnotnull,
        'default', CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
        'generated', CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END,
        'identity', CASE a.attidentity WHEN 'a' THEN 'ALWAYS' WHEN 'd' THEN 'BY DEFAULT' END,
        'collation', CASE WHEN a.attcollation <> t.typcollation THEN co.collname END,
        'comment', col_description(c.oid, a.attnum)))::text
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
        'comment', obj_description(con.oid, 'pg_constraint')))::text
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
        'columns', (SELECT jsonb_agg(pg_get_indexdef(i.indexrelid, k, true) ORDER BY k)
                    FROM generate_series(1, i.indnkeyatts) k),
        'unique', i.indisunique,
        'method', am.amname,
        'where', pg_get_expr(i.indpred, i.indrelid, true),
        'definition', pg_get_indexdef(i.indexrelid),
        'comment', obj_description(ic.oid, 'pg_class')))::text
    FROM pg_index i
    JOIN rel c ON c.oid = i.indrelid
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_am am ON am.oid = ic.relam
    WHERE NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid
                      AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x'))""",
    "trigger": """
    SELECT 'trigger', ARRAY[c.relname, tg.tgname]::text[], jsonb_strip_nulls(jsonb_build_object(
        'definition', pg_get_triggerdef(tg.oid),
        'state', CASE tg.tgenabled WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'enabled for replica only'
                 WHEN 'A' THEN 'enabled always' END,
        'comment', obj_description(tg.oid, 'pg_trigger')))::text
    FROM pg_trigger tg JOIN rel c ON c.oid = tg.tgrelid
    WHERE NOT tg.tgisinternal""",
    "function": """
    SELECT CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END,
        ARRAY[p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')']::text[],
        jsonb_strip_nulls(jsonb_build_object(
        'definition', pg_get_functiondef(p.oid),
        'comment', obj_description(p.oid, 'pg_proc')))::text
    FROM pg_proc p
    WHERE p.pronamespace = (SELECT oid FROM ns) AND p.prokind IN ('f', 'p')
      AND (%(all)s OR lower(p.proname) IN (SELECT n FROM names))
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
        'comment', obj_description(c.oid, 'pg_class')))::text
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
      AND (%(all)s OR lower(c.relname) IN (SELECT n FROM names)
           OR lower(o.owner_table) IN (SELECT n FROM names))
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
        'comment', obj_description(t.oid, 'pg_type')))::text
    FROM pg_type t
    LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
    LEFT JOIN pg_collation co ON co.oid = t.typcollation
    WHERE t.typnamespace = (SELECT oid FROM ns) AND t.typtype IN ('e', 'd')
      AND (%(all)s OR lower(t.typname) IN (SELECT n FROM names))
      AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_type'::regclass
                      AND e.objid = t.oid AND e.deptype = 'e')""",
    "extension": """
    SELECT 'extension', ARRAY[x.extname]::text[], '{}'::text
    FROM pg_extension x
    WHERE x.extname <> 'plpgsql' AND (%(all)s OR lower(x.extname) IN (SELECT n FROM names))""",
}

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

# Catalog rows written after a watermark, as the names ``read`` filters on: a table's
# own, or the table an index, constraint or trigger belongs to, a function's, a type's.
_TOUCHED = """
    SELECT lower(CASE WHEN c.relkind = 'i' THEN t.relname ELSE c.relname END) AS n
    FROM pg_class c LEFT JOIN pg_index i ON i.indexrelid = c.oid
    LEFT JOIN pg_class t ON t.oid = i.indrelid
    WHERE c.relnamespace = (SELECT oid FROM ns) AND c.xmin::text::bigint >= %(since)s
    UNION SELECT lower(coalesce(t.relname, ty.typname)) FROM pg_constraint con
    LEFT JOIN pg_class t ON t.oid = con.conrelid LEFT JOIN pg_type ty ON ty.oid = con.contypid
    WHERE con.connamespace = (SELECT oid FROM ns) AND con.xmin::text::bigint >= %(since)s
    UNION SELECT lower(t.relname) FROM pg_trigger tg JOIN pg_class t ON t.oid = tg.tgrelid
    WHERE t.relnamespace = (SELECT oid FROM ns) AND tg.xmin::text::bigint >= %(since)s
    UNION SELECT lower(p.proname) FROM pg_proc p
    WHERE p.pronamespace = (SELECT oid FROM ns) AND p.xmin::text::bigint >= %(since)s
    UNION SELECT lower(ty.typname) FROM pg_type ty
    WHERE ty.typnamespace = (SELECT oid FROM ns) AND ty.typtype IN ('e', 'd')
      AND ty.xmin::text::bigint >= %(since)s
"""


@dataclass
class Reading:
    objects: Objects = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)  # names found written after ``since``
    watermark: int | None = None  # the next ``since``


def read(
    connection: Any,
    *,
    names: Collection[str] | None = None,
    kinds: Collection[str] = ALL_KINDS,
    ignored: Collection[str] = (),
    since: int | None = None,
) -> Reading:
    """Every object of the key kinds asked for (``names``: lower case, see the module)."""
    parts = sorted({_PART_OF[kind] for kind in kinds})
    touched = since is not None
    sql = (
        "WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = current_schema()), "
        + (
            f"touched AS ({_TOUCHED}), "
            if touched
            else "touched AS (SELECT NULL::text AS n WHERE false), "
        )
        + "names AS (SELECT unnest(%(names)s::text[]) AS n UNION SELECT n FROM touched), "
        + f"rel AS ({_REL}) "
        + " UNION ALL ".join(f"({_KINDS[part]})" for part in parts)
    )
    if touched:
        sql += (
            " UNION ALL SELECT 'touched', ARRAY(SELECT n FROM touched WHERE n IS NOT NULL), "
            "(pg_snapshot_xmax(pg_current_snapshot())::text::bigint & 4294967295)::text"
        )
    params = {
        "names": sorted(names) if names is not None else [],
        "all": names is None,
        "ignored": sorted(ignored),
        "since": since,
    }
    wanted = set(kinds)
    reading = Reading()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for kind, key, attrs in cursor.fetchall():
            if kind == "touched":
                reading.touched = set(key)
                reading.watermark = int(attrs)
            elif kind in wanted:
                reading.objects[(kind, *key)] = json.loads(attrs) if attrs else {}
    return reading


def watermark(connection: Any) -> int:
    """The ``since`` that makes the next ``read`` see what later transactions write."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint & 4294967295")
        return int(cursor.fetchone()[0])
