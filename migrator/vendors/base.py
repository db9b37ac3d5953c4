"""The vendor interface, with the behaviour of a database that needs nothing special."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from migrator.timeouts import StepTimeouts, sqlstate


class Vendor:
    """One connection's vendor-specific behaviour during a migration run."""

    name = "unknown"

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    # -- what the database can do ------------------------------------------------------
    @property
    def can_rollback_ddl(self) -> bool:
        """Whether a failed step's DDL is rolled back with its transaction (asked of
        Django's connection features, never assumed)."""
        return bool(getattr(self.connection.features, "can_rollback_ddl", False))

    # -- the migrating session ---------------------------------------------------------
    def start_session(self, timeouts: StepTimeouts, busy_seconds: float) -> None:
        """Once per run (and again after a reconnect): settings for every step."""

    def before_step(self, atomic: bool, limits: StepTimeouts | None = None) -> None:
        """Before each step's transaction (or, for a non-atomic step, its statements):
        the session as that kind of step needs it, with the step's ``limits``."""

    def set_lock_timeout(self, seconds: float | None) -> None:
        """The session's lock wait for a retry's next attempt (databases that have one)."""

    def local_timeouts(self, timeouts: StepTimeouts) -> None:
        """Inside a caller's own transaction, where session settings would not stick."""

    def end_session(self, timeouts: StepTimeouts) -> None:
        """Put back what ``start_session`` and ``before_step`` changed."""

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """While a step runs: let a signal stop a statement the driver is executing."""
        yield

    def check_present(self) -> None:
        """Raise ``DatabaseUnavailable`` if the database vanished under us."""

    # -- errors ------------------------------------------------------------------------
    def is_lock_timeout(self, exc: BaseException) -> bool:
        return False

    def connection_lost(self, exc: BaseException) -> bool:
        raw = getattr(self.connection, "connection", None)
        return raw is not None and bool(getattr(raw, "broken", False))

    def sqlstate(self, exc: BaseException) -> str | None:
        return sqlstate(exc)

    # -- the migration lock ------------------------------------------------------------
    def migration_lock(self) -> Any:
        raise NotImplementedError(f"no migration lock for {self.connection.vendor}")
