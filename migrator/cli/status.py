"""``tbmigrate status``: every migration and its state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import CommandError

from migrator import locking, planner
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
    pending = [m.version for m in status.migrations if m.state == State.PENDING]
    failures = system.last_failures(pending)
    if out.json:
        out.emit_json(as_json(status, ok=not failing, failures=failures))
    elif options["pending"]:
        # Machine output for shells (`for v in $(tbmigrate status --pending)`): no summary.
        for version in pending_versions(status):
            out.stdout.write(version)
    else:
        out.line(f"Database: {status.database}")
        out.line(f"Scripts:  {status.scripts_dir}")
        if status.lock_holder is not None:
            out.line(f"Running:  {running_line(system, status)}")
        out.line()
        rows = []
        for m in status.migrations:
            record = m.record
            state = m.state + (" (out of order)" if m.out_of_order else "")
            flags = notes(m, failures)
            rows.append(
                [
                    str(m.version),
                    m.name,
                    _styled(out, m.state, state),
                    when(record.applied_at) if record and not record.in_progress else "",
                    duration(record.duration_ms) if record and not record.in_progress else "",
                    "; ".join(flags),
                ]
            )
        if rows:
            for line in table(
                ["Version", "Name", "State", "Applied at", "Duration", "Notes"], rows
            ):
                out.line(line)
            out.line()
        out.summary(status.summary + ".")
    if failing:
        raise CommandError(f"status --check: not up to date ({status.summary})", returncode=1)


def running_line(system: Any, status: Any) -> str:
    """Who migrates the database now, the step and how far it got (``running.now_running``)."""
    from migrator import running

    phases = {str(m.version): m.script.phase for m in status.migrations if m.script}
    try:
        now = running.now_running(system.alias, phases)
    except Exception:  # a diagnosis aid: the holder's own words are enough
        now = None
    text = locking.holder_description(status.lock_holder)
    if now is None or not now.step_label:
        return text
    text += f"; {now.action} {now.step_label}"
    for step in now.steps:
        for update in step.updates:
            part = f"; {update.table}: {update.rows_done:,} rows"
            if update.rows_total:
                part += f" of {update.rows_total:,} ({update.percent:.0f}%)"
            if update.rate:
                part += f", {update.rate:,.0f} rows/s"
            if update.seconds_left is not None:
                part += f", {update.seconds_left:.0f} s left"
            text += part
    return text


def notes(m: Any, failures: dict[str, tuple[datetime, str]]) -> list[str]:
    """What the Notes column says of a version: flags, a problem's facts, a last failure."""
    found = []
    if m.script is not None and not m.script.reversible:
        found.append("irreversible")
    if m.script is not None and not m.script.atomic:
        found.append("non-atomic")
    if m.script is not None and m.script.phase == "contract" and m.state == State.PENDING:
        found.append("contract step: `run --phase expand` leaves it for after the deploy")
    if m.state in (State.INTERRUPTED, State.RUNNING):
        found.append(planner.describe_problem(m).split(f"{m.label} ", 1)[-1])
    last = failures.get(str(m.version))
    if last is not None:
        found.append(f"last attempt failed at {when(last[0])}: {last[1]}")
    return found


def _styled(out: Output, state: State, text: str) -> str:
    return str(getattr(out.style, state.style)(text))


def pending_versions(status: Any) -> list[str]:
    """Versions waiting to be applied, oldest first (out-of-order ones included)."""
    return [str(m.version) for m in status.migrations if m.state == planner.PENDING]


def as_json(
    status: Any, ok: bool = True, failures: dict[str, tuple[datetime, str]] | None = None
) -> dict[str, Any]:
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
                "phase": script.phase if script else None,
                "in_progress": _in_progress(record),
                "last_failure": _last_failure((failures or {}).get(str(m.version))),
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
        "running": status.lock_holder,
        "migrations": migrations,
    }


def _in_progress(record: Any) -> dict[str, Any] | None:
    if record is None or not record.in_progress:
        return None
    return {
        "direction": record.direction,
        "started_at": record.started_at.isoformat() if record.started_at else None,
        "pid": record.pid,
        "by": record.applied_by,
        "host": record.host,
        "progress": record.progress or {},
    }


def _last_failure(found: tuple[datetime, str] | None) -> dict[str, Any] | None:
    if found is None:
        return None
    return {"at": found[0].isoformat(), "error": found[1]}
