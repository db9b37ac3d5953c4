"""One command's run, put together from its audit events (every event of a command
carries the same ``run_id``, see ``history.run_context``).

Pure: events in, a ``RunSummary`` out, so the run page, the runs list and the tests
read the same answer to "what ran in that deploy": the command, its outcome, what it
applied and reverted, when it started and ended, who ran it from where.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

STEP_ACTIONS = ("apply", "revert", "fake")
SUCCESS, FAILURE, REFUSED = "success", "failure", "refused"
STARTED, INTERRUPTED = "started", "interrupted"
RUNNING = "running"


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    events: tuple[Any, ...]  # oldest first
    command: str  # run, rollback, repair, validate, backup, ...
    outcome: str  # success, failure, refused, interrupted, running
    started_at: datetime
    ended_at: datetime
    applied: tuple[str, ...]
    reverted: tuple[str, ...]
    failed: tuple[str, ...]
    who: str
    host: str
    database: str

    @property
    def duration_ms(self) -> float:
        return (self.ended_at - self.started_at).total_seconds() * 1000

    @property
    def short_id(self) -> str:
        return self.run_id[:8]


def summarize(run_id: str, events: Sequence[Any], running: bool = False) -> RunSummary | None:
    """The run ``run_id`` from its events (``None`` when it has none); ``running``: a step
    of it is journaled and someone holds the lock now."""
    if not events:
        return None
    ordered = sorted(events, key=lambda e: (e.timestamp, e.pk or 0))
    commands = [e for e in ordered if e.action not in STEP_ACTIONS]
    steps = [e for e in ordered if e.action in STEP_ACTIONS]
    if commands:
        command = commands[0].action
    else:
        command = "rollback" if any(e.action == "revert" for e in steps) else "run"
    ended = [e for e in commands if e.outcome != STARTED]
    if running:
        outcome = RUNNING
    elif ended:
        outcome = ended[-1].outcome
    elif any(e.outcome == FAILURE for e in ordered):
        outcome = FAILURE
    elif any(e.outcome in (INTERRUPTED, STARTED) for e in ordered):
        outcome = INTERRUPTED  # started and never said how it ended
    else:
        outcome = ordered[-1].outcome
    first = ordered[0]
    return RunSummary(
        run_id=run_id,
        events=tuple(ordered),
        command=command,
        outcome=outcome,
        started_at=min(_start(e) for e in ordered),
        ended_at=max(e.timestamp for e in ordered),
        applied=_versions(steps, ("apply", "fake"), SUCCESS),
        reverted=_versions(steps, ("revert",), SUCCESS),
        failed=tuple(
            dict.fromkeys(e.version for e in steps if e.outcome in (FAILURE, INTERRUPTED))
        ),
        who=first.os_user,
        host=first.host,
        database=first.database,
    )


def _start(event: Any) -> datetime:
    """When the event's work began: its time less its duration (events are written at the end)."""
    return event.timestamp - timedelta(milliseconds=event.duration_ms or 0)


def _versions(steps: Sequence[Any], actions: tuple[str, ...], outcome: str) -> tuple[str, ...]:
    return tuple(
        dict.fromkeys(e.version for e in steps if e.action in actions and e.outcome == outcome)
    )
