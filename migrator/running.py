"""What is migrating a database right now: who holds the lock, which step, how far it got.

``now_running(alias)`` is the one answer the admin's "Now running" page and
``tbmigrate status`` give to "is a migration running, and how far is it?".  It puts
together three sources, each read without waiting and without writing:

- the migration lock (``locking.is_locked``): who holds it (pid, host, user, since; and,
  where the holder says so, the step and action);
- the journal of steps that cannot roll back (``in_progress`` history rows, written and
  committed before a non-atomic step runs): which version, which direction, since
  when, and the ``progress`` its ``batched_update`` keeps up to date (rows done, rate,
  lock waits, blocking sessions seen);
- on PostgreSQL, the lock holder's own server session as ``pg_stat_activity`` shows it
  now (what it executes, whether it waits and on what, and who blocks it): this is
  live even for an atomic step, which is never journaled.

An ``in_progress`` row while nobody holds the lock is a step whose process died: the
result then says ``interrupted`` instead of running.  Everything here is read-only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, connections

from migrator import history, locking, redact
from migrator.formatting import parse_time, when

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableProgress:
    """One table a ``batched_update`` works through (one entry of ``progress["updates"]``)."""

    table: str
    key: str = ""
    rows_done: int = 0
    rows_total: int | None = None
    last_key: Any = None
    rate: float | None = None  # rows per second
    batch_size: int | None = None
    updated_at: datetime | None = None

    @property
    def percent(self) -> float | None:
        if not self.rows_total:
            return None
        return min(100.0, 100.0 * self.rows_done / self.rows_total)

    @property
    def seconds_left(self) -> float | None:
        """Rows still to do at the last rate; ``None`` without a total or a rate."""
        if self.rows_total is None or not self.rate:
            return None
        return max(0, self.rows_total - self.rows_done) / self.rate

    @property
    def finished(self) -> bool:
        return self.rows_total is not None and self.rows_done >= self.rows_total


@dataclass(frozen=True)
class LockWaits:
    """The lock waits a step has had so far: how many, how long in all, the longest."""

    count: int = 0
    total_ms: float = 0.0
    longest_ms: float = 0.0


@dataclass(frozen=True)
class Session:
    """A server session (PostgreSQL), as ``pg_stat_activity`` shows it; every text scrubbed."""

    pid: int | None
    application_name: str = ""
    user: str = ""
    state: str = ""
    xact_start: str = ""
    query: str = ""
    wait: str = ""  # wait_event_type/wait_event, e.g. "Lock/relation" ("" when not waiting)
    query_start: str = ""


@dataclass(frozen=True)
class Step:
    """A journaled step (an ``in_progress`` row) and the progress it reported."""

    version: str
    name: str
    direction: str  # "up" (apply) or "down" (revert)
    started_at: datetime | None
    pid: int | None
    run_id: str
    phase: str = ""  # the script's phase (expand/contract), when known
    updates: tuple[TableProgress, ...] = ()
    lock_waits: LockWaits | None = None
    blocked_by: tuple[Session, ...] = ()
    attempt: int | None = None

    @property
    def action(self) -> str:
        return "revert" if self.direction == "down" else "apply"

    @property
    def label(self) -> str:
        return f"{self.version} {self.name}"


@dataclass(frozen=True)
class Running:
    """The answer of ``now_running``."""

    holder: dict[str, Any] | None  # the lock holder (None: nobody holds the lock)
    steps: tuple[Step, ...] = ()  # journaled steps, oldest version first
    session: Session | None = None  # PostgreSQL: the holder's session right now
    blocked_by: tuple[Session, ...] = ()  # PostgreSQL: sessions blocking it right now
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def running(self) -> bool:
        """Someone holds the migration lock now."""
        return self.holder is not None

    @property
    def interrupted(self) -> bool:
        """Journaled steps, but nobody holds the lock: their process is gone."""
        return self.holder is None and bool(self.steps)

    @property
    def step_label(self) -> str:
        """The step being carried out, as the lock holder or the journal names it."""
        if self.holder and self.holder.get("step"):
            step = str(self.holder["step"])  # the version alone, on PostgreSQL
            journaled = next((s for s in self.steps if s.version == step), None)
            return journaled.label if journaled else step
        return self.steps[-1].label if self.steps else ""

    @property
    def action(self) -> str:
        if self.holder and self.holder.get("action"):
            return str(self.holder["action"])
        return self.steps[-1].action if self.steps else ""

    @property
    def holder_pid(self) -> int | None:
        """The OS process holding the lock (on PostgreSQL read from the session's
        ``application_name``, ``tbmigrate pid=N host=H``, when the holder gives no pid)."""
        if not self.holder:
            return None
        if self.holder.get("pid"):
            return int(self.holder["pid"])
        name = str(self.holder.get("application_name") or "")
        for word in name.split():
            if word.startswith("pid=") and word[4:].isdigit():
                return int(word[4:])
        return None

    @property
    def holder_host(self) -> str:
        """The machine of the holder: on PostgreSQL the one its ``application_name`` names
        (the client's address is ``holder_address``), on SQLite the lock file's."""
        if not self.holder:
            return ""
        name = str(self.holder.get("application_name") or "")
        named = next((w[5:] for w in name.split() if w.startswith("host=")), "")
        return named or str(self.holder.get("host") or "")

    @property
    def holder_address(self) -> str:
        """PostgreSQL: the address the holder's session connects from ("" when local)."""
        if not self.holder or not self.holder.get("backend_pid"):
            return ""
        return str(self.holder.get("host") or "")

    def seconds_since_start(self, step: Step) -> float | None:
        if step.started_at is None:
            return None
        return (self.checked_at - step.started_at).total_seconds()


def now_running(alias: str, phases: Mapping[str, str] | None = None) -> Running | None:
    """Who is migrating ``alias`` now, which step and how far it got; ``None`` when nothing is.

    ``None``: nobody holds the migration lock and no step is journaled ``in_progress``.
    Otherwise a ``Running``: ``holder`` is the lock holder's dict (``pid``, ``user``,
    ``host``, ``since``, on PostgreSQL ``backend_pid`` and ``application_name``, and the
    ``step``/``action`` when the holder records them), or ``None`` when journaled steps
    remain without a holder (``interrupted``: the process died mid-step); ``steps`` are
    the journaled steps with their parsed ``progress`` (see ``Step``); on PostgreSQL,
    ``session`` and ``blocked_by`` are the holder's server session and whoever blocks
    it at this moment.  ``phases`` maps a version to its script's phase
    (``"expand"``/``"contract"``), which the history does not know; the caller that has
    loaded the scripts passes it (``{str(s.version): s.phase for s in scripts}``).

    Never waits and never writes (taking the lock to test it is immediately undone);
    raises ``django.db.DatabaseError`` when the database cannot be read.
    """
    holder = locking.is_locked(alias)
    records = history.in_progress_records(alias)
    if holder is None and not records:
        return None
    phases = phases or {}
    steps = tuple(_step(record, phases.get(str(record.version), "")) for record in records)
    session: Session | None = None
    blocked_by: tuple[Session, ...] = ()
    if holder is not None and holder.get("backend_pid"):
        session, blocked_by = _live_session(alias, int(holder["backend_pid"]))
    return Running(holder=holder, steps=steps, session=session, blocked_by=blocked_by)


def _step(record: history.Record, phase: str) -> Step:
    progress = record.progress if isinstance(record.progress, dict) else {}
    waits = progress.get("lock_waits")
    return Step(
        version=str(record.version),
        name=record.name,
        direction=record.direction,
        started_at=record.started_at,
        pid=record.pid,
        run_id=record.run_id,
        phase=phase,
        updates=tuple(_table(u) for u in progress.get("updates") or () if isinstance(u, dict)),
        lock_waits=(
            LockWaits(
                count=int(waits.get("count") or 0),
                total_ms=float(waits.get("total_ms") or 0.0),
                longest_ms=float(waits.get("longest_ms") or 0.0),
            )
            if isinstance(waits, dict)
            else None
        ),
        blocked_by=tuple(
            _session(b) for b in progress.get("blocked_by") or () if isinstance(b, dict)
        ),
        attempt=_int(progress.get("attempt")),
    )


def _table(update: dict[str, Any]) -> TableProgress:
    updated = update.get("updated_at")
    return TableProgress(
        table=str(update.get("table") or ""),
        key=str(update.get("key") or ""),
        rows_done=_int(update.get("rows_done")) or 0,
        rows_total=_int(update.get("rows_total")),
        last_key=update.get("last_key"),
        rate=_float(update.get("rate")),
        batch_size=_int(update.get("batch_size")),
        updated_at=parse_time(updated) if isinstance(updated, str) else None,
    )


def _session(data: dict[str, Any]) -> Session:
    return Session(
        pid=_int(data.get("pid")),
        application_name=redact.scrub(str(data.get("application_name") or "")),
        user=str(data.get("user") or ""),
        state=str(data.get("state") or ""),
        xact_start=str(data.get("xact_start") or ""),
        query=redact.scrub(str(data.get("query") or "")),
        wait=str(data.get("wait") or ""),
        query_start=str(data.get("query_start") or ""),
    )


IDLE_WAITS = ("Client", "Activity")
_SESSION_SQL = """
    SELECT pid, application_name, usename, state, xact_start, left(query, 500),
           wait_event_type, wait_event, query_start
    FROM pg_stat_activity WHERE pid = %s
"""
_BLOCKING_SQL = """
    SELECT b.pid, b.application_name, b.usename, b.state, b.xact_start, left(b.query, 500),
           b.wait_event_type, b.wait_event, b.query_start
    FROM unnest(pg_blocking_pids(%s)) AS blocking(pid)
    JOIN pg_stat_activity b ON b.pid = blocking.pid
    ORDER BY b.xact_start NULLS LAST
"""


def _live_session(alias: str, backend_pid: int) -> tuple[Session | None, tuple[Session, ...]]:
    """The lock holder's PostgreSQL session now, and the sessions blocking it now."""
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute(_SESSION_SQL, [backend_pid])
            row = cursor.fetchone()
            cursor.execute(_BLOCKING_SQL, [backend_pid])
            blocking = cursor.fetchall()
    except DatabaseError as exc:  # e.g. not allowed to see other sessions' activity
        logger.info("could not read the lock holder's session: %s", exc)
        return None, ()
    return (_row_session(row) if row else None), tuple(_row_session(r) for r in blocking)


def _row_session(row: Any) -> Session:
    pid, app, user, state, xact_start, query, wait_type, wait_event, query_start = row
    return Session(
        pid=pid,
        application_name=redact.scrub(app or ""),
        user=user or "",
        state=state or "",
        xact_start=_utc(xact_start),
        query=redact.scrub(query or ""),
        # Waiting for the client (or idle) is no wait of the step's.
        wait=f"{wait_type}/{wait_event}" if wait_type and wait_type not in IDLE_WAITS else "",
        query_start=_utc(query_start),
    )


def _utc(value: datetime | None) -> str:
    return when(value)


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
