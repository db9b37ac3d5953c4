"""``validate schema``: does the live database look like its applied scripts say it should?

Three families of checks:

- **history**: the applied rows against the files (edited, missing, failed, out of order);
- **drift**: the expected schema is *derived* by replaying the applied scripts on a
  scratch database of the same vendor, then compared object by object with the live
  one (Django introspection on both sides, so the comparison is like for like);
- **integrity**: orphaned rows behind every foreign key, counted even where the
  database does not enforce the key (SQLite with foreign keys off, PostgreSQL
  ``NOT VALID`` constraints), SQLite's ``integrity_check``, PostgreSQL's invalid indexes
  (left by a failed ``CREATE INDEX CONCURRENTLY``) and unvalidated constraints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import DatabaseError, connections

from migrator import history, planner, targets
from migrator.errors import DatabaseUnavailable, MigrationFailed
from migrator.planner import MigrationState
from migrator.validation import common
from migrator.validation.base import CheckResult, Report, failed, passed, warned
from migrator.validation.introspect import Schema, compare, introspect, origins
from migrator.validation.scratch import replay, scratch_database

SAMPLES = 5


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
    with common.bounded_lock_waits(alias):
        report.add(common.guarded("drift", lambda: drift(alias, states)))
        report.add(integrity(alias))
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
    stopped = [s for s in states if s.state == planner.INTERRUPTED]
    if stopped:
        results.append(
            failed(
                "history.interrupted",
                f"{len(stopped)} non-atomic migration(s) started and never finished: "
                + "; ".join(planner.describe_problem(s) for s in stopped)
                + f" ({planner.INTERRUPTED.fix})",
                [_state(s) for s in stopped],
            )
        )
    results.append(_order(states, records))
    return results


def _order(states: list[MigrationState], records: list[history.Record]) -> CheckResult:
    problems = []
    newest = None
    for record in sorted(records, key=lambda r: r.applied_at):
        if record.status == history.FAILED:
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
    return {
        "version": str(s.version),
        "name": s.name,
        "state": s.state,
        "file": str(s.script.path) if s.script else None,
    }


# -- drift -----------------------------------------------------------------------------
def drift(alias: str, states: list[MigrationState]) -> list[CheckResult]:
    """Replay the applied scripts on a scratch database and compare it with the live one."""
    applied = [s for s in states if s.is_applied and s.record is not None]
    applied.sort(key=lambda s: (s.record.applied_at, s.version))  # type: ignore[union-attr]
    to_replay = [s.script for s in applied if s.script is not None]
    skipped = [s.label for s in applied if s.script is None]
    live = introspect(connections[alias])
    try:
        with scratch_database(alias) as scratch:
            where = targets.describe(scratch)
            snapshots = replay(scratch, to_replay)
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
    expected = snapshots[-1][1]
    where_from = origins(snapshots)
    differences = compare(expected, live)
    details: dict[str, Any] = {
        "scratch": where,
        "replayed": [s.label for s in to_replay],
        "not_replayed": skipped,
    }
    note = f" ({', '.join(skipped)} not replayed: file missing)" if skipped else ""
    if not differences:
        return [
            passed(
                "drift",
                f"the live schema matches the {len(to_replay)} applied script(s) replayed on a "
                f"scratch database: {_size(expected)}{note}",
                details,
            )
        ]
    return [
        failed(
            "drift",
            d.describe(where_from.get(d.key)),
            {**d.as_dict(), "origin": where_from.get(d.key)},
        )
        for d in differences
    ]


def _size(schema: Schema) -> str:
    kinds = [key[0] for key in schema.objects]
    parts = [
        f"{kinds.count(kind)} {label}"
        for kind, label in (
            ("table", "tables"),
            ("column", "columns"),
            ("index", "indexes"),
            ("unique constraint", "unique constraints"),
            ("foreign key", "foreign keys"),
        )
    ]
    return ", ".join(parts)


# -- integrity -------------------------------------------------------------------------
def integrity(alias: str) -> list[CheckResult]:
    """Each integrity check on its own, so that a damaged table does not hide the others."""
    connection = connections[alias]
    checks = [("integrity.orphans", lambda: orphans(connection, introspect(connection)))]
    if connection.vendor == "sqlite":
        checks.insert(0, ("integrity.sqlite", lambda: _sqlite_integrity(connection)))
    else:
        checks += [
            ("integrity.indexes", lambda: _invalid_indexes(connection)),
            ("integrity.constraints", lambda: _not_valid_constraints(connection)),
        ]
    return [result for name, check in checks for result in common.guarded(name, check)]


def orphans(connection: Any, schema: Schema) -> CheckResult:
    """Rows whose foreign key points at nothing, for every single-column foreign key.

    Counted with a plain anti-join rather than trusting the database, because neither
    SQLite with ``foreign_keys = OFF`` nor a PostgreSQL ``NOT VALID`` constraint (nor
    ``session_replication_role = replica``) guarantees there are none.
    """
    q = connection.ops.quote_name
    found, checked, skipped = [], 0, []
    for key in sorted(k for k in schema.objects if k[0] == "foreign key"):
        _kind, table, columns, ref = key
        ref_table, _, ref_column = ref.partition(".")
        if "," in columns or ref_table not in schema.tables:
            skipped.append(f"{table} ({columns}) -> {ref}")
            continue
        checked += 1
        pk = _pk(schema, table)
        condition = (
            f"c.{q(columns)} IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM {q(ref_table)} p WHERE p.{q(ref_column)} = c.{q(columns)})"
        )
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {q(table)} c WHERE {condition}")
            count = int(cursor.fetchone()[0])
            if not count:
                continue
            select = f"c.{q(pk)}, c.{q(columns)}" if pk else f"NULL, c.{q(columns)}"
            order = f" ORDER BY c.{q(pk)}" if pk else ""
            cursor.execute(
                f"SELECT {select} FROM {q(table)} c WHERE {condition}{order} LIMIT {SAMPLES}"
            )
            samples = [{"row": row[0], columns: row[1]} for row in cursor.fetchall()]
        found.append(
            {
                "table": table,
                "column": columns,
                "references": ref,
                "orphans": count,
                "samples": samples,
                "primary_key": pk,
            }
        )
    details: dict[str, Any] = {"foreign_keys_checked": checked, "orphans": found}
    if skipped:
        details["not_checked"] = skipped
    if not found:
        return passed(
            "integrity.orphans",
            f"{checked} foreign key(s) checked, no orphaned rows",
            details,
        )
    phrases = []
    for item in found:
        keys = ", ".join(str(s[item["column"]]) for s in item["samples"])
        rows = ", ".join(str(s["row"]) for s in item["samples"] if s["row"] is not None)
        where = f" in rows {item['primary_key']} = {rows}" if rows else ""
        phrases.append(
            f"{item['orphans']} row(s) of {item['table']}.{item['column']} point at no "
            f"{item['references']} (e.g. {item['column']} {keys}{where})"
        )
    total = sum(item["orphans"] for item in found)
    return failed(
        "integrity.orphans",
        f"{total} orphaned row(s): "
        + "; ".join(phrases)
        + " (restore the missing parents or delete/repoint the orphans, then validate again)",
        details,
    )


def _pk(schema: Schema, table: str) -> str | None:
    columns = schema.objects.get(("primary key", table), {}).get("columns", [])
    return columns[0] if len(columns) == 1 else None


def _sqlite_integrity(connection: Any) -> CheckResult:
    try:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA integrity_check")
            lines = [str(row[0]) for row in cursor.fetchall()]
            cursor.execute("PRAGMA foreign_key_check")
            dangling = len(cursor.fetchall())
    except DatabaseError as exc:
        if "malformed" not in str(exc).lower():
            raise
        lines, dangling = [str(exc)], -1
    details = {"integrity_check": lines[:50], "foreign_key_check": dangling}
    if lines == ["ok"]:
        return passed(
            "integrity.sqlite",
            f"PRAGMA integrity_check: ok; PRAGMA foreign_key_check: {dangling} row(s)",
            details,
        )
    return failed(
        "integrity.sqlite",
        f"PRAGMA integrity_check found {len(lines)} problem(s), first: {lines[0]} "
        "(the file is damaged: REINDEX mends a damaged index; otherwise restore a backup, or "
        "rebuild the file with `.recover` in the sqlite3 shell)",
        details,
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


def _not_valid_constraints(connection: Any) -> CheckResult:
    rows = _fetch(
        connection,
        "SELECT c.conrelid::regclass::text, c.conname, c.contype FROM pg_constraint c "
        "JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE NOT c.convalidated AND n.nspname = current_schema() ORDER BY 1, 2",
    )
    if not rows:
        return passed("integrity.constraints", "every constraint is validated")
    names = ", ".join(f"{name} on {table}" for table, name, _ in rows)
    return warned(
        "integrity.constraints",
        f"{len(rows)} NOT VALID constraint(s): {names} (rows older than the constraint are "
        "not checked; fix any orphans reported above, then ALTER TABLE ... VALIDATE CONSTRAINT)",
        [{"table": table, "constraint": name, "type": kind} for table, name, kind in rows],
    )


def _fetch(connection: Any, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
