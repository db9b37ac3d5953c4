"""``tbmigrate status``: every migration and its state."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from migrator import planner
from migrator.api import MigrationSystem
from migrator.cli.render import Output, duration, progress, table, when
from migrator.states import STATES, State

help = "Show every migration and its state (applied, pending, changed, missing, failed)."


def add_arguments(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", help="Print the status as JSON.")
    parser.add_argument(
        "--check",
        action="store_true",
        help="Exit 1 unless every migration is applied and unchanged (for CI gates).",
    )
    parser.add_argument(
        "--pending",
        action="store_true",
        help="Print only the pending versions, one a line, oldest first (for CI scripts).",
    )


def handle(out: Output, options: dict[str, Any]) -> None:
    system = MigrationSystem(options["database"], progress=progress(out))
    status = system.status()
    failing = options["check"] and not status.clean
    if out.json:
        out.emit_json(as_json(status, ok=not failing))
    elif options["pending"]:
        # Machine output for shells (`for v in $(tbmigrate status --pending)`): no summary.
        for version in pending_versions(status):
            out.stdout.write(version)
    else:
        out.line(f"Database: {status.database}")
        out.line(f"Scripts:  {status.scripts_dir}")
        out.line()
        rows = []
        for m in status.migrations:
            record = m.record
            state = m.state + (" (out of order)" if m.out_of_order else "")
            flags = []
            if m.script is not None and not m.script.reversible:
                flags.append("irreversible")
            if m.script is not None and not m.script.atomic:
                flags.append("non-atomic")
            rows.append(
                [
                    str(m.version),
                    m.name,
                    _styled(out, m.state, state),
                    when(record.applied_at) if record else "",
                    duration(record.duration_ms) if record else "",
                    ", ".join(flags),
                ]
            )
        if rows:
            for line in table(
                ["Version", "Name", "State", "Applied at (UTC)", "Duration", "Notes"], rows
            ):
                out.line(line)
            out.line()
        out.summary(status.summary + ".")
    if failing:
        raise CommandError(f"status --check: not up to date ({status.summary})", returncode=1)


def _styled(out: Output, state: State, text: str) -> str:
    return str(getattr(out.style, state.style)(text))


def pending_versions(status: Any) -> list[str]:
    """Versions waiting to be applied, oldest first (out-of-order ones included)."""
    return [str(m.version) for m in status.migrations if m.state == planner.PENDING]


def as_json(status: Any, ok: bool = True) -> dict[str, Any]:
    """The ``status --json`` document (``migrator/schemas/status.schema.json``)."""
    migrations = []
    for m in status.migrations:
        record, script = m.record, m.script
        migrations.append(
            {
                "version": str(m.version),
                "name": m.name,
                "state": m.state,
                "out_of_order": m.out_of_order,
                "description": script.description if script else record.description,
                "file": str(script.path) if script else None,
                "checksum": script.checksum if script else None,
                "applied_checksum": record.checksum if record else None,
                "applied_at": record.applied_at.isoformat() if record else None,
                "duration_ms": record.duration_ms if record else None,
                "applied_by": record.applied_by if record else None,
                "host": record.host if record else None,
                "error": record.error if record and record.error else None,
                "reversible": script.reversible if script else None,
                "atomic": script.atomic if script else None,
            }
        )
    return {
        "database": status.database,
        "vendor": status.vendor,
        "scripts_dir": str(status.scripts_dir),
        "summary": status.summary,
        "counts": {str(state): status.count(state) for state in STATES},
        "up_to_date": status.clean,
        "ok": ok,
        "pending": pending_versions(status),
        "migrations": migrations,
    }
