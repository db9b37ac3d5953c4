"""Pure planning: scripts + history rows -> states, and the ordered steps of a run or rollback.

Nothing here touches a database or a file, and nothing here raises: a plan is a value
(``Plan``: its steps, their direction, and the reasons it may not be carried out),
so ``status``, every validation, ``--dry-run``, the system checks, the admin and the
executor all read the same answer, and ``api`` alone turns a refusal into an error.
``tests/test_planner.py`` exercises every rule without a database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from migrator.errors import HistoryConflict, MigratorError, RollbackRefused, UsageError
from migrator.history import Record
from migrator.scripts import Script, shown
from migrator.states import STATES, RecordStatus, State
from migrator.versions import Version

# Kept for callers written before the state type: each is the State member itself.
APPLIED, PENDING, CHANGED, MISSING = State.APPLIED, State.PENDING, State.CHANGED, State.MISSING
FAILED_STATE, INTERRUPTED, RUNNING = State.FAILED, State.INTERRUPTED, State.RUNNING
__all__ = ["STATES", "MigrationState", "Plan", "Refusal", "State"]

Direction = Literal["up", "down"]


@dataclass(frozen=True)
class MigrationState:
    """A version as the planner sees it: its script, its history row, and the verdict."""

    version: Version
    state: State
    script: Script | None
    record: Record | None
    out_of_order: bool = False

    @property
    def name(self) -> str:
        return self.script.name if self.script else self.record.name if self.record else ""

    @property
    def label(self) -> str:
        return f"{self.version} {self.name}"

    @property
    def is_applied(self) -> bool:
        """Its changes are recorded as being in the database (whatever its file says now)."""
        return self.state.is_applied


def states(
    scripts: Sequence[Script], records: Sequence[Record], *, running: bool = False
) -> list[MigrationState]:
    """Merge scripts and history into one list ordered by version.

    ``running``: another process holds the migration lock now, so a journaled step
    (``in_progress``) is being carried out rather than interrupted.
    """
    by_version = {script.version: script for script in scripts}
    recorded = {record.version: record for record in records}
    newest_applied = max(
        (r.version for r in records if r.status == RecordStatus.APPLIED), default=None
    )
    result = []
    for version in sorted(set(by_version) | set(recorded)):
        script, record = by_version.get(version), recorded.get(version)
        out_of_order = False
        if record is None:
            state = State.PENDING
            out_of_order = newest_applied is not None and version < newest_applied
        elif record.status == RecordStatus.IN_PROGRESS:
            state = State.RUNNING if running else State.INTERRUPTED
        elif record.status == RecordStatus.FAILED:
            state = State.FAILED
        elif script is None:
            state = State.MISSING
        elif script.checksum != record.checksum:
            state = State.CHANGED
        else:
            state = State.APPLIED
        result.append(MigrationState(version, state, script, record, out_of_order))
    return result


def pending(all_states: Sequence[MigrationState]) -> list[MigrationState]:
    return [s for s in all_states if s.state == State.PENDING]


def describe_problem(s: MigrationState) -> str:
    """One phrase saying why ``s`` stops ``run`` and ``rollback`` (``""`` if it does not)."""
    if s.state == State.CHANGED:
        where = f" ({shown(s.script.path)})" if s.script else ""
        return f"{s.label} was edited after it was applied{where}"
    if s.state == State.MISSING:
        return f"{s.label} is applied but its script file is gone"
    if s.state == State.FAILED:
        return f"{s.label} failed part-way and needs cleaning up"
    if s.state in (State.INTERRUPTED, State.RUNNING):
        record = s.record
        assert record is not None
        verb = "reverting" if record.direction == "down" else "applying"
        facts = [f"started {_utc(record)}"] if record.started_at else []
        who = record.applied_by + (f" on {record.host}" if record.host else "")
        if who:
            facts.append(f"by {who}")
        if record.pid:
            facts.append(f"pid {record.pid}")
        got = progress_phrase(record.progress)
        if got:
            facts.append(got)
        detail = f" ({', '.join(facts)})" if facts else ""
        if s.state == State.RUNNING:
            done = "reverted" if record.direction == "down" else "applied"
            return f"{s.label} is being {done} right now{detail}"
        return f"{s.label} was interrupted while {verb}{detail} and needs checking"
    return ""


def progress_phrase(progress: dict | None) -> str:
    """``"batched_update of fills: 120,000 rows done, last key 120000"`` (or ``""``)."""
    if not progress:
        return ""
    parts = []
    for item in progress.get("updates", [progress]) if isinstance(progress, dict) else []:
        if not isinstance(item, dict) or "table" not in item:
            continue
        text = f"batched_update of {item['table']}: {int(item.get('rows_done', 0)):,} rows done"
        if item.get("last_key") is not None:
            text += f", last key {item['last_key']}"
        parts.append(text)
    return "; ".join(parts)


def problems(all_states: Sequence[MigrationState]) -> list[str]:
    """Why the history is not clean, one phrase per version (empty when clean)."""
    return [describe_problem(s) for s in all_states if s.state.is_problem]


def fixes(all_states: Sequence[MigrationState]) -> list[str]:
    """What to do about the problems, once per kind of problem, in the state type's order."""
    present = {s.state for s in all_states if s.state.is_problem}
    return [state.fix for state in STATES if state in present]


