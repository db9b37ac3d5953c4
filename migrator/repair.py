"""``tbmigrate repair``: put the history right after a human has fixed things by hand.

Like Flyway's ``repair``, it changes tbmigrate's records, never the schema:

- a ``failed`` non-atomic migration (the user has cleaned up what it left) is cleared,
  so it is pending again and the next ``run`` applies it from the start;
- an applied script edited since (``changed``) gets its stored checksum replaced by
  the file's, when the edit is known to be harmless (a comment, a fixed ``down()``);
- an applied migration whose file is gone (``missing``) is forgotten, for a script
  deliberately retired: its changes stay in the database, and the audit event keeps
  its whole record (name, checksum, when and by whom it was applied).

Every change and its audit event (action ``repair``) are one transaction, made under
the migration lock by ``MigrationSystem.repair``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from migrator import history, planner
from migrator.errors import HistoryConflict
from migrator.planner import RepairStep


@dataclass(frozen=True)
class Repaired:
    kind: str
    version: str
    name: str
    summary: str


def apply(alias: str, steps: Sequence[RepairStep]) -> list[Repaired]:
    """Make every change of ``steps`` and audit each, all or nothing."""
    done = []
    with transaction.atomic(using=alias):
        for step in steps:
            state, record = step.state, step.state.record
            assert record is not None
            details: dict[str, object] = {"repair": step.kind, "was": _record(record)}
            if step.kind == planner.CLEAR_FAILED:
                changed = history.clear_failed(alias, state.version)
            elif step.kind == planner.ACCEPT_CHECKSUM:
                assert state.script is not None
                changed = history.accept_checksum(
                    alias, state.version, record.checksum, state.script.checksum
                )
                details["checksum"] = {"old": record.checksum, "new": state.script.checksum}
                details["file"] = str(state.script.path)
            else:
                changed = history.forget_applied(alias, state.version)
            if changed != 1:
                raise HistoryConflict(
                    f"repair refused: the record of {step.label} changed while repairing "
                    "(another run?); nothing was repaired, see `tbmigrate status`"
                )
            history.audit(
                alias,
                "repair",
                history.SUCCESS,
                version=state.version,
                name=state.name,
                details=details,
            )
            done.append(Repaired(step.kind, str(state.version), state.name, step.summary))
    return done


def _record(record: history.Record) -> dict[str, object]:
    return {
        "name": record.name,
        "status": record.status,
        "checksum": record.checksum,
        "applied_at": record.applied_at.isoformat() if record.applied_at else None,
        "applied_by": record.applied_by,
        "host": record.host,
        "error": record.error,
        "direction": record.direction,
        "started_at": record.started_at.isoformat() if record.started_at else None,
        "pid": record.pid,
        "progress": record.progress or {},
    }
