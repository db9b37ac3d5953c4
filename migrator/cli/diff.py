"""``tbmigrate diff VERSION``: what changed in an applied script since it ran.

Prints the unified diff of the script as it was applied (kept in the history) against
the file now.  Exit codes as ``git diff --exit-code`` and ``diff(1)``: 0 when the file
is the one that ran, 1 when it differs (or is gone), 2 for bad usage (not a version,
or a version with no history row).  A script applied before tbmigrate kept the text
has no diff to show; its checksum still decides 0 or 1.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError
from django.db import DatabaseError

from migrator import conf, diffs, targets
from migrator.cli.render import Output
from migrator.errors import DatabaseUnavailable

help = (
    "Show what changed in an applied script since it ran: a unified diff of the script as "
    "applied against the file now. Exit 0 when the same, 1 when it differs."
)


def add_arguments(parser: Any) -> None:
    parser.add_argument("version", metavar="VERSION", help="An applied version, e.g. 1.0.3.")


def handle(out: Output, options: dict[str, Any]) -> None:
    alias = options["database"]
    targets.connect(alias)
    try:
        found = diffs.script_diff(alias, options["version"], conf.scripts_dir())
    except DatabaseError as exc:
        raise DatabaseUnavailable(targets.connection_error_message(alias, exc)) from exc
    label = f"{found.version} {found.name}"
    for line in found.lines:
        out.line(_styled(out, line.rstrip("\n")))
    if found.same:
        out.summary(
            f"{label}: the file is the script that ran (checksum {found.applied_checksum[:12]})"
        )
        return
    if found.path is None:
        what = "its file is gone from the scripts folder"
    else:
        what = "the file was edited after it ran"
    if not found.kept:
        what += (
            " (checksum then "
            f"{found.applied_checksum[:12]}, now {(found.current_checksum or 'none')[:12]}); "
            "the text that ran was not kept: it was applied before tbmigrate kept scripts' text"
        )
    raise CommandError(f"{label}: {what}", returncode=1)


def _styled(out: Output, line: str) -> str:
    if line.startswith(("+++", "---")):
        return str(out.style.MIGRATE_HEADING(line))
    if line.startswith("+"):
        return str(out.style.SUCCESS(line))
    if line.startswith("-"):
        return str(out.style.ERROR(line))
    if line.startswith("@@"):
        return str(out.style.HTTP_INFO(line))
    return line
