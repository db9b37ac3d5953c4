"""Rollback guards: callables that may veto a rollback, listed in ``ROLLBACK_GUARDS``.

A guard is ``guard(db, steps) -> CheckResult | list[CheckResult] | None``: ``db`` is the
same ``migrator.database.Database`` that scripts receive (on the live database, outside
any transaction), ``steps`` the ``MigrationState``s the rollback would revert, newest
first.  ``None`` means "nothing to say" (a PASS).  A guard that raises or cannot be
imported counts as a FAIL: a safety check that silently does nothing is worse than
none.  Add your own by appending its dotted path to ``TBMIGRATE_ROLLBACK_GUARDS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from migrator.database import Database
from migrator.validation.base import CheckResult, failed, passed

TRADING_SESSIONS = "trading_sessions"


def active_trading_sessions(db: Database, steps: Sequence[Any]) -> CheckResult:
    """FAIL while ``trading_sessions`` holds rows with status ``active``.

    Rolling the schema back under a bot that is trading can drop the very tables
    its fills are written to.  Passes, saying so, where there is no such table or
    column (a database that never had sessions, or before 1.0.2).
    """
    name = "guard.active_trading_sessions"
    if not db.table_exists(TRADING_SESSIONS):
        return passed(name, f"no {TRADING_SESSIONS} table, so no trading session can be active")
    if not db.column_exists(TRADING_SESSIONS, "status"):
        return passed(name, f"{TRADING_SESSIONS} has no status column; nothing to check")
    quoted = db.quote(TRADING_SESSIONS)
    count = int(db.scalar(f"SELECT COUNT(*) FROM {quoted} WHERE status = %s", ["active"]) or 0)
    if not count:
        total = int(db.scalar(f"SELECT COUNT(*) FROM {quoted}") or 0)
        return passed(name, f"no active trading session ({total} session(s), none active)")
    sample = [
        row[0]
        for row in db.fetchall(
            f"SELECT id FROM {quoted} WHERE status = %s ORDER BY id LIMIT 10", ["active"]
        )
    ]
    return failed(
        name,
        f"{count} trading session(s) are active (status 'active', ids {_ids(sample, count)}); "
        "stop or close them before rolling back, or roll back anyway with --force",
        {"active_sessions": count, "sample_ids": sample},
    )


def _ids(sample: Sequence[Any], count: int) -> str:
    text = ", ".join(str(i) for i in sample)
    return text + (", ..." if count > len(sample) else "")
