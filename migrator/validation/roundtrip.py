"""``validate scripts``: does every ``down`` undo its ``up`` exactly?  (No live database touched.)

On a scratch database of each vendor the project uses (``VALIDATE_VENDORS``; by
default the vendor of ``--database`` and of every configured database), the scripts
are applied in order with the executor, and each one makes a round trip as it comes::

    schema S  -> up   -> schema A     (what the up builds)
              -> down -> must be S    (the whole schema: tables, columns, indexes,
                                       constraints, views, triggers, functions, sequences...)
              -> up   -> must be A    (and it must run again)

and the walk goes on from A with the next script: three steps per script, and after
each a ``Tracker`` reads only what that step changed, so the cost is that of running
the history three times plus one reading of the schema.  Comparing the whole schema
(not just "the up ran again") is what finds a ``down`` that forgets a trigger, a
function or a sequence behind an idempotent ``up`` (``IF NOT EXISTS``, ``OR REPLACE``).

When the walk cannot go on from where a script left the database (its ``down``
raised part-way in a non-atomic script, or its ``up`` did not run again), a fresh
scratch database is built up to that script and the walk continues there, so one bad
script does not hide the others.  A broken ``down`` is found on every commit in CI
instead of during an incident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import connections

from migrator import conf, history, targets
from migrator.errors import ConfigurationError, DatabaseUnavailable, MigrationFailed
from migrator.executor import Executor
from migrator.scripts import Script
from migrator.validation import common
from migrator.validation.base import CheckResult, Report, failed, passed, warned
from migrator.validation.introspect import Difference, Objects, Schema, compare, describe_object
from migrator.validation.scratch import PREFIX, drops_in_background, scratch_database
from migrator.validation.tracker import Tracker

_ENGINES = {"sqlite3": "sqlite", "postgresql": "postgresql", "postgis": "postgresql"}


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
    with drops_in_background():  # a PostgreSQL scratch database goes while SQLite walks
        for vendor in vendors(alias):
            report.add(roundtrip(server_for(alias, vendor), vendor, loaded.scripts))
    return report


def _vendor_of(config: dict[str, Any]) -> str | None:
    engine = str(config.get("ENGINE") or "").rsplit(".", 1)[-1]
    return _ENGINES.get(engine)


def _configured() -> list[tuple[str, str]]:
    """``(alias, vendor)`` of every configured database (not tbmigrate's scratch ones)."""
    found = []
    for name, config in connections.settings.items():
        vendor = _vendor_of(config)
        if vendor and not name.startswith(PREFIX):
            found.append((name, vendor))
    return found


def vendors(alias: str) -> list[str]:
    """The vendors to replay on: ``VALIDATE_VENDORS``, or by default the vendor of
    ``alias`` first, then those of the other configured databases."""
    own = targets.vendor(alias)
    setting = conf.get("VALIDATE_VENDORS")
    if setting is None:
        found = [own]
        for _name, vendor in _configured():
            if vendor not in found:
                found.append(vendor)
        return found
    chosen = [setting] if isinstance(setting, str) else list(setting)
    unknown = [v for v in chosen if v not in targets.VENDORS]
    if unknown or not chosen:
        raise ConfigurationError(
            f"TBMIGRATE_VALIDATE_VENDORS is {setting!r}: give a list of "
            + " and/or ".join(f'"{v}"' for v in sorted(targets.VENDORS))
            + " (or None for the vendors of the configured databases)"
        )
    return sorted(dict.fromkeys(chosen), key=lambda v: (v != own, v))


def server_for(alias: str, vendor: str) -> str | None:
    """Where a scratch database of ``vendor`` is made: ``alias`` itself when it is of
    that vendor, else the first configured database of it (SQLite needs none)."""
    if vendor == "sqlite" or targets.vendor(alias) == vendor:
        return alias
    return next((name for name, v in _configured() if v == vendor), None)


def roundtrip(
    server_alias: str | None, vendor: str, all_scripts: list[Script]
) -> list[CheckResult]:
    name = f"roundtrip[{vendor}]"
    if not all_scripts:
        return [passed(name, "no scripts to check")]
    if server_alias is None:
        return [
            failed(
                name,
                f"no {vendor} database is configured to make a scratch database on; configure "
                "one, or leave it out of TBMIGRATE_VALIDATE_VENDORS",
            )
        ]
    if vendor == "postgresql":
        try:
            targets.connect(server_alias)
        except DatabaseUnavailable as exc:
            return [failed(name, f"cannot reach the server for a scratch database: {exc}")]
    results: list[CheckResult] = []
    clean: list[str] = []
    start = 0
    while start < len(all_scripts):
        try:
            with scratch_database(server_alias, vendor) as scratch:
                start, found, ok, broken = _walk(scratch, all_scripts, start)
        except DatabaseUnavailable as exc:
            return [*results, failed(name, f"not checked: {exc}")]
        results.extend(failed(name, message, details) for message, details in found)
        clean.extend(ok)
        if broken is not None:
            results.append(failed(name, f"the scripts do not build an empty database: {broken}"))
            break
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
    alias: str, scripts: list[Script], start: int
) -> tuple[int, list[tuple[str, dict[str, Any]]], list[str], str | None]:
    """Build ``scripts[:start]``, then round-trip each script from ``start`` on.

    Returns where the next walk must start (``len(scripts)`` when this one reached the
    end), the findings, the labels of the scripts that round-tripped cleanly, and why
    the scripts do not build a database when an ``up`` fails the first time it runs
    (then the walk stops there).
    """
    history.ensure_schema(alias)
    tracker = Tracker(connections[alias])
    found: list[tuple[str, dict[str, Any]]] = []
    clean: list[str] = []
    with Executor(alias) as executor:
        try:
            for script in scripts[:start]:
                with tracker.step():
                    executor.apply(script)
        except MigrationFailed as exc:
            return len(scripts), found, clean, str(exc)
        for index in range(start, len(scripts)):
            script = scripts[index]
            before = dict(tracker.objects)
            try:
                with tracker.step() as by_up:
                    executor.apply(script)
            except MigrationFailed as exc:
                return len(scripts), found, clean, str(exc)
            after = dict(tracker.objects)
            if script.down is None:
                continue  # listed as irreversible
            try:
                with tracker.step() as by_down:
                    executor.revert(script)
            except MigrationFailed as exc:
                found.append(
                    (f"{script.label}: down fails: {_cause(exc)}", {"script": script.label})
                )
                if tracker.objects != after:  # a non-atomic down stopped part-way
                    return index + 1, found, clean, None
                continue
            touched = set(by_up) | set(by_down)
            after_down = _differences(before, tracker.objects, touched)
            if after_down:
                found.append(
                    (
                        f"{script.label}: down does not restore the schema: "
                        + "; ".join(_phrase(d) for d in after_down),
                        {"script": script.label, "differences": [d.as_dict() for d in after_down]},
                    )
                )
            try:
                with tracker.step() as by_again:
                    executor.apply(script)
            except MigrationFailed as exc:
                found.append(
                    (
                        f"{script.label}: up fails after its down: {_cause(exc)}"
                        + (" (left behind by the down above)" if after_down else ""),
                        {"script": script.label},
                    )
                )
                if tracker.objects != after:
                    return index + 1, found, clean, None
                continue
            after_up = _differences(after, tracker.objects, touched | set(by_again))
            if after_up:
                found.append(
                    (
                        f"{script.label}: up after down gives a different schema: "
                        + "; ".join(_phrase(d) for d in after_up),
                        {"script": script.label, "differences": [d.as_dict() for d in after_up]},
                    )
                )
            if not after_down and not after_up:
                clean.append(script.label)
    return len(scripts), found, clean, None


def _differences(expected: Objects, actual: Objects, keys: set[Any]) -> list[Difference]:
    """The differences among ``keys`` (the objects the steps touched: all others are the
    same on both sides by construction, so the whole schema is compared)."""
    return compare(
        Schema({k: expected[k] for k in keys if k in expected}),
        Schema({k: actual[k] for k in keys if k in actual}),
    )


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
