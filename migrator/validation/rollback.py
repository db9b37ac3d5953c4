"""``validate rollback VERSION``, and judging what ``rollback`` would destroy.

A rollback is the dangerous direction: a ``down`` that drops a table of fills loses
money quietly.  What would be lost is *measured* by ``validation/loss.py`` while the
downs run (``revert.py``: in the rollback's own transaction, or on a copy for steps
that cannot run in one); this module *judges* it:

- ``data_loss``: every table that would be dropped with rows, every column with values
  its ``up`` would not put back, every surviving table that would lose rows, and
  anything the preview could not measure, is a FAIL naming it, its count and the step
  responsible; a rename that the ``down`` undoes is not a loss;
- ``guards`` (``ROLLBACK_GUARDS``) may veto, e.g. while trading sessions are active;
- ``refusal``: the rollback refuses on any of those FAILs unless ``--force``, and a
  forced rollback's audit event records them.

``validate rollback`` reads the same ``Plan`` as ``rollback`` (``planner.plan_rollback``)
and runs the same preview, so the two give the same verdict and exit code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.db import connections
from django.utils.module_loading import import_string

from migrator import conf, history, planner, targets
from migrator.database import Database
from migrator.errors import RollbackRefused, UsageError
from migrator.planner import MigrationState, Plan
from migrator.validation import common
from migrator.validation.base import FAIL, CheckResult, Report, failed, passed
from migrator.validation.loss import Loss, Measured

# A down that raises in the preview: `validate rollback` fails on it, while `rollback`
# lets the real step fail, so that its audit event carries the error and traceback.
DOWN_FAILS = "dry_run"
SHOWN_DROPS = 20  # objects a passing preview names in its one line; the details hold all


def validate_rollback(alias: str, scripts_dir: Path, version_text: str) -> Report:
    """The checks ``rollback VERSION`` makes before reverting, without reverting."""
    from migrator import revert

    try:
        version = planner.Version.parse(version_text)
    except ValueError as exc:
        raise UsageError(f"validate rollback: {exc}") from None
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
    plan = planner.plan_rollback(states, version=str(version))
    report.add(plan_checks(plan, states, version))
    if not report.ok:
        return report
    report.add(revert.preview(alias, plan, states).report.results)
    return report


def plan_checks(plan: Plan, states: list[MigrationState], version: Any) -> list[CheckResult]:
    """The plan's own verdict as checks: the target, reversibility, unchanged files."""
    target = next(s for s in states if s.version == version)
    if not target.is_applied:
        return [
            failed(
                "target",
                f"{target.label} is not applied ({target.state}), so there is nothing to roll "
                "back (see `tbmigrate status`)",
            )
        ]
    steps = list(plan.steps)
    results = [
        passed(
            "target",
            f"{target.label} is applied; rolling it back reverts {len(steps)} migration(s), "
            f"newest first: {common.labels(steps)}; the database will then be at "
            f"{plan.target or '0'}",
            [s.label for s in steps],
        )
    ]
    one_way = [s for s in steps if s.script is not None and s.script.down is None]
    if one_way:
        results.append(
            failed(
                "reversible",
                f"{common.labels(one_way)} has no down(), so rollback refuses (write a down(), "
                "or roll back to a later version)",
                [s.label for s in one_way],
            )
        )
    else:
        results.append(passed("reversible", f"every one of the {len(steps)} step(s) has a down()"))
    found = planner.problems(states)
    if found:
        results.append(
            failed(
                "unchanged",
                "rollback refuses while the history disagrees with the files: "
                + "; ".join(found)
                + " (restore the files, or `tbmigrate repair`)",
                found,
            )
        )
    else:
        results.append(
            passed(
                "unchanged",
                f"the script files of the {len(steps)} step(s) are unchanged since they ran",
            )
        )
    return results


