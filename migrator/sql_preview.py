"""The SQL a migration step would run, before it runs: captured on a scratch replay.

Python scripts build their SQL as they go (``if db.column_exists(...)``, helpers such
as ``db.drop_column`` that rebuild a SQLite table), so the only faithful way to show
it is to run them: on a throw-away database of the same vendor
(``validation.scratch.scratch_database``), the scripts before the step are applied
with the executor ``run`` uses, then the step itself with every statement it sends
captured (``connection.execute_wrapper``), parameters included.  Only the script's
own statements are kept, not tbmigrate's history writes.  The live database is not
touched (on PostgreSQL its server hosts the scratch database).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from migrator import history, redact, targets
from migrator.errors import MigrationFailed
from migrator.executor import OWN_TABLES, Executor
from migrator.scripts import Script
from migrator.validation.scratch import scratch_database

Direction = Literal["up", "down"]


@dataclass(frozen=True)
class Captured:
    sql: str
    params: Any = None  # None: no parameters; secrets shown as ***


@dataclass
class StepSql:
    """The statements of one step, in the order they ran on the scratch database."""

    script: Script
    direction: Direction
    statements: list[Captured] = field(default_factory=list)
    error: str = ""  # the step failed on the scratch database (its statements so far)


@dataclass
class Preview:
    vendor: str
    replayed: int  # scripts applied on the scratch database before the first step
    steps: list[StepSql] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(step.error for step in self.steps)


def preview(
    alias: str, before: Sequence[Script], steps: Sequence[tuple[Script, Direction]]
) -> Preview:
    """Replay ``before`` on a scratch database like ``alias``'s, then capture ``steps``.

    A script of ``before`` that fails raises ``MigrationFailed`` (nothing can be shown
    after it); a captured step that fails ends the preview with its error recorded.
    """
    vendor = targets.vendor(alias)
    result = Preview(vendor, len(before))
    with scratch_database(alias) as scratch:
        history.ensure_schema(scratch)
        with Executor(scratch) as executor:
            for script in before:
                try:
                    executor.apply(script)
                except MigrationFailed as exc:
                    raise MigrationFailed(
                        f"cannot show the SQL: replaying the earlier migrations on a scratch "
                        f"{vendor} database failed: {exc}",
                        exc.version,
                    ) from exc
            for script, direction in steps:
                step = StepSql(script, direction)
                result.steps.append(step)
                func = script.up if direction == "up" else script.down
                assert func is not None  # callers refuse a down that does not exist
                capturing = _capturing(func, step.statements)
                wrapped = (
                    dataclasses.replace(script, up=capturing)
                    if direction == "up"
                    else dataclasses.replace(script, down=capturing)
                )
                try:
                    if direction == "up":
                        executor.apply(wrapped)
                    else:
                        executor.revert(wrapped)
                except MigrationFailed as exc:
                    step.error = str(exc)
                    break
    return result


def _capturing(func: Callable[[Any], Any], sink: list[Captured]) -> Callable[[Any], Any]:
    def run(db: Any) -> Any:
        def capture(execute, sql, params, many, context):
            # tbmigrate's own writes inside a step (a batched_update's progress in its
            # journal row) are not the script's statements, as in the audit event.
            if OWN_TABLES not in str(sql):
                sink.append(Captured(str(sql), shown_params(str(sql), params, many)))
            return execute(sql, params, many, context)

        with db.connection.execute_wrapper(capture):
            return func(db)

    return run


def shown_params(sql: str, params: Any, many: bool) -> Any:
    """Parameters as a preview shows them: plain values, secrets masked."""
    if not params:
        return None
    if many:
        return f"<{len(list(params))} parameter sets>"
    if redact.looks_secret(sql):
        return ["***" for _ in params] if isinstance(params, list | tuple) else "***"
    if isinstance(params, list | tuple):
        return [
            p if isinstance(p, int | float | str | bool | type(None)) else str(p) for p in params
        ]
    return str(params)


def render(preview_: Preview, title: str, database: str) -> str:
    """The preview as an SQL file: a comment header, then one commented block per step."""
    from migrator.scripts import shown

    lines = [
        f"-- {title}",
        f"-- Captured on a scratch {preview_.vendor} database after replaying "
        f"{preview_.replayed} earlier migration(s); nothing ran on {database}.",
        "-- Parameters, where a statement has them, follow it as a comment.",
    ]
    if not preview_.steps:
        lines += ["", "-- Nothing to run."]
    for step in preview_.steps:
        script = step.script
        verb = "apply" if step.direction == "up" else "revert"
        how = (
            "in one transaction, with its history row"
            if script.atomic
            else "without a transaction (atomic = false): each statement commits on its own"
        )
        lines += [
            "",
            f"-- ==== {script.version} {script.name} ({verb}) " + "=" * 20,
            f"-- {script.description}" if script.description else "--",
            f"-- file: {shown(script.path)} ({script.kind})",
            f"-- runs {how}",
        ]
        if not step.statements and not step.error:
            lines.append("-- (no statements)")
        for statement in step.statements:
            text = statement.sql.rstrip()
            lines.append(text if text.endswith(";") else text + ";")
            if statement.params is not None:
                lines.append(f"-- parameters: {statement.params!r}")
        if step.error:
            lines.append(f"-- FAILED on the scratch database: {redact.scrub(step.error)}")
    return "\n".join(lines) + "\n"