# -- plans -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Refusal:
    """Why a plan may not be carried out, as the error ``api`` raises for it."""

    kind: Literal["usage", "history", "irreversible"]
    message: str

    def error(self) -> MigratorError:
        if self.kind == "usage":
            return UsageError(self.message)
        if self.kind == "irreversible":
            return RollbackRefused(self.message)
        return HistoryConflict(self.message)


@dataclass(frozen=True)
class Plan:
    """The steps of a ``run`` (oldest first) or ``rollback`` (newest first), or why not."""

    direction: Direction
    steps: tuple[MigrationState, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    target: str | None = None  # where the database lands: the version, "0" (none), or None

    @property
    def ok(self) -> bool:
        return not self.refusals

    @property
    def scripts(self) -> list[Script]:
        return [s.script for s in self.steps if s.script is not None]

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.steps]

    def refusal(self) -> MigratorError | None:
        """The error of the first refusal (the one a user must fix first), or None."""
        return self.refusals[0].error() if self.refusals else None


@dataclass
class _Refusals:
    found: list[Refusal] = field(default_factory=list)

    def add(self, kind: Literal["usage", "history", "irreversible"], message: str) -> None:
        self.found.append(Refusal(kind, message))


def history_refusal(all_states: Sequence[MigrationState], action: str) -> Refusal | None:
    """The refusal of ``run``/``rollback`` while the history disagrees with the scripts."""
    found = problems(all_states)
    if not found:
        return None
    return Refusal(
        "history",
        f"{action} refused: " + "; ".join(found) + ". To fix: " + "; ".join(fixes(all_states)),
    )


def require_clean(all_states: Sequence[MigrationState], action: str) -> None:
    """Raise the history refusal, if any (for callers that want an exception)."""
    refusal = history_refusal(all_states, action)
    if refusal is not None:
        raise refusal.error()


def find_version(
    all_states: Sequence[MigrationState], text: str, what: str
) -> tuple[Version | None, str]:
    """Parse ``text`` and find it among the versions: ``(version, "")`` or ``(None, why)``."""
    try:
        version = Version.parse(text)
    except ValueError as exc:
        return None, f"{what}: {exc}"
    if not any(s.version == version for s in all_states):
        known = [str(s.version) for s in all_states]
        hint = (
            "there are no migrations yet"
            if not known
            else f"known: {known[0]}"
            + (f" to {known[-1]}, {len(known)} in all" if len(known) > 1 else "")
        )
        return None, f"{what}: there is no migration {version} ({hint}); see `tbmigrate status`"
    return version, ""


def plan_run(
    all_states: Sequence[MigrationState],
    to: str | None = None,
    out_of_order: bool = False,
    phase: str | None = None,
) -> Plan:
    """What ``run`` applies, in version order, up to and including ``to``.

    ``phase`` (``"expand"``): only the scripts of that phase, stopping before the first
    script of another phase (``run --phase expand`` stops before the contract steps).
    """
    refused = _Refusals()
    clean = history_refusal(all_states, "run")
    if clean is not None:
        refused.found.append(clean)
    todo = pending(all_states)
    target: Version | None = None
    if to is not None:
        target, why = find_version(all_states, to, "--to")
        if target is None:
            refused.add("usage", why)
            return Plan("up", (), tuple(refused.found), to)
        todo = [s for s in todo if s.version <= target]
    late = [s for s in todo if s.out_of_order]
    if late and not out_of_order:
        newest = max(s.version for s in all_states if s.is_applied)
        names = ", ".join(s.label for s in late)
        refused.add(
            "history",
            f"run refused: {names} is pending but the newer {newest} is already applied; "
            f"give it a version above {newest}, or apply it anyway with --out-of-order",
        )
    if phase is not None:
        kept = []
        for s in todo:
            if s.script is not None and s.script.phase != phase:
                break
            kept.append(s)
        todo = kept
    steps = tuple(s for s in todo if s.script is not None)
    landing = str(steps[-1].version) if steps else None
    return Plan("up", steps, tuple(refused.found), landing)


