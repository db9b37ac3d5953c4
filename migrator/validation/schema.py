"""``validate schema``: does the live database look like its applied scripts say it should?

Three families of checks:

- **history**: the applied rows against the files (edited, missing, failed,
  interrupted, out of order);
- **drift**: the expected schema is *derived* by replaying the applied scripts on a
  scratch database of the same vendor, then compared object by object with the live
  one, both read from the catalogs (``introspect``: tables, columns, constraints,
  indexes, views, triggers, functions, sequences, types...), so the comparison is
  like for like; a renamed table or column is reported as a rename;
- **integrity**: orphaned rows behind every foreign key, composite ones included,
  counted even where the database does not enforce the key (SQLite with foreign keys
  off, PostgreSQL ``NOT VALID`` constraints or ``session_replication_role = replica``);
  rows breaking a ``NOT VALID`` CHECK; sequences behind their column (the next insert
  collides); SQLite's ``integrity_check`` and ``foreign_key_check``; PostgreSQL's
  invalid indexes (left by a failed ``CREATE INDEX CONCURRENTLY``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connections

from migrator import history, planner, targets
from migrator.errors import DatabaseUnavailable, MigrationFailed
from migrator.planner import MigrationState
from migrator.validation import common
from migrator.validation.base import CheckResult, Report, failed, passed, warned
from migrator.validation.introspect import Schema, compare, ignored_tables, introspect
from migrator.validation.scratch import drops_in_background, replay, scratch_database

SAMPLES = 5
_CHUNK = 100  # counting queries sent together as one UNION ALL


def validate_schema(alias: str, scripts_dir: Path) -> Report:
    report = Report("schema", targets.describe(alias), targets.vendor(alias))
    report.add(common.connectivity(alias))
    if not report.ok:
        return report
    loaded = common.load_each(scripts_dir)
    if loaded.problems:
        report.add(common.scripts_check(loaded))
    states = common.states(alias, loaded)
    report.add(history_checks(states, history.load(alias)))
    with common.bounded_lock_waits(alias), drops_in_background():
        live: list[Schema] = []

        def read_live() -> Schema:
            if not live:
                live.append(introspect(connections[alias]))
            return live[0]

        # The live schema is read after the replay, while the scratch database is dropped.
        report.add(common.guarded("drift", lambda: drift(alias, states, read_live)))
        report.add(integrity(alias, read_live))
    return report


# -- history ---------------------------------------------------------------------------
def history_checks(
    states: list[MigrationState], records: list[history.Record]
) -> list[CheckResult]:
    results = []
    changed = [s for s in states if s.state == planner.CHANGED]
    if changed:
        results.append(
            failed(
                "history.checksums",
                f"{len(changed)} applied script(s) were edited after they ran: "
                + common.labels(changed)
                + " (restore the files from version control, or accept the edits with "
                "`tbmigrate repair --checksums`)",
                [_state(s) for s in changed],
            )
        )
    else:
        applied = sum(1 for s in states if s.is_applied)
        results.append(
            passed("history.checksums", f"{applied} applied script(s) match their checksums")
        )
    missing = [s for s in states if s.state == planner.MISSING]
    if missing:
        results.append(
            failed(
                "history.files",
                f"{len(missing)} applied migration(s) have no script file: "
                + common.labels(missing)
                + " (restore the files: rollback, drift checks and new databases need them)",
                [_state(s) for s in missing],
            )
        )
    failed_ones = [s for s in states if s.state == planner.FAILED_STATE]
    if failed_ones:
        results.append(
            failed(
                "history.failed",
                f"{len(failed_ones)} migration(s) failed part-way: "
                + "; ".join(f"{s.label} ({s.record.error})" for s in failed_ones if s.record)
                + " (clean up what the step left, then `tbmigrate repair VERSION`)",
                [_state(s) for s in failed_ones],
            )
        )
    results.extend(_journaled(states))
    results.append(_order(states, records))
    return results


def _journaled(states: list[MigrationState]) -> list[CheckResult]:
    """Steps journaled as in progress: interrupted (FAIL) or running right now (WARN)."""
    results = []
    interrupted = [s for s in states if s.state == planner.INTERRUPTED]
    if interrupted:
        results.append(
            failed(
                "history.interrupted",
                f"{len(interrupted)} migration(s) were interrupted: "
                + "; ".join(planner.describe_problem(s) for s in interrupted)
                + f" ({planner.INTERRUPTED.fix}); its changes are partly in the database, so "
                "drift below may list them",
                [_state(s) for s in interrupted],
            )
        )
    running = [s for s in states if s.state == planner.RUNNING]
    if running:
        results.append(
            warned(
                "history.running",
                "; ".join(planner.describe_problem(s) for s in running)
                + " (the schema is changing under this validation: validate again when it "
                "has finished)",
                [_state(s) for s in running],
            )
        )
    return results


def _order(states: list[MigrationState], records: list[history.Record]) -> CheckResult:
    problems = []
    newest = None
    for record in sorted(records, key=lambda r: r.applied_at):
        if record.status != history.APPLIED:
            continue
        if newest is not None and record.version < newest:
            problems.append(f"{record.version} {record.name} was applied after {newest}")
        newest = record.version if newest is None or record.version > newest else newest
    late = [s for s in states if s.out_of_order]
    problems += [f"{s.label} is pending but newer versions are applied" for s in late]
    if problems:
        return warned(
            "history.order",
            "versions out of order: "
            + "; ".join(problems)
            + " (databases built from scratch apply them in version order, so their schema "
            "may differ from this one; `tbmigrate run --out-of-order` applies a late one)",
            problems,
        )
    pending = sum(1 for s in states if s.state == planner.PENDING)
    note = f"; {pending} pending (`tbmigrate run`)" if pending else ""
    return passed("history.order", f"applied in version order{note}")


def _state(s: MigrationState) -> dict[str, Any]:
    found: dict[str, Any] = {
        "version": str(s.version),
        "name": s.name,
        "state": str(s.state),
        "file": str(s.script.path) if s.script else None,
    }
    if s.record is not None and s.record.in_progress:
        found.update(
            direction=s.record.direction,
            started_at=s.record.started_at.isoformat() if s.record.started_at else None,
            by=s.record.applied_by,
            host=s.record.host,
            pid=s.record.pid,
            progress=s.record.progress,
        )
    return found


# -- drift -----------------------------------------------------------------------------
def drift(
    alias: str, states: list[MigrationState], live: Callable[[], Schema]
) -> list[CheckResult]:
    """Replay the applied scripts on a scratch database and compare it with the live one
    (``live`` reads it)."""
    applied = [s for s in states if s.is_applied and s.record is not None]
    applied.sort(key=lambda s: (s.record.applied_at, s.version))  # type: ignore[union-attr]
    to_replay = [s.script for s in applied if s.script is not None]
    skipped = [s.label for s in applied if s.script is None]
    try:
        with scratch_database(alias) as scratch:
            where = targets.describe(scratch)
            replayed = replay(scratch, to_replay)
    except DatabaseUnavailable as exc:
        return [warned("drift", f"not checked: {exc}")]
    except MigrationFailed as exc:
        return [
            failed(
                "drift",
                f"not checked: replaying the applied scripts on an empty database failed: {exc}. "
                "A new database cannot be built from these scripts; fix the script",
            )
        ]
    expected = replayed.expected
    differences = compare(expected, live())
    details: dict[str, Any] = {
        "scratch": where,
        "replayed": [s.label for s in to_replay],
        "not_replayed": skipped,
        "catalog_reads": replayed.reads,
    }
    note = f" ({', '.join(skipped)} not replayed: file missing)" if skipped else ""
    if not differences:
        return [
            passed(
                "drift",
                f"the live schema matches the {len(to_replay)} applied script(s) replayed on a "
                f"scratch database: {size(expected)}{note}",
                details,
            )
        ]
    return [
        failed(
            "drift",
            d.describe(replayed.origins.get(d.key)),
            {**d.as_dict(), "origin": replayed.origins.get(d.key)},
        )
        for d in differences
    ]


_SIZES = (
    ("table", "tables"),
    ("column", "columns"),
    ("index", "indexes"),
    ("unique constraint", "unique constraints"),
    ("foreign key", "foreign keys"),
    ("check", "checks"),
    ("view", "views"),
    ("trigger", "triggers"),
    ("function", "functions"),
    ("procedure", "procedures"),
    ("sequence", "sequences"),
    ("enum", "enums"),
    ("domain", "domains"),
    ("exclusion constraint", "exclusion constraints"),
    ("extension", "extensions"),
)
_ALWAYS = {"table", "column", "index", "unique constraint", "foreign key"}


def size(schema: Schema) -> str:
    """``"6 tables, 30 columns, 5 indexes, 1 unique constraints, 6 foreign keys, 2 checks"``."""
    counts = {kind: 0 for kind, _ in _SIZES}
    for key in schema.objects:
        if key[0] in counts:
            counts[key[0]] += 1
    return ", ".join(
        f"{counts[kind]} {label}" for kind, label in _SIZES if kind in _ALWAYS or counts[kind]
    )


# -- integrity -------------------------------------------------------------------------
def integrity(alias: str, live: Any) -> list[CheckResult]:
    """Each integrity check on its own, so that a damaged table does not hide the others.

    ``live`` returns the live schema (read once, shared with drift).
    """
    connection = connections[alias]
    checks: list[tuple[str, Callable[[], CheckResult | list[CheckResult]]]] = [
        ("integrity.orphans", lambda: orphans(connection, live()))
    ]
    if connection.vendor == "sqlite":
        checks.insert(0, ("integrity.sqlite", lambda: _sqlite_integrity(connection)))
        checks.append(("integrity.foreign_key_check", lambda: _foreign_key_check(connection)))
    else:
        checks += [
            ("integrity.indexes", lambda: _invalid_indexes(connection)),
            ("integrity.constraints", lambda: _not_valid_constraints(connection)),
            ("integrity.sequences", lambda: sequences_behind(connection)),
        ]
    return [result for name, check in checks for result in common.guarded(name, check)]


def _foreign_keys(schema: Schema) -> list[dict[str, Any]]:
    """Every foreign key of ``schema`` with its parent's columns resolved."""
    found = []
    ignored = ignored_tables()
    for key in sorted(k for k in schema.objects if k[0] == "foreign key"):
        _kind, table, columns, ref = key
        ref_table, _, ref_columns = ref.partition(".")
        parent_columns = ref_columns.split(",") if ref_columns else []
        if not parent_columns:  # SQLite: REFERENCES parent, i.e. its primary key
            parent_columns = schema.objects.get(("primary key", ref_table), {}).get("columns", [])
        parent_exists = ref_table in schema.tables or ref_table in ignored
        found.append(
            {
                "table": table,
                "columns": columns.split(","),
                "parent": ref_table,
                "parent_columns": parent_columns if parent_exists else [],
                "parent_exists": parent_exists,
                "label": f"{table} ({columns}) -> {ref}",
            }
        )
    return found


