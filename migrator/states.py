"""The states a migration can be in, and what each one means.

One type carries every state's meaning, so that status, the planner, the system
checks, validation, the admin and the JSON schema agree without each keeping its own
list: whether the version's changes count as applied, whether it is a problem that
stops ``run`` and ``rollback``, how it is shown, and what to do about it.  Adding a
state is a change here (and in the code that gives it its new behaviour), not a hunt
through the tree; ``tests/test_states.py`` keeps the JSON schema's enum equal to it.

A history row's own ``status`` column (``RecordStatus``) is what was *written*:
``applied``, ``failed``, or ``in_progress`` (journaled before a step that cannot roll
back, see ``executor.py``).  The state is what that row *means now*, next to the file
on disk and the migration lock: an ``in_progress`` row is ``running`` while someone
holds the lock and ``interrupted`` once nobody does (the process died).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RecordStatus(StrEnum):
    """The ``status`` column of ``AppliedMigration``."""

    APPLIED = "applied"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"


@dataclass(frozen=True)
class Meaning:
    applied: bool  # its changes are in the database (rollback, out-of-order, drift count it)
    problem: bool  # `run` and `rollback` refuse while any version is in this state
    style: str  # Django's style name: SUCCESS, WARNING, ERROR, NOTICE
    summary: str  # what it means, in a few words (status legend, admin, README)
    fix: str  # what to do about it ("" when nothing is needed)


class State(StrEnum):
    """What a version is now.  A ``StrEnum``: it compares equal to its value."""

    APPLIED = "applied"
    PENDING = "pending"
    CHANGED = "changed"
    MISSING = "missing"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    RUNNING = "running"

    @property
    def meaning(self) -> Meaning:
        return _MEANINGS[self]

    @property
    def is_applied(self) -> bool:
        return self.meaning.applied

    @property
    def is_problem(self) -> bool:
        return self.meaning.problem

    @property
    def style(self) -> str:
        return self.meaning.style

    @property
    def fix(self) -> str:
        return self.meaning.fix


_MEANINGS: dict[State, Meaning] = {
    State.APPLIED: Meaning(True, False, "SUCCESS", "applied and unchanged since", ""),
    State.PENDING: Meaning(False, False, "WARNING", "not applied yet", "`tbmigrate run`"),
    State.CHANGED: Meaning(
        True,
        True,
        "ERROR",
        "the file was edited after it was applied",
        "restore the edited files (or accept them with `tbmigrate repair --checksums`)",
    ),
    State.MISSING: Meaning(
        True,
        True,
        "ERROR",
        "applied, but its script file is gone",
        "restore the missing files (or, if they were retired on purpose, forget them with "
        "`tbmigrate repair --missing`)",
    ),
    State.FAILED: Meaning(
        False,
        True,
        "ERROR",
        "a non-atomic step failed part-way",
        "clean up by hand, then `tbmigrate repair VERSION`",
    ),
    State.INTERRUPTED: Meaning(
        False,
        True,
        "ERROR",
        "a non-atomic step started and never finished (its process died or was stopped)",
        "check what it did (the audit log and `tbmigrate status` say how far it got), finish "
        "or undo it by hand, then `tbmigrate repair VERSION`; a rerun of a batched_update "
        "resumes where it stopped",
    ),
    State.RUNNING: Meaning(
        False,
        True,
        "NOTICE",
        "being applied or reverted right now by another process",
        "wait for it to finish (`tbmigrate status` shows who holds the migration lock)",
    ),
}

# Every state in the order status and the admin list them.
STATES: tuple[State, ...] = tuple(State)
PROBLEMS: tuple[State, ...] = tuple(s for s in State if s.is_problem)
