"""``validate scripts``: does every ``down`` undo its ``up`` exactly?  (No live database touched.)

On a scratch database of each vendor (the one of ``--database``, and SQLite, which
needs no server and which every script must support), all scripts are applied with
the executor, the schema is introspected after each, and then, newest first, each
script makes the round trip::

    down  -> schema must equal the one before its up
    up    -> schema must equal the one after its up   (a down that leaves an object
    down     behind usually makes this up fail: "already exists")

A broken ``down`` is found on every commit in CI instead of during an incident.

Two details keep the reports precise.  Whatever a broken ``down`` left behind is
remembered (``residue``) and not blamed again on the older scripts.  And when the
chain cannot go on (a ``down`` that raises, or none at all), a fresh scratch database
is built up to the script below and the walk continues there, so one bad script does
not hide the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import connections

from migrator import targets
from migrator.errors import DatabaseUnavailable, MigrationFailed
from migrator.executor import Executor
from migrator.scripts import Script
from migrator.validation import common
from migrator.validation.base import CheckResult, Report, failed, passed, warned
from migrator.validation.introspect import Difference, compare, describe_object, introspect
from migrator.validation.scratch import replay, scratch_database


def validate_scripts(alias: str, scripts_dir: Path) -> Report:
    report = Report("scripts", targets.describe(alias), targets.vendor(alias))
    loaded = common.load_each(scripts_dir)
    report.add(common.scripts_check(loaded))
    if loaded.problems:
        return report
    one_way = [s for s in loaded.scripts if s.down is None]
    if one_way:
        report.add(
            warned(
                "reversible",
                f"{len(one_way)} irreversible script(s) (no down()): {common.labels(one_way)}; "
                "rollback refuses to go past them",
                [s.label for s in one_way],
            )
        )
    elif loaded.scripts:
        report.add(
            passed("reversible", f"every one of the {len(loaded.scripts)} script(s) has a down()")
        )
    for vendor in vendors(alias):
        report.add(roundtrip(alias, vendor, loaded.scripts))
    return report


def vendors(alias: str) -> list[str]:
    """The vendor of ``alias`` first, then SQLite if it is not that one already."""
    own = targets.vendor(alias)
    return [own] + (["sqlite"] if own != "sqlite" else [])


def roundtrip(server_alias: str, vendor: str, all_scripts: list[Script]) -> list[CheckResult]:
    name = f"roundtrip[{vendor}]"
    if not all_scripts:
        return [passed(name, "no scripts to check")]
    if vendor == "postgresql":
        try:
            targets.connect(server_alias)
        except DatabaseUnavailable as exc:
            return [failed(name, f"cannot reach the server for a scratch database: {exc}")]
    results: list[CheckResult] = []
    clean: list[str] = []
    upper = len(all_scripts)
    while upper > 0:
        try:
            with scratch_database(server_alias, vendor) as scratch:
                upper, found, ok = _walk(scratch, all_scripts[:upper])
        except DatabaseUnavailable as exc:
            return [*results, failed(name, f"not checked: {exc}")]
        except MigrationFailed as exc:
            return [
                *results,
                failed(name, f"the scripts do not build an empty database: {exc}"),
            ]
        results.extend(failed(name, message, details) for message, details in found)
        clean.extend(ok)
    if clean:
        results.append(
            passed(
                name,
                f"{len(clean)} script(s) round-trip cleanly (down restores the schema, up runs "
                "again)",
                sorted(clean),
            )
        )
    return results


def _walk(
    alias: str, scripts: list[Script]
) -> tuple[int, list[tuple[str, dict[str, Any]]], list[str]]:
    """Apply ``scripts``, then round-trip them newest first.

    Returns where the walk had to stop (the number of scripts below the one it could
    not get past; 0 when it reached the bottom), the findings, and the clean labels.
    """
    snapshots = [schema for _label, schema in replay(alias, scripts)]
    connection = connections[alias]
    executor = Executor(alias)
    residue: set[tuple[Any, ...]] = set()
    found: list[tuple[str, dict[str, Any]]] = []
    clean: list[str] = []

    def differences(expected_index: int) -> list[Difference]:
        new = [
            d
            for d in compare(snapshots[expected_index], introspect(connection))
            if d.identity not in residue
        ]
        residue.update(d.identity for d in new)
        return new

    try:
        for index in range(len(scripts) - 1, -1, -1):
            script = scripts[index]
            if script.down is None:
                return index, found, clean  # listed as irreversible; continue below it
            try:
                executor.revert(script)
            except MigrationFailed as exc:
                found.append(
                    (f"{script.label}: down fails: {_cause(exc)}", {"script": script.label})
                )
                return index, found, clean
            after_down = differences(index)
            if after_down:
                found.append(
                    (
                        f"{script.label}: down does not restore the schema: "
                        + "; ".join(_phrase(d) for d in after_down),
                        {"script": script.label, "differences": [d.as_dict() for d in after_down]},
                    )
                )
            try:
                executor.apply(script)
            except MigrationFailed as exc:
                found.append(
                    (
                        f"{script.label}: up fails after its down: {_cause(exc)}"
                        + (" (left behind by the down above)" if after_down else ""),
                        {"script": script.label},
                    )
                )
                continue  # the database is as the down left it: go on with the next one down
            after_up = differences(index + 1)
            if after_up:
                found.append(
                    (
                        f"{script.label}: up after down gives a different schema: "
                        + "; ".join(_phrase(d) for d in after_up),
                        {"script": script.label, "differences": [d.as_dict() for d in after_up]},
                    )
                )
            try:
                executor.revert(script)
            except MigrationFailed as exc:
                found.append(
                    (
                        f"{script.label}: down fails the second time: {_cause(exc)}",
                        {"script": script.label},
                    )
                )
                return index, found, clean
            if not after_down and not after_up:
                clean.append(script.label)
        return 0, found, clean
    finally:
        executor.close()  # foreign keys back on, timeouts reset


def _phrase(d: Difference) -> str:
    what = describe_object(d.key, d.expected or d.actual or {})
    if d.change == "extra":
        return f"{what} is left behind"
    if d.change == "missing":
        return f"{what} is gone"
    return d.describe()


def _cause(exc: MigrationFailed) -> str:
    step = exc.step
    error = getattr(step, "error", "") or str(exc)
    return str(error)