def orphans(connection: Any, schema: Schema) -> CheckResult:
    """Rows whose foreign key points at nothing, for every foreign key, composite ones too.

    Counted with a plain anti-join over all the key's columns (a row with any of them
    NULL points at nothing, as ``MATCH SIMPLE`` has it), rather than trusting the
    database, because neither SQLite with ``foreign_keys = OFF`` nor a PostgreSQL
    ``NOT VALID`` constraint (nor ``session_replication_role = replica``) guarantees
    there are none.  A key whose parent table does not exist (SQLite allows it) has
    every such row orphaned.  All keys are counted in a few ``UNION ALL`` queries.
    """
    q = connection.ops.quote_name
    keys = [
        fk for fk in _foreign_keys(schema) if fk["parent_exists"] or connection.vendor == "sqlite"
    ]
    skipped = [
        fk["label"]
        for fk in keys
        if fk["parent_exists"] and len(fk["parent_columns"]) != len(fk["columns"])
    ]
    keys = [fk for fk in keys if fk["label"] not in skipped]

    def condition(fk: dict[str, Any]) -> str:
        present = " AND ".join(f"c.{q(col)} IS NOT NULL" for col in fk["columns"])
        if not fk["parent_exists"]:
            return present
        match = " AND ".join(
            f"p.{q(pcol)} = c.{q(col)}"
            for col, pcol in zip(fk["columns"], fk["parent_columns"], strict=True)
        )
        return f"{present} AND NOT EXISTS (SELECT 1 FROM {q(fk['parent'])} p WHERE {match})"

    counts = _count_all(
        connection,
        [f"SELECT COUNT(*) FROM {q(fk['table'])} c WHERE {condition(fk)}" for fk in keys],
    )
    found = []
    for fk, count in zip(keys, counts, strict=True):
        if not count:
            continue
        pk = _pk(schema, fk["table"])
        cols = ", ".join(f"c.{q(col)}" for col in fk["columns"])
        select = f"c.{q(pk)}, {cols}" if pk else f"NULL, {cols}"
        order = f" ORDER BY c.{q(pk)}" if pk else ""
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {select} FROM {q(fk['table'])} c WHERE {condition(fk)}{order} "
                f"LIMIT {SAMPLES}"
            )
            rows = cursor.fetchall()
        column = ",".join(fk["columns"])
        samples = [
            {"row": row[0], column: row[1] if len(row) == 2 else list(row[1:])} for row in rows
        ]
        found.append(
            {
                "table": fk["table"],
                "column": column,
                "references": f"{fk['parent']}.{','.join(fk['parent_columns'])}",
                "parent_exists": fk["parent_exists"],
                "orphans": count,
                "samples": samples,
                "primary_key": pk,
            }
        )
    details: dict[str, Any] = {"foreign_keys_checked": len(keys), "orphans": found}
    if skipped:
        details["not_checked"] = skipped
    if not found:
        return passed(
            "integrity.orphans",
            f"{len(keys)} foreign key(s) checked, no orphaned rows",
            details,
        )
    total = sum(item["orphans"] for item in found)
    return failed(
        "integrity.orphans",
        f"{total} orphaned row(s): "
        + "; ".join(_orphan_phrase(item) for item in found)
        + " (restore the missing parents or delete/repoint the orphans, then validate again)",
        details,
    )


