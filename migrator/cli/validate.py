"""``tbmigrate validate schema | migration VERSION | rollback VERSION | scripts``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError

from migrator.api import MigrationSystem
from migrator.cli.render import Output
from migrator.errors import UsageError
from migrator.validation.base import FAIL, KINDS, PASS, WARN, Report

help = (
    "Validate: schema (drift, integrity, history), migration VERSION (before run), "
    "rollback VERSION (data-loss preview, guards), scripts (every down undoes its up). "
    "Exit 1 on any FAIL."
)

NEEDS_VERSION = ("migration", "rollback")


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "kind", choices=KINDS, metavar="{schema,migration,rollback,scripts}", help="What to check."
    )
    parser.add_argument(
        "version", nargs="?", metavar="VERSION", help="For migration and rollback, e.g. 1.0.3."
    )
    parser.add_argument("--json", action="store_true", help="Print the report as JSON.")


def handle(out: Output, options: dict[str, Any]) -> None:
    kind, version = options["kind"], options["version"]
    if kind in NEEDS_VERSION and not version:
        raise UsageError(f"validate {kind} needs a VERSION, e.g. `tbmigrate validate {kind} 1.0.3`")
    if kind not in NEEDS_VERSION and version:
        raise UsageError(f"validate {kind} takes no VERSION (got '{version}')")
    system = MigrationSystem(options["database"])
    run = {
        "schema": system.validate_schema,
        "scripts": system.validate_scripts,
        "migration": lambda: system.validate_migration(version),
        "rollback": lambda: system.validate_rollback(version),
    }[kind]
    try:
        report = run()
    except KeyboardInterrupt:
        raise CommandError(
            f"interrupted; validate {kind} stopped, nothing was changed "
            "(its scratch databases and dry runs are gone)",
            returncode=130,
        ) from None
    if out.json:
        out.emit_json(report.as_dict())
    else:
        out.line(f"Database: {report.database}")
        render(out, report)
        out.summary(report.summary + ".")
    if not report.ok:
        raise CommandError(report.summary, returncode=1)


def render(out: Output, report: Report) -> None:
    """One line per check, ``PASS  name: message``; its details at ``-v 2``."""
    styles = {PASS: out.style.SUCCESS, WARN: out.style.WARNING, FAIL: out.style.ERROR}
    for result in report.results:
        out.line(f"{styles[result.level](result.level)}  {result.name}: {result.message}")
        if result.details:
            for line in _detail_lines(result.details):
                out.line(f"      {line}", level=2)


def _detail_lines(details: Any) -> list[str]:
    if isinstance(details, dict):
        return [f"{key}: {_compact(value)}" for key, value in details.items()]
    return [f"- {_compact(item)}" for item in details]


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)
