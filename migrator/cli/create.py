"""``tbmigrate create VERSION NAME [--sql]``: write a new script from the template."""

from __future__ import annotations

import os
from typing import Any

from migrator import conf, scripts
from migrator.api import MigrationSystem
from migrator.cli.render import Output
from migrator.scripts import shown
from migrator.versions import Version

help = (
    "Create migration_scripts/YYYY-MM-DDTHH-mm-ss-VERSION-NAME.py from the template "
    "(--sql: the pair ….up.sql and ….down.sql)."
)


def add_arguments(parser: Any) -> None:
    parser.add_argument("version", metavar="VERSION", help="Semantic version, e.g. 1.0.3.")
    parser.add_argument(
        "name", metavar="NAME", help="lower-case-with-hyphens, e.g. add-trading-sessions."
    )
    parser.add_argument(
        "--description", default="", help="One line saying what the migration does."
    )
    parser.add_argument(
        "--sql", action="store_true", help="Write plain SQL files (….up.sql, ….down.sql)."
    )


def handle(out: Output, options: dict[str, Any]) -> None:
    path = scripts.create_script(
        conf.scripts_dir(),
        options["version"],
        options["name"],
        options["description"],
        sql=options["sql"],
    )
    version = Version.parse(options["version"])
    for warning in _older_than_newest(version, options["database"]):
        out.stderr.write(f"warning: {warning}")
    if options["sql"]:
        down = path.with_name(path.name.replace(".up.sql", ".down.sql"))
        out.line(f"Next: write {shown(path)} and {shown(down)}, then `tbmigrate run`.")
        out.summary(f"Created {shown(path)} and {shown(down)}")
    else:
        out.line("Next: write up() and down(), then `tbmigrate run`.")
        out.summary(f"Created {shown(path)}")


def _older_than_newest(version: Version, alias: str) -> list[str]:
    """Warnings for a version that sorts before the newest script or the newest applied
    one: `run` takes it for an out-of-order one and refuses it without --out-of-order.
    The database is read only if it can be reached and already exists; create never
    fails because of it."""
    from django.db import DatabaseError

    from migrator import history, targets
    from migrator.errors import MigratorError

    warnings: list[str] = []
    try:
        system = MigrationSystem(alias)
        others = [s.version for s in scripts.load_scripts(system.scripts_dir)]
        newest_file = max((v for v in others if v != version), default=None)
        newest_applied = None
        name = str(targets.connections[alias].settings_dict.get("NAME") or "")
        if system.vendor != "sqlite" or os.path.exists(name):
            applied = [r.version for r in system.history() if r.status == history.APPLIED]
            newest_applied = max(applied, default=None)
            system.close()
    except (MigratorError, DatabaseError, OSError):
        return warnings
    if newest_applied is not None and version < newest_applied:
        warnings.append(
            f"{version} is older than {newest_applied}, the newest migration applied to "
            f"{system.database}: `run` will refuse it as out of order unless --out-of-order "
            f"(the next free version after it is {_next(newest_applied, newest_file)})"
        )
    elif newest_file is not None and version < newest_file:
        warnings.append(
            f"{version} is older than {newest_file}, the newest script: wherever that one is "
            "applied, `run` will refuse this one as out of order unless --out-of-order"
        )
    return warnings


def _next(applied: Version, newest_file: Version | None) -> Version:
    top = max(applied, newest_file) if newest_file is not None else applied
    return Version(top.major, top.minor, top.patch + 1)