def _orphan_phrase(item: dict[str, Any]) -> str:
    columns = item["column"].split(",")
    parent, _, parent_columns = item["references"].partition(".")
    if len(columns) == 1:
        child = f"{item['table']}.{columns[0]}"
        target = f"{parent}.{parent_columns}" if parent_columns else parent
    else:
        child = f"{item['table']} ({', '.join(columns)})"
        target = f"{parent} ({parent_columns.replace(',', ', ')})"
    if not item["parent_exists"]:
        target = f"{parent} (which does not exist)"

    def shown(value: Any) -> str:
        return "(" + ", ".join(map(str, value)) + ")" if isinstance(value, list) else str(value)

    keys = ", ".join(shown(s[item["column"]]) for s in item["samples"])
    rows = ", ".join(str(s["row"]) for s in item["samples"] if s["row"] is not None)
    where = f" in rows {item['primary_key']} = {rows}" if rows else ""
    label = columns[0] if len(columns) == 1 else "(" + ", ".join(columns) + ")"
    return f"{item['orphans']} row(s) of {child} point at no {target} (e.g. {label} {keys}{where})"


def _count_all(connection: Any, queries: list[str]) -> list[Any]:
    """The single value each query returns, a few round trips for all of them."""
    counts: list[Any] = []
    for start in range(0, len(queries), _CHUNK):
        chunk = queries[start : start + _CHUNK]
        sql = " UNION ALL ".join(f"SELECT {i}, ({query})" for i, query in enumerate(chunk))
        with connection.cursor() as cursor:
            cursor.execute(sql)
            by_index = {int(i): n for i, n in cursor.fetchall()}
        counts.extend(by_index[i] for i in range(len(chunk)))
    return counts


