"""``tbmigrate sql VERSION [--backwards]``, and ``run --dry-run --sql FILE``: the SQL of
steps before they run, captured on a scratch database (``migrator/sql_preview.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from migrator import sql_preview
from migrator.api import MigrationSystem
from migrator.cli.render import Output
from migrator.errors import UsageError
from migrator.versions import Version

help = (
    "Print the statements a migration runs (its up, or its down with --backwards), captured "
    "on a scratch database of the same kind after replaying the migrations before it; "
    "parameters shown. Nothing runs on the database itself."
)


def add_arguments(parser: Any) -> None:
    parser.add_argument("version", metavar="VERSION", help="The migration, e.g. 1.0.3.")
    parser.add_argument(
        "--backwards", action="store_true", help="The statements of its down instead."
    )
    parser.add_argument(
        "--output", "-o", metavar="FILE", help="Write them to FILE instead of stdout."
    )


def handle(out: Output, options: dict[str, Any]) -> None:
    system = MigrationSystem(options["database"])
    scripts = system.scripts()
    try:
        version = Version.parse(options["version"])
    except ValueError as exc:
        raise UsageError(f"sql: {exc}") from None
    target = next((s for s in scripts if s.version == version), None)
    if target is None:
        known = f"{scripts[0].version} to {scripts[-1].version}" if scripts else "none yet"
        raise UsageError(
            f"sql: there is no migration {version} in {system.scripts_dir} (known: {known}); "
            "see `tbmigrate status`"
        )
    if options["backwards"]:
        if target.down is None:
            raise UsageError(f"sql: {target.label} has no down, so it has no backwards SQL")
        before = [s for s in scripts if s.version <= version]
        steps: list[tuple[Any, sql_preview.Direction]] = [(target, "down")]
    else:
        before = [s for s in scripts if s.version < version]
        steps = [(target, "up")]
    preview = sql_preview.preview(system.alias, before, steps)
    direction = "down (--backwards)" if options["backwards"] else "up"
    text = sql_preview.render(
        preview, f"tbmigrate sql {version}: {target.label}, {direction}", system.database
    )
    _write(out, text, options.get("output"))
    if not preview.ok:
        raise _failed(preview)


def write_run_sql(out: Output, system: MigrationSystem, options: dict[str, Any]) -> None:
    """``run --dry-run --sql FILE``: every step the run would apply, one block each."""
    if not options.get("dry_run"):
        raise UsageError("--sql FILE writes the SQL of a dry run: add --dry-run")
    plan = system.plan(to=options.get("to"), out_of_order=bool(options.get("out_of_order")))
    refusal = plan.refusal()
    if refusal is not None:
        raise refusal
    planned = {s.version for s in plan.scripts}
    applied = [
        s.script
        for s in system.status().migrations
        if s.is_applied and s.script is not None and s.version not in planned
    ]
    preview = sql_preview.preview(system.alias, applied, [(s, "up") for s in plan.scripts])
    title = f"tbmigrate run --dry-run: {len(plan.scripts)} migration(s) to apply"
    text = sql_preview.render(preview, title, system.database)
    _write(out, text, options["sql"])
    if not preview.ok:
        raise _failed(preview)


def _write(out: Output, text: str, output: str | None) -> None:
    if not output or output == "-":
        out.stdout.write(text, ending="")
        return
    path = Path(output)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None
    out.note(f"Wrote the SQL of the step(s) to {output}")


def _failed(preview: sql_preview.Preview) -> Exception:
    from migrator.errors import MigrationFailed

    failed = next(step for step in preview.steps if step.error)
    return MigrationFailed(
        f"{failed.script.label} fails on a scratch {preview.vendor} database: {failed.error}",
        str(failed.script.version),
    )