def plan_rollback(
    all_states: Sequence[MigrationState], version: str | None = None, to: str | None = None
) -> Plan:
    """The applied versions ``rollback`` reverts, newest first.

    - nothing given: the newest applied one (the safe default);
    - ``version``: it and every applied one newer than it;
    - ``to``: every applied one newer than ``to`` (``"0"``: all of them).

    ``Plan.target`` is where the database lands: the newest applied version left, or "0".
    """
    refused = _Refusals()
    if version is not None and to is not None:
        refused.add("usage", "give either a VERSION or --to, not both")
        return Plan("down", (), tuple(refused.found))
    applied = [s for s in all_states if s.is_applied]
    if to is not None:
        if to.strip() == "0":
            chosen = applied
        else:
            floor, why = find_version(all_states, to, "--to")
            if floor is None:
                refused.add("usage", why)
                return Plan("down", (), tuple(refused.found))
            chosen = [s for s in applied if s.version > floor]
    elif version is not None:
        found, why = find_version(all_states, version, "rollback")
        if found is None:
            refused.add("usage", why)
            return Plan("down", (), tuple(refused.found))
        if not any(s.version == found for s in applied):
            state = next(s for s in all_states if s.version == found)
            hint = (
                f" (it is {state.state}: {state.state.fix})"
                if state.state.is_problem and state.state.fix
                else ""
            )
            refused.add(
                "usage",
                f"rollback: {found} is not applied, so there is nothing to roll back{hint}",
            )
            return Plan("down", (), tuple(refused.found))
        chosen = [s for s in applied if s.version >= found]
    else:
        chosen = applied[-1:]
    steps = tuple(sorted(chosen, key=lambda s: s.version, reverse=True))
    clean = history_refusal(all_states, "rollback")
    if clean is not None:
        refused.found.append(clean)
    irreversible = [s.label for s in steps if s.script is not None and s.script.down is None]
    if irreversible:
        refused.add(
            "irreversible",
            f"rollback refused: {', '.join(irreversible)} has no down() and cannot be reverted; "
            "nothing was rolled back (write a down() or roll back to a later version)",
        )
    reverted = {s.version for s in steps}
    left = [s.version for s in applied if s.version not in reverted]
    return Plan("down", steps, tuple(refused.found), str(max(left)) if left else "0")


# -- repair ----------------------------------------------------------------------------
CLEAR_FAILED = "clear-failed"
ACCEPT_CHECKSUM = "accept-checksum"
FORGET_MISSING = "forget-missing"


@dataclass(frozen=True)
class RepairStep:
    """One change ``repair`` makes to the history (never to the schema)."""

    kind: str  # CLEAR_FAILED | ACCEPT_CHECKSUM | FORGET_MISSING
    state: MigrationState

    @property
    def label(self) -> str:
        return self.state.label

    @property
    def summary(self) -> str:
        if self.kind == CLEAR_FAILED:
            what = "interrupted" if self.state.state == State.INTERRUPTED else "failed"
            return f"{self.label}: clear the {what} record (it becomes pending)"
        if self.kind == ACCEPT_CHECKSUM:
            assert self.state.script is not None
            return f"{self.label}: accept the edited {shown(self.state.script.path)}"
        return f"{self.label}: forget it (its file is gone; its changes stay in the database)"


@dataclass(frozen=True)
class RepairPlan:
    steps: tuple[RepairStep, ...] = ()
    refusals: tuple[Refusal, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.refusals

    def refusal(self) -> MigratorError | None:
        return self.refusals[0].error() if self.refusals else None


def plan_repair(
    all_states: Sequence[MigrationState],
    version: str | None = None,
    checksums: bool = False,
    missing: bool = False,
) -> RepairPlan:
    """What ``repair`` changes, as Flyway's ``repair``: failed records, checksums, missing files.

    ``version`` names one failed or interrupted migration (the user has cleaned up by
    hand); ``checksums`` accepts every edited applied script; ``missing`` forgets every
    applied migration whose file was deleted.
    """
    if version is None and not checksums and not missing:
        return RepairPlan(
            refusals=(
                Refusal(
                    "usage",
                    "say what to repair: VERSION (a failed or interrupted migration, after "
                    "cleaning up by hand), --checksums (accept edited applied scripts) or "
                    "--missing (forget deleted ones)",
                ),
            )
        )
    steps: list[RepairStep] = []
    if version is not None:
        target, why = find_version(all_states, version, "repair")
        if target is None:
            return RepairPlan(refusals=(Refusal("usage", why),))
        state = next(s for s in all_states if s.version == target)
        if state.state == State.RUNNING:
            return RepairPlan(
                refusals=(
                    Refusal(
                        "history",
                        f"repair: {describe_problem(state)}; wait for it to finish",
                    ),
                )
            )
        if state.state not in (State.FAILED, State.INTERRUPTED):
            hint = {
                State.CHANGED: "; to accept its edited file use `tbmigrate repair --checksums`",
                State.MISSING: "; to forget it use `tbmigrate repair --missing`",
            }.get(state.state, "")
            return RepairPlan(
                refusals=(
                    Refusal(
                        "usage",
                        f"repair: {state.label} is {state.state}, not failed or interrupted{hint}",
                    ),
                )
            )
        steps.append(RepairStep(CLEAR_FAILED, state))
    if checksums:
        steps += [RepairStep(ACCEPT_CHECKSUM, s) for s in all_states if s.state == State.CHANGED]
    if missing:
        steps += [RepairStep(FORGET_MISSING, s) for s in all_states if s.state == State.MISSING]
    return RepairPlan(tuple(steps))


def _utc(record: Record) -> str:
    started = record.started_at
    return started.strftime("%Y-%m-%d %H:%M:%S UTC") if started else ""
