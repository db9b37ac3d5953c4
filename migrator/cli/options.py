"""Options shared by several subcommands: the migration lock's wait, PostgreSQL step
timeouts and ``--backup``."""

from __future__ import annotations

from typing import Any

from migrator.errors import UsageError
from migrator.timeouts import StepTimeouts


def add_lock_timeout(parser: Any, waiting_for: str = "another run") -> None:
    """``--lock-timeout``: how long to wait for the migration lock."""
    parser.add_argument(
        "--lock-timeout",
        type=float,
        metavar="SECONDS",
        help=f"How long to wait for {waiting_for} to finish (default: setting LOCK_TIMEOUT).",
    )


def add_step_options(parser: Any) -> None:
    parser.add_argument(
        "--backup",
        action="store_true",
        help="Back the database up first (SQLite backup API / pg_dump), into BACKUP_DIR.",
    )
    group = parser.add_argument_group(
        "PostgreSQL step timeouts (each step's transaction; ignored on SQLite)"
    )
    group.add_argument(
        "--pg-lock-timeout",
        type=float,
        metavar="SECONDS",
        help="Give up waiting for a table lock after SECONDS, 0: never "
        "(default: setting PG_LOCK_TIMEOUT, 10).",
    )
    group.add_argument(
        "--pg-statement-timeout",
        type=float,
        metavar="SECONDS",
        help="Cancel any statement of a step running longer, 0: never "
        "(default: setting PG_STATEMENT_TIMEOUT, none).",
    )
    group.add_argument(
        "--pg-lock-retries",
        type=int,
        metavar="N",
        help="Retry a step whose lock wait timed out N times (default: PG_LOCK_RETRIES, 2).",
    )
    group.add_argument(
        "--pg-lock-retry-pause",
        type=float,
        metavar="SECONDS",
        help="Pause between those retries (default: setting PG_LOCK_RETRY_PAUSE, 5).",
    )


def step_timeouts(options: dict[str, Any]) -> StepTimeouts:
    names = ("pg_lock_timeout", "pg_statement_timeout", "pg_lock_retries", "pg_lock_retry_pause")
    for name in names:
        value = options.get(name)
        if value is not None and value < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 or more, not {value:g}")
    return StepTimeouts.resolve(
        lock_timeout=options.get("pg_lock_timeout"),
        statement_timeout=options.get("pg_statement_timeout"),
        lock_retries=options.get("pg_lock_retries"),
        retry_pause=options.get("pg_lock_retry_pause"),
    )
