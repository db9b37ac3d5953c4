"""``validate rollback VERSION``, and the same checks run by ``rollback`` before it reverts.

A rollback is the dangerous direction: a ``down`` that drops a table of fills loses
money quietly.  So before anything is reverted:

- every step is applied, has a ``down`` and an unchanged file (as ``rollback`` demands);
- **data-loss preview**: the ``down``s run newest first in one transaction that is
  always rolled back; the schema before and after is compared, and every table that
  would go is counted (rows), every column (non-null values), and every surviving
  table the ``down``s touched is counted before and after (rows deleted).  Any loss
  is a FAIL;
- **guards** (``ROLLBACK_GUARDS``) may veto, e.g. while trading sessions are active.

``before_rollback`` wraps the data-loss preview and the guards as the ``preflight`` of
``MigrationSystem.rollback``: it runs under the migration lock with the planned steps,
and refuses unless ``force``; a forced rollback's audit event records the failures.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import connections
from django.utils.module_loading import import_string

from migrator import conf, history, planner, targets
from migrator.database import Database
from migrator.errors import RollbackRefused, UsageError
from migrator.planner import MigrationState
from migrator.validation import common
from migrator.validation.base import FAIL, CheckResult, Report, failed, passed, warned
from migrator.validation.dryrun import dry_run
from migrator.validation.preflight import parse_version, sqlite_write_lock

Preflight = Callable[[list[MigrationState]], dict[str, Any]]
# A down that raises in the preview: `validate rollback` fails on it, while `rollback`
# lets the real step fail, so that its audit event carries the error and traceback.
DOWN_FAILS = "dry_run"


def validate_rollback(alias: str, scripts_dir: Path, version_text: str) -> Report:
    version = parse_version(version_text, "validate rollback")
    report = Report("rollback", targets.describe(alias), targets.vendor(alias), str(version))
    reached = common.connectivity(alias)
    loaded = common.load_each(scripts_dir)
    records = history.load(alias) if reached.level != FAIL else []
    states = planner.states(loaded.scripts, records)
    if not any(s.version == version for s in states):
        known = ", ".join(str(s.version) for s in states[-5:]) or "none"
        raise UsageError(
            f"validate rollback: there is no migration {version} (newest known: {known}); "
            "see `tbmigrate status`"
        )
    report.add(reached)
    if not report.ok:
        return report
    if loaded.problems:
        report.add(common.scripts_check(loaded))
    target = next(s for s in states if s.version == version)
    if not target.is_applied:
        report.add(
            failed(
                "target",
                f"{target.label} is not applied ({target.state}), so there is nothing to roll "
                "back (see `tbmigrate status`)",
            )
        )
        return report
    steps = sorted(
        (s for s in states if s.is_applied and s.version >= version),
        key=lambda s: s.version,
        reverse=True,
    )
    report.add(
        passed(
            "target",
            f"{target.label} is applied; rolling it back reverts {len(steps)} migration(s), "
            f"newest first: {common.labels(steps)}",
            [s.label for s in steps],
        )
    )
    report.add(_reversible(steps))
    report.add(_unchanged(states, steps))
    report.add(rollback_checks(alias, steps))
    return report


def _reversible(steps: list[MigrationState]) -> CheckResult:
    one_way = [s for s in steps if s.script is not None and s.script.down is None]
    if one_way:
        return failed(
            "reversible",
            f"{common.labels(one_way)} has no down(), so rollback refuses (write a down(), or "
            "roll back to a later version)",
            [s.label for s in one_way],
        )
    return passed("reversible", f"every one of the {len(steps)} step(s) has a down()")


def _unchanged(states: list[MigrationState], steps: list[MigrationState]) -> CheckResult:
    problems = planner.problems(states)
    if problems:
        return failed(
            "unchanged",
            "rollback refuses while the history disagrees with the files: "
            + "; ".join(problems)
            + " (restore the files, or `tbmigrate repair`)",
            problems,
        )
    return passed(
        "unchanged", f"the script files of the {len(steps)} step(s) are unchanged since they ran"
    )


def rollback_checks(alias: str, steps: list[MigrationState]) -> list[CheckResult]:
    """The data-loss preview and the guards, for steps planned newest first."""
    with common.bounded_lock_waits(alias):
        return [
            *common.guarded("data_loss", lambda: data_loss(alias, steps)),
            *guards(alias, steps),
        ]


# -- data-loss preview -----------------------------------------------------------------
SHOWN_DROPS = 20  # objects a passing preview names in its one line; the details hold all


def data_loss(alias: str, steps: list[MigrationState]) -> list[CheckResult]:
    runnable: list[MigrationState] = []
    stop_reason = ""
    blocked: MigrationState | None = None
    for s in steps:
        if s.script is None:
            stop_reason = "its script file is missing"
        elif s.script.down is None:
            stop_reason = "it has no down()"
        elif not s.script.atomic:
            stop_reason = "it has atomic = False, so its down cannot be tried and rolled back"
        if stop_reason:
            blocked = s
            break
        runnable.append(s)
    if not runnable:
        assert blocked is not None
        return [warned("data_loss", f"not previewed: {blocked.label}: {stop_reason}")]
    write_lock = sqlite_write_lock(alias)
    if write_lock is not None and write_lock.level == FAIL:
        return [write_lock, warned("data_loss", "not previewed: the database is locked")]
    run = dry_run(
        alias,
        [(s.label, s.script.down) for s in runnable],  # type: ignore[union-attr, misc]
        inspect=_row_counts,
        columns_only=True,
        track=True,
    )
    if run.lock_timeout:
        return [
            failed(
                "locks",
                f"down of {run.failed_step} waited more than "
                f"{conf.get('PREFLIGHT_LOCK_TIMEOUT'):g} s for a lock ({run.error}): another "
                "session holds a table it needs, and the rollback would wait there while traffic "
                "queues behind it; finish or end that session first",
                {"statements": run.statements, "error": run.error},
            )
        ]
    if not run.ok:
        return [
            failed(
                DOWN_FAILS,
                f"down of {run.failed_step} fails: {run.error} (tried and rolled back: nothing "
                "changed); the rollback would stop there, so the data loss was not previewed",
                {"statements": run.statements, "error": run.error},
            )
        ]
    assert run.before is not None and run.after is not None
    connection = connections[alias]
    lost: list[dict[str, Any]] = []
    dropped_tables = sorted(run.before.tables - run.after.tables)
    for table in dropped_tables:
        lost.append(
            {"table": table, "rows": _count(connection, table), "by": run.dropped_by(table)}
        )
    dropped_columns = [
        (table, column)
        for table in sorted(run.before.tables & run.after.tables)
        for column in run.before.columns(table)
        if column not in run.after.columns(table)
    ]
    for table, column in dropped_columns:
        default = run.before.objects[("column", table, column)].get("default")
        values = _count(connection, table, column)
        own = _not_default(connection, table, column, default) if values else 0
        lost.append(
            {
                "table": table,
                "column": column,
                "values": values,
                "not_default": own,
                "default": default,
                "by": run.dropped_by(table, column),
            }
        )
    for table, rows_after in sorted((run.inspected or {}).items()):
        rows_now = _count(connection, table)
        if rows_now > rows_after:
            lost.append(
                {
                    "table": table,
                    "deleted_rows": rows_now - rows_after,
                    "rows": rows_now,
                    "by": None,
                }
            )
    labels = common.labels(runnable)
    details = {
        "steps": [s.label for s in runnable],
        "dropped_tables": dropped_tables,
        "dropped_columns": [f"{t}.{c}" for t, c in dropped_columns],
        "losses": lost,
        "statement_count": run.statement_count,
        "statements": run.statements,
    }
    results = []
    for item in lost:
        if "column" in item and item["not_default"]:
            text = (
                f"column {item['table']}.{item['column']} would be dropped with its "
                f"{item['values']} non-null value(s)"
            )
            if item["not_default"] != item["values"]:
                text += f" ({item['not_default']} differ from its default {item['default']})"
        elif "deleted_rows" in item:
            text = (
                f"{item['deleted_rows']} of the {item['rows']} row(s) of {item['table']} would "
                "be deleted"
            )
        elif "column" not in item and item["rows"]:
            text = f"table {item['table']} would be dropped with its {item['rows']} row(s)"
        else:
            continue
        results.append(
            failed(
                "data_loss",
                f"{text} (by {item['by'] or labels}); back the data up or move it first, or roll "
                "back anyway with --force",
                item,
            )
        )
    if not results:
        dropped = [f"table {t}" for t in dropped_tables] + [
            f"column {item['table']}.{item['column']}"
            + (
                f" ({item['values']} value(s), all its default {item['default']}, which up "
                "restores)"
                if item["values"]
                else ""
            )
            for item in lost
            if "column" in item
        ]
        shown = dropped[:SHOWN_DROPS]
        if len(dropped) > len(shown):
            shown.append(f"and {len(dropped) - len(shown)} more (all in the audit event)")
        what = ("drops " + ", ".join(shown)) if dropped else "drops nothing"
        results.append(
            passed(
                "data_loss",
                f"rolling back {labels} {what}: no rows lost ({run.statement_count} statement(s) "
                "tried and rolled back)",
                details,
            )
        )
    else:
        results[0] = CheckResult(results[0].name, results[0].level, results[0].message, details)
    if blocked is not None:
        results.append(
            warned(
                "data_loss",
                f"{blocked.label} and anything older were not previewed: {stop_reason}",
            )
        )
    return results


def _row_counts(connection: Any, run: Any) -> dict[str, int]:
    """Inside the transaction: rows left in the surviving tables the downs touched."""
    surviving = set(run.tables) & run.after.tables
    return {table: _count(connection, table) for table in sorted(surviving)}


# A default that is a plain literal ('UTC', 'UTC'::character varying, 0, 1.5, TRUE): safe
# to evaluate in a query (unlike nextval(), which would advance a sequence).
_LITERAL = re.compile(
    r"^\(?\s*('(?:[^']|'')*'|-?\d+(?:\.\d+)?|true|false)\s*\)?"
    r"(?:::[a-z ]+(?:\(\d+(?:,\s*\d+)?\))?)?$",
    re.IGNORECASE,
)


def _not_default(connection: Any, table: str, column: str, default: str | None) -> int:
    """Non-null values of ``column`` other than its literal default (all of them if none).

    A column added with ``DEFAULT 'UTC'`` and never changed holds nothing that its
    ``up`` would not put back, so dropping it loses no data.
    """
    q = connection.ops.quote_name
    if default is None or not _LITERAL.match(default.strip()):
        return _count(connection, table, column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {q(table)} WHERE {q(column)} IS NOT NULL "
            f"AND {q(column)} <> {default.strip()}"
        )
        return int(cursor.fetchone()[0])


def _count(connection: Any, table: str, column: str | None = None) -> int:
    q = connection.ops.quote_name
    what = f"COUNT({q(column)})" if column else "COUNT(*)"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {what} FROM {q(table)}")
        return int(cursor.fetchone()[0])


# -- guards ----------------------------------------------------------------------------
def guards(alias: str, steps: list[MigrationState]) -> list[CheckResult]:
    db = Database(connections[alias])
    results: list[CheckResult] = []
    for path in conf.get("ROLLBACK_GUARDS"):
        name = "guard." + str(path).rsplit(".", 1)[-1]
        try:
            guard = import_string(str(path))
        except ImportError as exc:
            results.append(
                failed(name, f"cannot import {path}: {exc} (fix TBMIGRATE_ROLLBACK_GUARDS)")
            )
            continue
        try:
            found = guard(db, steps)
        except Exception as exc:
            results.append(failed(name, f"{path} raised {exc.__class__.__name__}: {exc}"))
            continue
        if found is None:
            results.append(passed(name, "no objection"))
        elif isinstance(found, CheckResult):
            results.append(found)
        else:
            results.extend(found)
    return results


# -- as the rollback's preflight -------------------------------------------------------
def before_rollback(
    alias: str, *, force: bool = False, on_report: Callable[[Report], None] | None = None
) -> Preflight:
    """A ``preflight`` for ``MigrationSystem.rollback``: validate, refuse unless ``force``.

    Returns the details the rollback's audit event records: the counts, and when
    forced, ``forced: true`` with the failed checks.
    """

    def check(steps: list[MigrationState]) -> dict[str, Any]:
        target = str(min(s.version for s in steps))
        report = Report("rollback", targets.describe(alias), targets.vendor(alias), target)
        report.add(rollback_checks(alias, steps))
        if on_report is not None:
            on_report(report)
        summary: dict[str, Any] = {"validation": {"ok": report.ok, "counts": report.counts}}
        blocking = [r for r in report.failures if r.name != DOWN_FAILS]
        if not blocking:
            return summary
        failures = [r.as_dict() for r in blocking]
        if not force:
            raise RollbackRefused(
                f"rollback refused, {len(blocking)} check(s) failed: "
                + "; ".join(f"{r.name}: {r.message.split('; ')[0]}" for r in blocking)
                + f". Nothing was rolled back (`tbmigrate validate rollback {target}` shows every "
                "check; --force rolls back anyway, and the audit log records it)",
                {"failed_checks": failures},
            )
        return {**summary, "forced": True, "failed_checks": failures}

    return check
