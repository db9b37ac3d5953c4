"""PostgreSQL timeouts for migration steps, lock-timeout retries, and who is in the way.

A migration that needs ``ACCESS EXCLUSIVE`` on a busy trading table must not queue
behind a long transaction: while it waits, every query on that table waits behind
*it*.  So the steps run with ``lock_timeout`` (and optionally ``statement_timeout``)
set on the migrating session, once per run and reset after it; when the lock wait
times out the whole step transaction is retried a few times after a pause, as strong_migrations'
``lock_timeout_retries`` does, and then the step fails naming the session that
blocked it.

PostgreSQL cancels the waiting statement when ``lock_timeout`` fires, and by then
``pg_blocking_pids`` of our session is empty.  So a ``BlockerWatch`` looks while the
step is still waiting: one small thread per run, on a connection of its own that it
opens only once a step has run for half the lock timeout (short steps never open it),
then polls ``pg_blocking_pids`` of the migrating session.

SQLite has one writer at a time and no such settings; these options do nothing there.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from migrator import conf, redact

logger = logging.getLogger(__name__)
T = TypeVar("T")

LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout fired
QUERY_CANCELED = "57014"  # statement_timeout fired (or a cancel request)
# Server shut the session down (pg_terminate_backend, restart) or the link broke.
CONNECTION_LOST_PREFIXES = ("08", "57P")


@dataclass(frozen=True)
class StepTimeouts:
    """How long a step may wait for a lock, and how it retries (seconds; ``None``/0: no
    limit).

    ``lock_timeout`` is the first attempt's wait; each retry waits 1.5 times longer, up
    to ``lock_timeout_max`` (GitLab's ``with_lock_retries`` escalates the same way: a
    quiet table is won at once, a busy one a little later, and no attempt queues the
    table's traffic for longer than the cap).  Between attempts a pause that doubles from
    ``retry_pause`` up to ``retry_pause_max``, each drawn between half and all of that
    (jitter, so that two migrators do not retry in step), gives the traffic that queued
    behind the attempt room to drain.  At most ``lock_retries`` retries, and no retry
    that would start after ``retry_budget`` seconds of lock waits and pauses.
    ``statement_timeout`` bounds each statement of an atomic step (a non-atomic step is
    long by design: its batches are each short, and it gets no statement timeout).
    """

    lock_timeout: float | None = None
    statement_timeout: float | None = None
    lock_retries: int = 0
    retry_pause: float = 0.0
    lock_timeout_max: float | None = None
    retry_pause_max: float | None = None
    retry_budget: float | None = None

    @classmethod
    def resolve(
        cls,
        lock_timeout: float | None = None,
        statement_timeout: float | None = None,
        lock_retries: int | None = None,
        retry_pause: float | None = None,
        *,
        alias: str | None = None,
    ) -> StepTimeouts:
        """Flags where given, else the settings of ``alias`` (read now: see ``conf.get``).

        A lock timeout given as a flag is the first attempt's wait; retries grow it up to
        ``PG_LOCK_TIMEOUT_MAX`` when that is higher."""

        def pick(value: Any, name: str) -> Any:
            return conf.get(name, alias=alias) if value is None else value

        lock = pick(lock_timeout, "PG_LOCK_TIMEOUT")
        cap = conf.get("PG_LOCK_TIMEOUT_MAX", alias=alias)
        statement = pick(statement_timeout, "PG_STATEMENT_TIMEOUT")
        pause = max(float(pick(retry_pause, "PG_LOCK_RETRY_PAUSE")), 0.0)
        pause_cap = conf.get("PG_LOCK_RETRY_PAUSE_MAX", alias=alias)
        budget = conf.get("PG_LOCK_RETRY_BUDGET", alias=alias)
        return cls(
            lock_timeout=float(lock) if lock else None,
            statement_timeout=float(statement) if statement else None,
            lock_retries=max(int(pick(lock_retries, "PG_LOCK_RETRIES")), 0),
            retry_pause=pause,
            lock_timeout_max=max(float(cap), float(lock)) if cap and lock else None,
            retry_pause_max=max(float(pause_cap), pause) if pause_cap else None,
            retry_budget=float(budget) if budget else None,
        )

    def for_script(self, lock_timeout: float | None, lock_retries: int | None) -> StepTimeouts:
        """These limits for a script that sets its own (``lock_timeout = "500ms"``: every
        attempt waits that long; ``lock_retries = 30``)."""
        if lock_timeout is None and lock_retries is None:
            return self
        changes: dict[str, Any] = {}
        if lock_timeout is not None:
            changes["lock_timeout"] = lock_timeout or None
            changes["lock_timeout_max"] = None
        if lock_retries is not None:
            changes["lock_retries"] = lock_retries
        return replace(self, **changes)

    def lock_timeout_at(self, attempt: int) -> float | None:
        """The lock wait of attempt ``attempt`` (1 is the first)."""
        if not self.lock_timeout:
            return None
        wait = self.lock_timeout * 1.5 ** max(attempt - 1, 0)
        return min(wait, self.lock_timeout_max) if self.lock_timeout_max else self.lock_timeout

    def pause_after(self, attempt: int, draw: Callable[[], float] = random.random) -> float:
        """The pause after failed attempt ``attempt``: doubling, capped, jittered."""
        pause = self.retry_pause * 2 ** max(attempt - 1, 0)
        if self.retry_pause_max:
            pause = min(pause, self.retry_pause_max)
        return pause * (0.5 + 0.5 * draw())

    def statements(self, local: bool) -> list[str]:
        """The ``SET`` statements for a step (``SET LOCAL`` inside its transaction)."""
        scope = "LOCAL " if local else ""
        found = []
        for setting, seconds in (
            ("lock_timeout", self.lock_timeout),
            ("statement_timeout", self.statement_timeout),
        ):
            if seconds:
                found.append(f"SET {scope}{setting} = '{milliseconds(seconds)}'")
        return found


def milliseconds(seconds: float | None) -> str:
    """A PostgreSQL duration setting: ``'250ms'``; ``'0'`` (no limit) for ``None``/0."""
    return f"{max(int(seconds * 1000), 1)}ms" if seconds else "0"


@dataclass
class LockWaits:
    """The lock waits of one step, across its attempts (the honest cost of a step)."""

    attempts: int = 1
    waits_ms: list[float] = field(default_factory=list)  # each wait that timed out
    blockers: dict[int, dict[str, Any]] = field(default_factory=dict)  # by server pid
    # Seconds a patient statement (one whose lock blocks nobody while it waits) may wait.
    patient_seconds: float | None = None

    def saw(self, blockers: list[dict[str, Any]]) -> None:
        for blocker in blockers:
            self.blockers.setdefault(int(blocker["pid"]), blocker)

    @property
    def retries(self) -> int:
        return self.attempts - 1

    def facts(self) -> dict[str, Any]:
        found: dict[str, Any] = {"attempts": self.attempts}
        if self.retries:
            found["lock_retries"] = self.retries
        if self.waits_ms:
            found["lock_waits"] = {
                "count": len(self.waits_ms),
                "total_ms": round(sum(self.waits_ms), 3),
                "longest_ms": round(max(self.waits_ms), 3),
            }
        if self.blockers:
            found["blocked_by"] = list(self.blockers.values())
        return found


class Retrying:
    """Run one thing (an atomic step's transaction, or one statement or batch of a
    non-atomic step) again when PostgreSQL's ``lock_timeout`` gave up on it.

    Safe only for what a lock timeout undoes entirely: a whole transaction, or one
    statement in autocommit.  ``set_lock_timeout(seconds)`` sets the session's wait for
    the next attempt (it must not run inside a transaction that the retry undoes);
    ``on_retry(message)`` tells the user; ``cleanup()`` runs after a timed-out attempt
    (``CREATE INDEX CONCURRENTLY`` leaves an INVALID index behind it).
    """

    def __init__(
        self,
        limits: StepTimeouts,
        waits: LockWaits,
        *,
        is_lock_timeout: Callable[[BaseException], bool],
        set_lock_timeout: Callable[[float | None], None],
        on_retry: Callable[[str], None],
        blockers: Callable[[], list[dict[str, Any]]] = list,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits = limits
        self.waits = waits
        self.is_lock_timeout = is_lock_timeout
        self.set_lock_timeout = set_lock_timeout
        self.on_retry = on_retry
        self.blockers = blockers
        self.sleep = sleep

    def run(self, attempt: Callable[[], T], cleanup: Callable[[], None] | None = None) -> T:
        spent = 0.0  # seconds of timed-out waits and pauses, for the budget
        tries = 1
        try:
            while True:
                started = time.perf_counter()
                try:
                    return attempt()
                except Exception as exc:
                    if not self.is_lock_timeout(exc):
                        raise
                    waited = time.perf_counter() - started
                    self.waits.waits_ms.append(round(waited * 1000, 3))
                    self.waits.saw(self.blockers())
                    spent += waited
                    if cleanup is not None:
                        cleanup()
                    pause = self.limits.pause_after(tries)
                    budget = self.limits.retry_budget
                    if tries > self.limits.lock_retries or (budget and spent + pause > budget):
                        raise
                    waited_for = self.limits.lock_timeout_at(tries) or waited
                    tries += 1
                    self.waits.attempts += 1
                    wait = self.limits.lock_timeout_at(tries)
                    blocked = describe_blockers(self.blockers()) or "an unknown session"
                    self.on_retry(
                        f" lock_timeout ({waited_for:g} s), blocked by {blocked}; retry "
                        f"{tries - 1} of {self.limits.lock_retries} in {pause:.2g} s"
                        + (f", waiting up to {wait:g} s" if wait and wait != waited_for else "")
                    )
                    self.sleep(pause)
                    spent += pause
                    self.set_lock_timeout(wait)
        finally:
            if tries > 1:  # back to the first attempt's wait for what comes next
                self.set_lock_timeout(self.limits.lock_timeout_at(1))


def sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of a driver error, looking through Django's wrapping."""
    seen = 0
    while exc is not None and seen < 10:
        code = getattr(exc, "sqlstate", None)
        if code:
            return str(code)
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def is_statement_timeout(exc: BaseException) -> bool:
    return sqlstate(exc) == QUERY_CANCELED and "statement timeout" in str(exc)


def describe_blockers(blockers: list[dict[str, Any]]) -> str:
    """``server process 4242 (application 'trading-engine', user bob, idle in transaction,
    transaction started 2026-11-26 10:00:01 UTC, last query: LOCK TABLE trades ...)``."""
    parts = []
    for b in blockers:
        facts = []
        if b.get("application_name"):
            facts.append(f"application '{b['application_name']}'")
        if b.get("user"):
            facts.append(f"user {b['user']}")
        if b.get("client"):
            facts.append(f"from {b['client']}")
        state = b.get("state") or "unknown state"
        since = b.get("xact_start") or b.get("query_start")
        facts.append(f"{state}, transaction started {since}" if since else state)
        if b.get("query"):
            facts.append(f"last query: {b['query']}")
        parts.append(f"server process {b['pid']} ({', '.join(facts)})")
    return "; ".join(parts)


_BLOCKERS_SQL = """
    SELECT b.pid, b.application_name, b.usename, host(b.client_addr), b.state,
           b.xact_start, b.query_start, left(b.query, 200)
    FROM pg_stat_activity w
    CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS blocking(pid)
    JOIN pg_stat_activity b ON b.pid = blocking.pid
    WHERE w.pid = %s AND w.wait_event_type = 'Lock'
    ORDER BY b.xact_start NULLS LAST
"""


class BlockerWatch:
    """Remember who blocks ``connection``'s session while a step waits for a lock.

    One thread serves every step of a run (starting a thread per step cost more than
    a short step itself).  ``watching()`` marks a step's start and end; the thread
    sleeps until a step has run for half the lock timeout, then opens its own
    connection (kept for later steps) and polls until that step ends.  ``blockers``
    holds what was seen during the last step.
    """

    def __init__(self, connection: Any, lock_timeout: float) -> None:
        self.connection = connection
        self.lock_timeout = lock_timeout
        self.blockers: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._step = 0  # steps watched so far: the id of the newest
        self._active = 0  # id of the step running now; 0 between steps
        self._pid: int | None = None
        self._since = 0.0
        self._closed = False
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        raw = self.connection.connection
        backend_pid = getattr(getattr(raw, "info", None), "backend_pid", None)
        if backend_pid is None:
            yield
            return
        with self._cond:
            self.blockers = []
            self._step += 1
            self._active = self._step
            self._pid, self._since = backend_pid, time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tbmigrate-blocker-watch", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._active = 0
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _wait_until_blocked(self) -> tuple[int, int] | None:
        """Block until a step has run for half the lock timeout: (step, pid), or None
        when closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if not self._active:
                    self._cond.wait()
                    continue
                step = self._active
                due = self._since + max(self.lock_timeout / 2, 0.05) - time.monotonic()
                if due <= 0:
                    return step, int(self._pid or 0)
                self._cond.wait(due)

    def _still(self, step: int) -> bool:
        with self._cond:
            return not self._closed and self._active == step

    def _run(self) -> None:
        interval = min(max(self.lock_timeout / 5, 0.02), 0.2)
        watch = None
        try:
            while (found := self._wait_until_blocked()) is not None:
                step, backend_pid = found
                if watch is None:
                    watch = self._connect(backend_pid)
                while self._still(step):
                    rows = watch.execute(_BLOCKERS_SQL, [backend_pid]).fetchall()
                    with self._cond:
                        if rows and self._active == step:
                            self.blockers = [_blocker(row) for row in rows]
                        self._cond.wait(interval)
        except Exception as exc:  # the watch is a diagnosis aid: never fail a step for it
            logger.info("cannot watch for blocking sessions: %s", redact.scrub(str(exc)))
        finally:
            if watch is not None:
                with contextlib.suppress(Exception):
                    watch.close()

    def _connect(self, backend_pid: int) -> Any:
        import psycopg
        from psycopg.conninfo import make_conninfo

        params = self.connection.get_connection_params()
        libpq = {
            key: value
            for key, value in params.items()
            if isinstance(value, str | int) and key != "prepare_threshold"
        }
        libpq["application_name"] = f"tbmigrate blocker watch of {backend_pid}"[:63]
        libpq["connect_timeout"] = 5
        return psycopg.connect(make_conninfo("", **libpq), autocommit=True)


def _blocker(row: tuple[Any, ...]) -> dict[str, Any]:
    query = " ".join(str(row[7] or "").split())
    return {
        "pid": row[0],
        "application_name": row[1] or "",
        "user": row[2] or "",
        "client": row[3] or "",
        "state": row[4] or "",
        "xact_start": _utc(row[5]),
        "query_start": _utc(row[6]),
        # Its text may hold literals of someone else's work: keep it short and scrubbed.
        "query": redact.scrub(query[:120] + ("..." if len(query) > 120 else "")),
    }


def _utc(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""
