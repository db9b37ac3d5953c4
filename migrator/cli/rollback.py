"""``tbmigrate rollback``: revert applied migrations, newest first, one by default."""

from __future__ import annotations

from typing import Any

from migrator.api import MigrationSystem
from migrator.cli.options import add_lock_timeout, add_step_options, step_timeouts
from migrator.cli.render import Output, progress
from migrator.cli.run import as_json, report_failure, summary
from migrator.cli.validate import render
from migrator.validation.base import Report

help = (
    "Revert applied migrations newest first: with no argument the newest one; "
    "VERSION: it and every newer one; --to VERSION: every one newer than VERSION (0: all)."
)


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "version",
        nargs="?",
        metavar="VERSION",
        help="Roll back this version and every applied one newer than it.",
    )
    parser.add_argument(
        "--to",
        metavar="VERSION",
        help="Roll back every applied migration newer than VERSION (0: all).",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="Print what would be reverted; change nothing."
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="Roll back even when the rollback validation fails (data loss, a guard); audited.",
    )
    parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
    add_lock_timeout(parser)
    add_step_options(parser)


def handle(out: Output, options: dict[str, Any]) -> None:
    system = MigrationSystem(
        options["database"],
        progress=progress(out),
        lock_timeout=options["lock_timeout"],
        step_timeouts=step_timeouts(options),
        # Under --json a script's print() goes to stderr: stdout stays one document.
        script_output=out.script_output,
    )
    out.line(f"Database: {system.database}")

    def confirm(steps: Any) -> bool:
        landing = system.rollback_plan(options["version"], options["to"]).target
        where = "no migration applied" if landing in (None, "0") else landing
        return out.confirm(
            f"Roll back {len(steps)} migration(s) on {system.database}, newest first? "
            f"The database will then be at {where}.",
            [s.label for s in steps],
        )

    checked: list[Report] = []

    def show(report: Report) -> None:
        checked.append(report)
        out.line("Rollback validation:")
        render(out, report)
        if not report.ok and options["force"]:
            out.note(f"--force: rolling back despite {report.counts['FAIL']} failed check(s)")

    try:
        result = system.rollback(
            options["version"],
            to=options["to"],
            dry_run=options["dry_run"],
            # --no-input: no question, and the rollback is its own preview (one pass).
            confirm=confirm if options.get("interactive", True) else None,
            force=options["force"],
            on_report=show,
            backup=options["backup"],
        )
    except Exception as exc:
        report_failure(out, system, exc)
        raise
    if out.json:
        data = as_json(result, system.vendor)
        if checked:
            data["validation"] = checked[0].as_dict()
        out.emit_json(data)
        return
    if result.dry_run and result.planned:
        out.line(f"Would roll back {len(result.planned)} migration(s), newest first:")
        for label in result.planned:
            out.line(f"  {label}")
    if result.planned and result.target is not None:
        landing = "no migration applied" if result.target == "0" else result.target
        verb = "would then be" if result.dry_run else "is now"
        out.line(f"The database {verb} at {landing}.")
    out.summary(summary(result))