def _pk(schema: Schema, table: str) -> str | None:
    columns = schema.objects.get(("primary key", table), {}).get("columns", [])
    return columns[0] if len(columns) == 1 else None


_CONSTRAINT_LINES = ("check constraint failed", "null value in", "non-unique entry in index")


def _sqlite_integrity(connection: Any) -> CheckResult:
    try:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA integrity_check")
            lines = [str(row[0]) for row in cursor.fetchall()]
    except DatabaseError as exc:
        if "malformed" not in str(exc).lower():
            raise
        lines = [str(exc)]
    details = {"integrity_check": lines[:50]}
    if lines == ["ok"]:
        return passed("integrity.sqlite", "PRAGMA integrity_check: ok", details)
    broken = [line for line in lines if line.lower().startswith(_CONSTRAINT_LINES)]
    damage = [line for line in lines if line not in broken]
    if damage:
        return failed(
            "integrity.sqlite",
            f"PRAGMA integrity_check found {len(lines)} problem(s), first: {damage[0]} "
            "(the file is damaged: REINDEX mends a damaged index; otherwise restore a backup, or "
            "rebuild the file with `.recover` in the sqlite3 shell)",
            details,
        )
    return failed(
        "integrity.sqlite",
        f"PRAGMA integrity_check found {len(broken)} row(s) breaking a constraint: "
        + "; ".join(broken[:SAMPLES])
        + " (written while the constraint was not enforced, e.g. with PRAGMA "
        "ignore_check_constraints: find them with SELECT ... WHERE NOT (<the check>), then fix or "
        "delete them)",
        details,
    )


