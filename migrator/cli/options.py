"""Options shared by several subcommands: the migration lock's wait, PostgreSQL step
timeouts and ``--backup``.  A negative wait or limit is bad usage (exit 2): argparse
refuses ``--lock-timeout``, ``step_timeouts`` the PostgreSQL ones."""

from __future__ import annotations

import argparse
from typing import Any

from migrator.errors import UsageError
from migrator.timeouts import StepTimeouts


def seconds(text: str) -> float:
    """An argparse type: seconds, 0 or more (a negative wait or limit is bad usage)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if value < 0 or value != value:  # NaN is not a duration either
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {text}")
    return value


def add_lock_timeout(parser: Any, waiting_for: str = "another run") -> None:
    """``--lock-timeout``: how long to wait for the migration lock."""
    parser.add_argument(
        "--lock-timeout",
        type=seconds,
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
        help="The first attempt's wait for a table lock, 0: no limit; each retry waits 1.5 "
        "times longer up to PG_LOCK_TIMEOUT_MAX (default: setting PG_LOCK_TIMEOUT, 0.1).",
    )
    group.add_argument(
        "--pg-statement-timeout",
        type=float,
        metavar="SECONDS",
        help="Cancel a statement of an atomic step running longer, 0: never "
        "(default: setting PG_STATEMENT_TIMEOUT, 10; non-atomic steps have none).",
    )
    group.add_argument(
        "--pg-lock-retries",
        type=int,
        metavar="N",
        help="Retry a step (or a statement of a non-atomic step) whose lock wait timed out "
        "up to N times, within PG_LOCK_RETRY_BUDGET seconds (default: PG_LOCK_RETRIES, 30).",
    )
    group.add_argument(
        "--pg-lock-retry-pause",
        type=float,
        metavar="SECONDS",
        help="First pause between those retries; it doubles up to PG_LOCK_RETRY_PAUSE_MAX, "
        "jittered (default: setting PG_LOCK_RETRY_PAUSE, 0.1).",
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
        alias=options.get("database"),
    )
