"""Pure planning: scripts + history rows -> states, and the ordered steps of a run or rollback.

Nothing here touches a database or a file, so every rule is testable in isolation and
``status``, ``validate``, ``--dry-run`` and the executor all share one answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from migrator.errors import HistoryConflict, RollbackRefused, UsageError
from migrator.history import FAILED, Record
from migrator.scripts import Script, shown
from migrator.versions import Version

APPLIED = "applied"
PENDING = "pending"
CHANGED = "changed"
MISSING = "missing"
FAILED_STATE = "failed"
STATES = (APPLIED, PENDING, CHANGED, MISSING, FAILED_STATE)


@dataclass(frozen=True)
class MigrationState:
    """A version as the planner sees it: its script, its history row, and the verdict."""

    version: Version
    state: str
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
        """Recorded as applied (whatever its file says now)."""
        return self.record is not None and self.record.status != FAILED


def states(scripts: Sequence[Script], records: Sequence[Record]) -> list[MigrationState]:
    """Merge scripts and history into one list ordered by version."""
    by_version = {script.version: script for script in scripts}
    recorded = {record.version: record for record in records}
    newest_applied = max((r.version for r in records if r.status != FAILED), default=None)
    result = []
    for version in sorted(set(by_version) | set(recorded)):
        script, record = by_version.get(version), recorded.get(version)
        out_of_order = False
        if record is None:
            state = PENDING
            out_of_order = newest_applied is not None and version < newest_applied
        elif record.status == FAILED:
            state = FAILED_STATE
        elif script is None:
            state = MISSING
        elif script.checksum != record.checksum:
            state = CHANGED
        else:
            state = APPLIED
        result.append(MigrationState(version, state, script, record, out_of_order))
    return result


def pending(all_states: Sequence[MigrationState]) -> list[MigrationState]:
    return [s for s in all_states if s.state == PENDING]


def problems(all_states: Sequence[MigrationState]) -> list[str]:
    """Why the history is not clean, one phrase per version (empty when clean)."""
    found = []
    for s in all_states:
        if s.state == CHANGED:
            assert s.script is not None
            found.append(f"{s.label} was edited after it was applied ({shown(s.script.path)})")
        elif s.state == MISSING:
            found.append(f"{s.label} is applied but its script file is gone")
        elif s.state == FAILED_STATE:
            found.append(f"{s.label} failed part-way and needs cleaning up")
    return found


def require_clean(all_states: Sequence[MigrationState], action: str) -> None:
    """Refuse to ``run``/``rollback`` while the history disagrees with the scripts."""
    found = problems(all_states)
    if not found:
        return
    fixes = []
    if any(s.state == CHANGED for s in all_states):
        fixes.append(
            "restore the edited files (or accept them with `tbmigrate repair --checksums`)"
        )
    if any(s.state == MISSING for s in all_states):
        fixes.append(
            "restore the missing files (or, if they were retired on purpose, forget them with "
            "`tbmigrate repair --missing`)"
        )
    if any(s.state == FAILED_STATE for s in all_states):
        fixes.append("clean up by hand, then `tbmigrate repair VERSION`")
    raise HistoryConflict(
        f"{action} refused: " + "; ".join(found) + ". To fix: " + "; ".join(fixes)
    )


def find_version(all_states: Sequence[MigrationState], text: str, what: str) -> Version:
    """Parse ``text`` and require that some script or history row has that version."""
    try:
        version = Version.parse(text)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None
    if not any(s.version == version for s in all_states):
        known = [str(s.version) for s in all_states]
        hint = (
            "there are no migrations yet"
            if not known
            else f"known: {known[0]}"
            + (f" to {known[-1]}, {len(known)} in all" if len(known) > 1 else "")
        )
        raise UsageError(
            f"{what}: there is no migration {version} ({hint}); see `tbmigrate status`"
        )
    return version


def plan_run(
    all_states: Sequence[MigrationState], to: str | None = None, out_of_order: bool = False
) -> list[Script]:
    """The scripts ``run`` applies, in version order, up to and including ``to``."""
    require_clean(all_states, "run")
    todo = pending(all_states)
    if to is not None:
        target = find_version(all_states, to, "--to")
        todo = [s for s in todo if s.version <= target]
    late = [s for s in todo if s.out_of_order]
    if late and not out_of_order:
        newest = max(s.version for s in all_states if s.is_applied)
        names = ", ".join(s.label for s in late)
        raise HistoryConflict(
            f"run refused: {names} is pending but the newer {newest} is already applied; "
            f"give it a version above {newest}, or apply it anyway with --out-of-order"
        )
    steps = []
    for s in todo:
        assert s.script is not None
        steps.append(s.script)
    return steps


def plan_rollback(
    all_states: Sequence[MigrationState], version: str | None = None, to: str | None = None
) -> list[MigrationState]:
    """The applied versions ``rollback`` reverts, newest first.

    - nothing given: the newest applied one (the safe default);
    - ``version``: it and every applied one newer than it;
    - ``to``: every applied one newer than ``to`` (``"0"``: all of them).
    """
    if version is not None and to is not None:
        raise UsageError("give either a VERSION or --to, not both")
    applied = [s for s in all_states if s.is_applied]
    if to is not None:
        if to.strip() == "0":
            chosen = applied
        else:
            floor = find_version(all_states, to, "--to")
            chosen = [s for s in applied if s.version > floor]
    elif version is not None:
        target = find_version(all_states, version, "rollback")
        if not any(s.version == target for s in applied):
            raise UsageError(f"rollback: {target} is not applied, so there is nothing to roll back")
        chosen = [s for s in applied if s.version >= target]
    else:
        chosen = applied[-1:]
    steps = sorted(chosen, key=lambda s: s.version, reverse=True)
    require_clean(all_states, "rollback")
    irreversible = [s.label for s in steps if s.script is not None and s.script.down is None]
    if irreversible:
        raise RollbackRefused(
            f"rollback refused: {', '.join(irreversible)} has no down() and cannot be reverted; "
            "nothing was rolled back (write a down() or roll back to a later version)"
        )
    return steps


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
            return f"{self.label}: clear the failed record (it becomes pending)"
        if self.kind == ACCEPT_CHECKSUM:
            assert self.state.script is not None
            return f"{self.label}: accept the edited {shown(self.state.script.path)}"
        return f"{self.label}: forget it (its file is gone; its changes stay in the database)"


def plan_repair(
    all_states: Sequence[MigrationState],
    version: str | None = None,
    checksums: bool = False,
    missing: bool = False,
) -> list[RepairStep]:
    """What ``repair`` changes, as Flyway's ``repair``: failed records, checksums, missing files.

    ``version`` names one failed migration (the user has cleaned up by hand);
    ``checksums`` accepts every edited applied script; ``missing`` forgets every
    applied migration whose file was deleted.
    """
    if version is None and not checksums and not missing:
        raise UsageError(
            "say what to repair: VERSION (a failed migration, after cleaning up by hand), "
            "--checksums (accept edited applied scripts) or --missing (forget deleted ones)"
        )
    steps: list[RepairStep] = []
    if version is not None:
        target = find_version(all_states, version, "repair")
        state = next(s for s in all_states if s.version == target)
        if state.state != FAILED_STATE:
            hint = {
                CHANGED: "; to accept its edited file use `tbmigrate repair --checksums`",
                MISSING: "; to forget it use `tbmigrate repair --missing`",
            }.get(state.state, "")
            raise UsageError(f"repair: {state.label} is {state.state}, not failed{hint}")
        steps.append(RepairStep(CLEAR_FAILED, state))
    if checksums:
        steps += [RepairStep(ACCEPT_CHECKSUM, s) for s in all_states if s.state == CHANGED]
    if missing:
        steps += [RepairStep(FORGET_MISSING, s) for s in all_states if s.state == MISSING]
    return steps