# -- judging what the downs destroy ----------------------------------------------------
def data_loss(
    measured: Measured,
    steps: Sequence[MigrationState],
    *,
    statements: list[dict[str, Any]] | None = None,
    statement_count: int = 0,
    how: str = "tried and rolled back",
    unpreviewable: Sequence[str] = (),
) -> list[CheckResult]:
    """The ``data_loss`` checks of a measured rollback: a FAIL per loss, else one PASS."""
    labels = common.labels(steps)
    losses = [_as_detail(loss) for loss in measured.losses]
    details: dict[str, Any] = {
        "steps": [s.label for s in steps],
        "dropped_tables": sorted(measured.dropped_tables),
        "dropped_columns": sorted(measured.dropped_columns),
        "renamed": [r.describe() for r in measured.renames],
        "losses": losses,
        "statement_count": statement_count,
        "statements": statements or [],
    }
    results = [
        failed(
            "data_loss",
            f"{_phrase(loss)} (by {loss.by or labels}); back the data up or move it first, or "
            "roll back anyway with --force",
            details,
        )
        for loss in measured.losses
        if loss.count and loss.kind != "unmeasured"
    ]
    results += [
        failed(
            "data_loss",
            f"{what} was dropped by a statement that does not name it and could not be "
            f"counted (by {loss.by or labels}); the rollback fails closed: back the data up, "
            "or roll back anyway with --force",
            details,
        )
        for loss in measured.unmeasured
        for what in [f"column {loss.table}.{loss.column}" if loss.column else f"table {loss.table}"]
    ]
    results += [
        failed(
            "data_loss",
            f"{why}; the rollback fails closed: back the data up, or roll back anyway with --force",
            details,
        )
        for why in unpreviewable
    ]
    if results:
        return results
    dropped = [f"table {t}" for t in sorted(measured.dropped_tables)]
    for loss in measured.losses:
        if loss.kind == "column":
            dropped.append(
                f"column {loss.table}.{loss.column}"
                + (
                    f" ({loss.values} value(s), all its default {loss.default}, which up restores)"
                    if loss.values
                    else ""
                )
            )
    dropped += [r.describe() + " (no loss)" for r in measured.renames]
    shown = dropped[:SHOWN_DROPS]
    if len(dropped) > len(shown):
        shown.append(f"and {len(dropped) - len(shown)} more (all in the audit event)")
    what = ("drops " + ", ".join(shown)) if dropped else "drops nothing"
    return [
        passed(
            "data_loss",
            f"rolling back {labels} {what}: no rows lost ({statement_count} statement(s) {how})",
            details,
        )
    ]


def _phrase(loss: Loss) -> str:
    if loss.kind == "table":
        return f"table {loss.table} would be dropped with its {loss.count} row(s)"
    if loss.kind == "column":
        text = (
            f"column {loss.table}.{loss.column} would be dropped with its {loss.values} "
            "non-null value(s)"
        )
        if loss.count != loss.values:
            text += f" ({loss.count} differ from its default {loss.default})"
        return text
    return f"{loss.count} of the {loss.total} row(s) of {loss.table} would be deleted"


def _as_detail(loss: Loss) -> dict[str, Any]:
    """A loss as the audit event and ``--json`` have always shown it."""
    if loss.kind == "table":
        return {"table": loss.table, "rows": loss.count, "by": loss.by}
    if loss.kind == "column":
        return {
            "table": loss.table,
            "column": loss.column,
            "values": loss.values,
            "not_default": loss.count,
            "default": loss.default,
            "by": loss.by,
        }
    if loss.kind == "rows":
        return {
            "table": loss.table,
            "deleted_rows": loss.count,
            "rows": loss.total,
            "by": loss.by,
        }
    return {"table": loss.table, "column": loss.column, "unmeasured": True, "by": loss.by}


def down_fails(label: str, error: str, statements: list[dict[str, Any]]) -> CheckResult:
    return failed(
        DOWN_FAILS,
        f"down of {label} fails: {error} (tried and rolled back: nothing changed); the "
        "rollback would stop there, so the data loss was not previewed",
        {"statements": statements, "error": error},
    )


def lock_waited(label: str, error: str, statements: list[dict[str, Any]]) -> CheckResult:
    return failed(
        "locks",
        f"down of {label} waited more than {conf.get('PREFLIGHT_LOCK_TIMEOUT'):g} s for a lock "
        f"({error}): another session holds a table it needs, and the rollback would wait there "
        "while traffic queues behind it; finish or end that session first",
        {"statements": statements, "error": error},
    )


# -- guards ----------------------------------------------------------------------------
def guards(alias: str, steps: Sequence[MigrationState]) -> list[CheckResult]:
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
            found = guard(db, list(steps))
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


# -- the verdict -----------------------------------------------------------------------
def blocking(report: Report) -> list[CheckResult]:
    """The FAILs that refuse a rollback without --force (a failing down is not one: the
    real step fails instead, so that its audit event keeps the error and traceback)."""
    return [r for r in report.failures if r.name != DOWN_FAILS]


def refusal(report: Report, force: bool) -> tuple[RollbackRefused | None, dict[str, Any]]:
    """The refusal of a rollback with this report (None when it may go on), and what its
    audit event records: the counts, and when forced, ``forced: true`` with the FAILs."""
    summary: dict[str, Any] = {"validation": {"ok": report.ok, "counts": report.counts}}
    found = blocking(report)
    if not found:
        return None, summary
    failures = [r.as_dict() for r in found]
    if force:
        return None, {**summary, "forced": True, "failed_checks": failures}
    return (
        RollbackRefused(
            f"rollback refused, {len(found)} check(s) failed: "
            + "; ".join(f"{r.name}: {r.message.split('; ')[0]}" for r in found)
            + f". Nothing was rolled back (`tbmigrate validate rollback {report.target}` shows "
            "every check; --force rolls back anyway, and the audit log records it)",
            {"failed_checks": failures},
        ),
        summary,
    )
