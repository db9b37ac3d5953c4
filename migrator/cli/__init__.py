"""The subcommands of ``tbmigrate`` (and ``manage.py tbmigrate``), one module each.

Each module defines ``help``, ``add_arguments(parser)`` and ``handle(out, options)``;
``out`` is the ``Output`` of ``render.py``.  Handlers parse, call ``migrator.api``
and render; they never print from anywhere else and never call ``sys.exit``.

``tbmigrate --help`` lists the subcommands from ``SUMMARIES`` without importing their
modules (which import the whole engine, and need Django set up): a module is loaded
only when its subcommand is used.  A subcommand missing from ``SUMMARIES`` still
works, its module loaded for its ``help``.  ``EXAMPLES`` end each subcommand's help.
A subcommand named after a Python keyword lives in ``<name>_.py`` (``import_.py``).
"""

from __future__ import annotations

import importlib
import keyword
from types import ModuleType

SUBCOMMANDS = (
    "status",
    "run",
    "rollback",
    "create",
    "validate",
    "repair",
    "backup",
    "sql",
    "import",
    "diff",
    "fleet",
)

SUMMARIES = {
    "status": "Show every migration and its state.",
    "run": "Apply pending migrations in version order.",
    "rollback": "Revert applied migrations, newest first (one by default).",
    "create": "Write a new migration script (Python, or SQL with --sql).",
    "validate": "Check the schema, a migration before it runs, a rollback, or every script.",
    "repair": "Fix the history after fixing things by hand (audited).",
    "backup": "Back the database up into BACKUP_DIR.",
    "sql": "Print the SQL a migration runs, captured on a scratch database.",
    "import": "Bring migrations over from golang-migrate, dbmate, Flyway or Diesel.",
    "diff": "Show what an applied script ran against the file now (a unified diff).",
    "fleet": "Status, run and validate across the databases of the fleet file.",
}

EXAMPLES = {
    None: """\
examples:
  tbmigrate status                         what is applied, what is pending
  tbmigrate run                            apply everything pending
  tbmigrate --database qa run --to 1.0.4   options may come before the subcommand
  tbmigrate sql 1.0.4                      the SQL 1.0.4 will run, for review
  tbmigrate rollback --to 1.0.2            revert everything newer than 1.0.2

The database is DATABASE_URL (or the SQLite file SQLITE_DB_PATH); the scripts are in
./migration_scripts (or TBMIGRATE_SCRIPTS_DIR). `tbmigrate SUBCOMMAND --help` for more.""",
    "status": """\
examples:
  tbmigrate status
  tbmigrate status --check          exit 1 when anything is pending, changed or failed (CI)
  tbmigrate status --json""",
    "run": """\
examples:
  tbmigrate run
  tbmigrate run --to 1.0.4 --dry-run
  tbmigrate run --dry-run --sql plan.sql    the statements of every pending step, for review
  tbmigrate run --database prod --no-input --backup""",
    "rollback": """\
examples:
  tbmigrate rollback                 the newest applied migration
  tbmigrate rollback 1.0.3           1.0.3 and every applied one newer, newest first
  tbmigrate rollback --to 1.0.2      everything newer than 1.0.2 (--to 0: everything)
  tbmigrate rollback --dry-run""",
    "create": """\
examples:
  tbmigrate create 1.0.5 add-order-notes --description "Notes on orders"
  tbmigrate create 1.0.5 add-order-notes --sql     writes ….up.sql and ….down.sql""",
    "validate": """\
examples:
  tbmigrate validate schema
  tbmigrate validate migration 1.0.4
  tbmigrate validate rollback 1.0.3
  tbmigrate validate scripts --json""",
    "repair": """\
examples:
  tbmigrate repair 1.0.7             clear the failed record of 1.0.7 (it becomes pending)
  tbmigrate repair --checksums       accept edited applied scripts
  tbmigrate repair --missing         forget applied migrations whose files were deleted""",
    "backup": """\
examples:
  tbmigrate backup
  tbmigrate backup --database prod""",
    "sql": """\
examples:
  tbmigrate sql 1.0.4                the statements of 1.0.4's up
  tbmigrate sql 1.0.4 --backwards    the statements of its down
  tbmigrate sql 1.0.4 --output 1.0.4.sql""",
    "import": """\
examples:
  tbmigrate import golang-migrate db/migrations
  tbmigrate import flyway src/main/resources/db/migration --adopt
  tbmigrate import dbmate db/migrations --start 2.0.0""",
    "diff": """\
examples:
  tbmigrate diff 1.0.3               exit 0: unchanged; 1: it differs (or the file is gone)
  tbmigrate diff 1.0.3 --database prod""",
    "fleet": """\
examples:
  tbmigrate fleet status                         every database of tbmigrate.fleet.toml
  tbmigrate fleet run --canary 1 --max-parallel 4
  tbmigrate fleet validate --group eu
  tbmigrate run --database exchange-a            one database of the fleet, by its name
`tbmigrate fleet ACTION --help` for more.""",
}


def module_name(name: str) -> str:
    return f"migrator.cli.{name}_" if keyword.iskeyword(name) else f"migrator.cli.{name}"


def load(name: str) -> ModuleType:
    return importlib.import_module(module_name(name))
