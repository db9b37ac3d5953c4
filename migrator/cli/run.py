"""``tbmigrate run``: apply pending migrations in version order."""

from __future__ import annotations

from typing import Any

from migrator import conf
from migrator.api import MigrationSystem
from migrator.cli.options import add_lock_timeout, add_step_options, step_timeouts
from migrator.cli.render import Output, duration, progress

help = "Apply pending migrations in version order, each in its own transaction."


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--to", metavar="VERSION", help="Apply pending migrations up to and including VERSION."
    )
    parser.add_argument("--dry-run", action="store_true", help="Print the plan; change nothing.")
    parser.add_argument(
        "--sql",
        metavar="FILE",
        help="With --dry-run: write the statements of every step to FILE ('-': stdout), "
        "captured on a scratch database.",
    )
    parser.add_argument(
        "--fake",
        action="store_true",
        help="Record the migrations as applied without running them (adopt an existing database).",
    )
    parser.add_argument(
        "--out-of-order",
        action="store_true",
        help="Also apply pending migrations older than the newest applied one.",
    )
    parser.add_argument(
        "--phase",
        choices=["expand"],
        help="expand: apply pending migrations only up to the first one with "
        'phase = "contract" (deploy the application, then `run` again for the rest).',
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
    if options.get("sql"):
        from migrator.cli.sql import write_run_sql

        return write_run_sql(out, system, options)
    out.line(f"Database: {system.database}")
    confirm = None
    if options["database"] in conf.get("PROTECTED_DATABASES"):
        confirm = lambda steps: out.confirm(  # noqa: E731
            f"{options['database']} is protected: "
            f"apply {len(steps)} migration(s) to {system.database}?",
            [s.label for s in steps],
        )
    try:
        result = system.migrate(
            to=options["to"],
            fake=options["fake"],
            dry_run=options["dry_run"],
            out_of_order=options["out_of_order"],
            confirm=confirm,
            backup=options["backup"],
            phase=options.get("phase"),
        )
    except Exception as exc:
        report_failure(out, system, exc)
        raise
    if out.json:
        out.emit_json(as_json(result, system.vendor))
        return
    if result.dry_run and result.planned:
        out.line(f"Would apply {len(result.planned)} migration(s):")
        for label in result.planned:
            out.line(f"  {label}")
    out.summary(summary(result))


def report_failure(out: Output, system: MigrationSystem, exc: Exception) -> None:
    """A step failed part-way through a run or rollback: say how far it got.

    Errors with no result (refusals, bad usage) are left to the command, which prints
    the error line (and, under --json, the error document).
    """
    result = getattr(exc, "result", None)
    if result is None:
        return
    if out.json:
        out.emit_json(as_json(result, system.vendor, error=str(exc)))
    else:
        out.summary(summary(result))


def summary(result: Any) -> str:
    """The one line that ends ``run`` and ``rollback`` (and is ``summary`` in their JSON)."""
    run = result.action == "run"
    steps = len(result.planned)
    if result.dry_run:
        if not steps:
            return (
                "Dry run: nothing to apply; the database is up to date."
                if run
                else "Dry run: nothing to roll back."
            )
        verb = "applied" if run else "rolled back"
        return f"Dry run: {steps} migration(s) would be {verb}; nothing was changed."
    done = [step for step in result.steps if step.outcome == "success"]
    failed = [step for step in result.steps if step.outcome != "success"]
    if failed:
        step = failed[0]
        verb = "applied" if run else "reverted"
        return (
            f"{'Run' if run else 'Rollback'} failed at {step.version} {step.name}: "
            f"{len(done)} of {steps} migration(s) {verb}."
        )
    if not done:
        return (
            "No migrations to apply; the database is up to date."
            if run
            else ("Nothing to roll back.")
        )
    total = duration(sum(step.duration_ms for step in done))
    if not run:
        return f"Rolled back {len(done)} migration(s) in {total}."
    if all(step.action == "fake" for step in done):
        return f"Recorded {len(done)} migration(s) as applied without running them."
    return f"Applied {len(done)} migration(s) in {total}."


def as_json(result: Any, vendor: str, error: str | None = None) -> dict[str, Any]:
    """The ``run``/``rollback --json`` document (``migrator/schemas/run.schema.json``)."""
    return {
        "action": result.action,
        "database": result.database,
        "vendor": vendor,
        "dry_run": result.dry_run,
        "ok": error is None and result.ok,
        "planned": result.planned,
        "steps": [
            {
                "action": step.action,
                "version": step.version,
                "name": step.name,
                "outcome": step.outcome,
                "duration_ms": step.duration_ms,
                "attempts": step.attempts,
                "lock_wait_ms": step.lock_wait_ms,
                "error": step.error or None,
            }
            for step in result.steps
        ],
        "backup": result.backup.as_dict() if result.backup else None,
        "error": error,
        "summary": summary(result),
    }