def _foreign_key_check(connection: Any) -> CheckResult:
    """``PRAGMA foreign_key_check``: SQLite's own list of rows pointing at nothing."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA foreign_key_check")
        rows = cursor.fetchall()
    skip = ignored_tables()
    groups: dict[tuple[str, str], list[Any]] = {}
    for table, rowid, parent, _fk in rows:
        if table in skip:
            continue
        groups.setdefault((table, parent), []).append(rowid)
    if not groups:
        return passed("integrity.foreign_key_check", "PRAGMA foreign_key_check: no rows")
    total = sum(len(ids) for ids in groups.values())
    phrases = [
        f"{len(ids)} row(s) of {table} point at missing rows of {parent} (rowid "
        + ", ".join(str(i) for i in ids[:SAMPLES])
        + (", ..." if len(ids) > SAMPLES else "")
        + ")"
        for (table, parent), ids in sorted(groups.items())
    ]
    return failed(
        "integrity.foreign_key_check",
        f"PRAGMA foreign_key_check: {total} row(s): "
        + "; ".join(phrases)
        + " (restore the missing parents or delete/repoint the rows)",
        [
            {"table": table, "parent": parent, "rows": len(ids), "rowids": ids[:50]}
            for (table, parent), ids in sorted(groups.items())
        ],
    )


def _invalid_indexes(connection: Any) -> CheckResult:
    rows = _fetch(
        connection,
        "SELECT ci.relname, ct.relname FROM pg_index i "
        "JOIN pg_class ci ON ci.oid = i.indexrelid JOIN pg_class ct ON ct.oid = i.indrelid "
        "JOIN pg_namespace n ON n.oid = ci.relnamespace "
        "WHERE NOT i.indisvalid AND n.nspname = current_schema() ORDER BY 1",
    )
    if not rows:
        return passed("integrity.indexes", "no invalid index")
    names = ", ".join(f"{index} on {table}" for index, table in rows)
    return failed(
        "integrity.indexes",
        f"{len(rows)} invalid index(es): {names} (left by a failed CREATE INDEX CONCURRENTLY; "
        "they slow writes and serve no reads: DROP INDEX CONCURRENTLY it, then create it again)",
        [{"index": index, "table": table} for index, table in rows],
    )


def _not_valid_constraints(connection: Any) -> list[CheckResult]:
    """NOT VALID constraints: a FAIL for a CHECK that rows break, a WARN for the others.

    (Rows behind a NOT VALID foreign key are counted by ``integrity.orphans``.)
    """
    rows = _fetch(
        connection,
        "SELECT c.conrelid::regclass::text, c.conname, c.contype, "
        "pg_get_expr(c.conbin, c.conrelid) FROM pg_constraint c "
        "JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE NOT c.convalidated AND c.conrelid <> 0 AND n.nspname = current_schema() "
        "ORDER BY 1, 2",
    )
    if not rows:
        return [passed("integrity.constraints", "every constraint is validated")]
    checks = [(table, name, expr) for table, name, kind, expr in rows if kind == "c" and expr]
    counts = _count_all(
        connection,
        [f"SELECT COUNT(*) FROM {table} WHERE NOT ({expr})" for table, _, expr in checks],
    )
    breaking = [
        (table, name, expr, count)
        for (table, name, expr), count in zip(checks, counts, strict=True)
        if count
    ]
    results = []
    if breaking:
        results.append(
            failed(
                "integrity.constraints",
                f"{sum(b[3] for b in breaking)} row(s) break a NOT VALID CHECK: "
                + "; ".join(
                    f"{count} row(s) of {table} break {name} (CHECK ({expr}))"
                    for table, name, expr, count in breaking
                )
                + " (fix or delete them: SELECT * FROM <table> WHERE NOT (<check>); then ALTER "
                "TABLE ... VALIDATE CONSTRAINT)",
                [
                    {"table": table, "constraint": name, "check": expr, "rows": count}
                    for table, name, expr, count in breaking
                ],
            )
        )
    named = {(b[0], b[1]) for b in breaking}
    others = [(table, name, kind) for table, name, kind, _ in rows if (table, name) not in named]
    if others:
        names = ", ".join(f"{name} on {table}" for table, name, _ in others)
        results.append(
            warned(
                "integrity.constraints",
                f"{len(others)} NOT VALID constraint(s): {names} (rows older than the constraint "
                "are not checked; fix any orphans reported above, then ALTER TABLE ... VALIDATE "
                "CONSTRAINT)",
                [
                    {"table": table, "constraint": name, "type": kind}
                    for table, name, kind in others
                ],
            )
        )
    return results


def sequences_behind(connection: Any) -> CheckResult:
    """A sequence (serial or identity) whose next value is already taken in its column.

    After a restore, a bulk load with explicit ids or a hand ``setval``, the sequence
    may be below ``max(column)``: the next insert then fails on the primary key.
    """
    rows = _fetch(
        connection,
        "SELECT s.sequencename, t.relname, a.attname, s.last_value, s.start_value, "
        "s.increment_by, d.deptype = 'i' FROM pg_sequences s "
        "JOIN pg_class sc ON sc.relname = s.sequencename AND sc.relkind = 'S' "
        "JOIN pg_namespace n ON n.oid = sc.relnamespace AND n.nspname = s.schemaname "
        "JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = sc.oid "
        "AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "
        "JOIN pg_class t ON t.oid = d.refobjid "
        "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid "
        "JOIN pg_type ty ON ty.oid = a.atttypid AND ty.typname IN ('int2', 'int4', 'int8') "
        "WHERE s.schemaname = current_schema() ORDER BY 1",
    )
    skip = ignored_tables()
    rows = [r for r in rows if r[1] not in skip]
    if not rows:
        return passed("integrity.sequences", "no sequence owned by a column")
    q = connection.ops.quote_name
    extremes = _count_all(
        connection,
        [
            f"SELECT {'MAX' if inc > 0 else 'MIN'}({q(column)}) FROM {q(table)}"
            for _seq, table, column, _last, _start, inc, _identity in rows
        ],
    )
    behind = []
    for (seq, table, column, last, start, inc, identity), extreme in zip(
        rows, extremes, strict=True
    ):
        if extreme is None:
            continue
        following = start if last is None else last + inc
        if (inc > 0 and following <= extreme) or (inc < 0 and following >= extreme):
            behind.append((seq, table, column, following, extreme, identity, inc))
    if not behind:
        return passed(
            "integrity.sequences", f"{len(rows)} sequence(s) ahead of the values in their column"
        )
    phrases = []
    for seq, table, column, following, extreme, identity, inc in behind:
        target = extreme + (1 if inc > 0 else -1)
        fix = (
            f"ALTER TABLE {q(table)} ALTER COLUMN {q(column)} RESTART WITH {target}"
            if identity
            else f"SELECT setval('{seq}', {extreme})"
        )
        phrases.append(
            f"{'identity ' if identity else ''}sequence {seq} of {table}.{column} would give "
            f"{following} next, but {table}.{column} already holds {extreme} (the next insert "
            f"collides: {fix})"
        )
    return failed(
        "integrity.sequences",
        f"{len(behind)} sequence(s) behind their column: " + "; ".join(phrases),
        [
            {
                "sequence": seq,
                "table": table,
                "column": column,
                "next_value": following,
                "column_max": extreme,
                "identity": identity,
            }
            for seq, table, column, following, extreme, identity, _ in behind
        ],
    )


def _fetch(connection: Any, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
