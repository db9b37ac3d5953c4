"""``tbmigrate create VERSION NAME``: write a new script from the template."""

from __future__ import annotations

from typing import Any

from migrator.api import MigrationSystem
from migrator.scripts import shown

help = "Create migration_scripts/YYYY-MM-DDTHH-mm-ss-VERSION-NAME.py from the template."


def add_arguments(parser: Any) -> None:
    parser.add_argument("version", metavar="VERSION", help="Semantic version, e.g. 1.0.3.")
    parser.add_argument(
        "name", metavar="NAME", help="lower-case-with-hyphens, e.g. add-trading-sessions."
    )
    parser.add_argument(
        "--description", default="", help="One line saying what the migration does."
    )


def handle(out: Any, options: dict[str, Any]) -> None:
    path = MigrationSystem.create(options["version"], options["name"], options["description"])
    out.line("Next: write up() and down(), then `python manage.py tbmigrate run`.")
    out.summary(f"Created {shown(path)}")
