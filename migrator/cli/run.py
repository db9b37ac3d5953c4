"""``tbmigrate run``: apply pending migrations in version order."""

from __future__ import annotations

from typing import Any

from migrator import conf
from migrator.api import MigrationSystem
from migrator.cli.options import add_step_options, step_timeouts
from migrator.cli.render import Output, duration, progress

help = "Apply pending migrations in version order, each in its own transaction."


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--to", metavar="VERSION", help="Apply pending migrations up to and including VERSION."
    )
    parser.add_argument("--dry-run", action="store_true", help="Print the plan; change nothing.")
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
    parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
    parser.add_argument(
        "--lock-timeout",
        type=float,
        metavar="SECONDS",
        help="How long to wait for another run to finish (default: setting LOCK_TIMEOUT).",
    )
    add_step_options(parser)


def handle(out: Output, options: dict[str, Any]) -> None:
    system = MigrationSystem(
        options["database"],
        progress=progress(out),
        lock_timeout=options["lock_timeout"],
        step_timeouts=step_timeouts(options),
    )
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
        )
    except Exception as exc:
        if out.json and getattr(exc, "result", None) is not None:
            out.emit_json(as_json(exc.result, error=str(exc)))
        raise
    if out.json:
        out.emit_json(as_json(result))
        return
    if result.dry_run:
        if result.planned:
            out.line(f"Would apply {len(result.planned)} migration(s):")
            for label in result.planned:
                out.line(f"  {label}")
        else:
            out.line("Nothing to apply; the database is up to date.")
        return
    if not result.steps:
        out.line("No migrations to apply; the database is up to date.")
        return
    total = sum(step.duration_ms for step in result.steps)
    verb = "Recorded" if options["fake"] else "Applied"
    out.line(f"{verb} {len(result.steps)} migration(s) in {duration(total)}.")


def as_json(result: Any, error: str | None = None) -> dict[str, Any]:
    return {
        "action": result.action,
        "database": result.database,
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
                "error": step.error or None,
            }
            for step in result.steps
        ],
        "backup": result.backup.as_dict() if result.backup else None,
        "error": error,
    }
