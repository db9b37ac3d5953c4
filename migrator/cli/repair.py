"""``tbmigrate repair``: clear a failed record, accept edited scripts, forget missing ones."""

from __future__ import annotations

from typing import Any

from migrator import conf
from migrator.api import MigrationSystem
from migrator.cli.options import add_lock_timeout
from migrator.cli.render import Output

help = (
    "Fix the history after fixing things by hand: VERSION clears a failed migration "
    "(it becomes pending); --checksums accepts edited applied scripts; --missing forgets "
    "applied migrations whose files were deleted. Changes no schema; audited."
)


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "version",
        nargs="?",
        metavar="VERSION",
        help="A failed migration whose leftovers you have cleaned up by hand.",
    )
    parser.add_argument(
        "--checksums",
        action="store_true",
        help="Accept every edited applied script: store its current checksum.",
    )
    parser.add_argument(
        "--missing",
        action="store_true",
        help="Forget applied migrations whose script file is gone (their changes stay).",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="Print what was repaired as JSON (migrator/schemas/repair.schema.json).",
    )
    add_lock_timeout(parser)


def handle(out: Output, options: dict[str, Any]) -> None:
    system = MigrationSystem(options["database"], lock_timeout=options["lock_timeout"])
    out.line(f"Database: {system.database}")
    confirm = None
    if options["database"] in conf.get("PROTECTED_DATABASES"):
        confirm = lambda steps: out.confirm(  # noqa: E731
            f"{options['database']} is protected: repair {len(steps)} record(s) "
            f"of {system.database}?",
            [s.summary for s in steps],
        )
    done = system.repair(
        options["version"],
        checksums=options["checksums"],
        missing=options["missing"],
        confirm=confirm,
    )
    summary = (
        f"Repaired {len(done)} record(s); see `tbmigrate status`." if done else "Nothing to repair."
    )
    if out.json:
        out.emit_json(
            {
                "database": system.database,
                "vendor": system.vendor,
                "ok": True,
                "repaired": [
                    {"kind": r.kind, "version": r.version, "name": r.name, "summary": r.summary}
                    for r in done
                ],
                "summary": summary,
            }
        )
        return
    for r in done:
        out.line(f"  Repaired {r.summary}")
    out.summary(summary)
