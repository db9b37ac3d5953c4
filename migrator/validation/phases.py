"""Expand and contract: a drop or rename in the same run as the step that made its replacement.

Changing a table under a running application takes two deploys of the schema: the
*expand* steps add the new (a column ``amount_cents``, a table ``orders_v2``) while
the old stays, the application is deployed to use the new, and only then the
*contract* steps drop or rename the old.  A run that applies both at once drops what
the application still running reads: its queries fail from that moment until it is
deployed.  ``run --phase expand`` stops before the first ``phase = "contract"``
script; this check, part of ``validate migration``, finds the runs that would still
do both: a step dropping or renaming a table or column that existed before the run,
after (or in) a step of the same run that added a column to that table or created a
table.

What each step changed comes from the rehearsal on a scratch database
(``rehearsal.py`` with ``track=True``: the schema before and after each step, read
from the catalogs), so a SQLite table rebuild by ``db.drop_column`` is a dropped
column, and a rename (a table or column gone and one of the same shape new) is a
rename, on both databases.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass

from migrator.scripts import Script
from migrator.validation.base import CheckResult, passed, warned
from migrator.validation.introspect import Schema, renames
from migrator.validation.rehearsal import Rehearsal

_CONTRACT_WORDS = re.compile(r"drop|rename", re.IGNORECASE)


def worth_checking(steps: Sequence[Script]) -> bool:
    """Whether a rehearsal could find anything: the ``up`` of some step says drop or
    rename (its SQL, or ``db.drop_column`` & co.; a ``down`` always does, so it is left
    out)."""
    return any(_CONTRACT_WORDS.search(_up_text(script)) for script in steps)


def _up_text(script: Script) -> str:
    """The text of ``script``'s up: an SQL migration's up sections; a Python script's
    module without its ``down`` function (helpers the up calls stay in)."""
    sections = getattr(script.up, "sections", None)
    if script.kind == "sql" and isinstance(sections, dict):
        return "\n".join(section.sql for section in sections.values())
    text = script.source.decode("utf-8", "replace")
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text
    lines = text.splitlines()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "down" and node.end_lineno:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            lines[start - 1 : node.end_lineno] = []
            break
    return "\n".join(lines)


@dataclass(frozen=True)
class _Added:
    step: str
    what: str  # "column fills.amount_cents", "table orders_v2"


def check(rehearsal: Rehearsal | None, unseen: str = "") -> CheckResult:
    """``expand_contract``: WARN for each drop or rename that has its replacement made in
    the same run; PASS otherwise."""
    if rehearsal is None:
        if unseen:
            return warned(
                "expand_contract",
                f"not checked: the steps could not be rehearsed on a scratch database ({unseen})",
            )
        return passed("expand_contract", "no step of the run drops or renames anything")
    findings: list[str] = []
    details: list[dict[str, str]] = []
    initial: Schema | None = None
    tables_made: list[_Added] = []
    columns_made: dict[str, list[_Added]] = {}
    for step in rehearsal.steps:
        if step.before is None or step.after is None:
            continue
        if initial is None:
            initial = step.before
        before, after = step.before, step.after
        label = step.script.label
        moved = renames(before, after)
        renamed_tables = {r.old: r.new for r in moved if r.kind == "table"}
        renamed_columns = {(r.table, r.old): r.new for r in moved if r.kind == "column"}
        new_tables = sorted(after.tables - before.tables - set(renamed_tables.values()))
        step_tables = [_Added(label, f"table {t}") for t in new_tables]
        step_columns: dict[str, list[_Added]] = {}
        for table in sorted(after.tables & before.tables):
            added = set(after.columns(table)) - set(before.columns(table))
            added -= {new for (t, _), new in renamed_columns.items() if t == table}
            for column in sorted(added):
                step_columns.setdefault(table, []).append(_Added(label, f"column {table}.{column}"))
        contracts: list[tuple[str, str, list[_Added]]] = []  # (what, verb, replacements)
        for table in sorted(before.tables - after.tables):
            if table not in initial.tables:
                continue  # made by this run: the running application never used it
            verb = (
                f"renames table {table} to {renamed_tables[table]}"
                if table in renamed_tables
                else f"drops table {table}"
            )
            contracts.append((table, verb, tables_made + step_tables))
        for table in sorted(before.tables & after.tables):
            for column in sorted(set(before.columns(table)) - set(after.columns(table))):
                if table not in initial.tables or column not in initial.columns(table):
                    continue
                new = renamed_columns.get((table, column))
                verb = (
                    f"renames column {table}.{column} to {new}"
                    if new
                    else f"drops column {table}.{column}"
                )
                made = columns_made.get(table, []) + step_columns.get(table, [])
                contracts.append((f"{table}.{column}", verb, made + tables_made + step_tables))
        for what, verb, replacements in contracts:
            if not replacements:
                continue
            first = replacements[0]
            where = (
                f"in the very step that makes {first.what}"
                if first.step == label
                else f"after {first.step}, which made {first.what}, in the same run"
            )
            when = (
                "it is marked contract, but the run applies the expand steps before it too: "
                "run `tbmigrate run --phase expand`, deploy the application, then "
                "`tbmigrate run`"
                if step.script.phase == "contract"
                else f'mark {label} phase = "contract" (SQL: -- tbmigrate: phase=contract) and '
                "run `tbmigrate run --phase expand`, deploy the application, then "
                "`tbmigrate run`"
            )
            findings.append(
                f"{label} {verb} {where}: the "
                f"application still running uses {what} until it is deployed; {when}"
            )
            details.append(
                {
                    "step": label,
                    "contract": verb,
                    "expand_step": first.step,
                    "replacement": first.what,
                }
            )
        tables_made += step_tables
        for table, added_columns in step_columns.items():
            columns_made.setdefault(table, []).extend(added_columns)
    if not findings:
        return passed(
            "expand_contract",
            "no step of the run drops or renames what an earlier step of it replaced",
        )
    return warned(
        "expand_contract",
        "; ".join(findings) + (f" ({len(findings)} in all)" if len(findings) > 1 else ""),
        details,
    )
