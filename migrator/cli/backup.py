"""``tbmigrate backup``: back the database up now (SQLite backup API / pg_dump)."""

from __future__ import annotations

from typing import Any

from migrator.api import MigrationSystem
from migrator.cli.options import add_lock_timeout
from migrator.cli.render import Output, duration
from migrator.scripts import shown

help = (
    "Back the database up into BACKUP_DIR: SQLite with its online backup API, "
    "PostgreSQL with pg_dump --format=custom (restore with pg_restore). Audited."
)


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="Print the backup as JSON (migrator/schemas/backup.schema.json).",
    )
    add_lock_timeout(parser, "a running migration")


def handle(out: Output, options: dict[str, Any]) -> None:
    system = MigrationSystem(options["database"], lock_timeout=options["lock_timeout"])
    out.line(f"Database: {system.database}")
    taken = system.backup()
    summary = (
        f"Backed up to {shown(taken.path)} ({_size(taken.size_bytes)}, "
        f"{taken.method}, {duration(taken.duration_ms)})."
    )
    if out.json:
        out.emit_json(
            {
                "database": system.database,
                "vendor": system.vendor,
                "ok": True,
                **taken.as_dict(),
                "summary": summary,
            }
        )
        return
    out.summary(summary)


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
