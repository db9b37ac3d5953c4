"""Bring migrations over from golang-migrate, dbmate, Flyway and Diesel.

Each tool's module reads its folder into ``SourceMigration``s (its own versions, in its
own order) and reads its history table (``applied``).  ``write`` turns them into our
SQL pairs (``….up.sql`` / ``….down.sql``) with versions mapped in order from
``start`` (1.0.0, 1.0.1, …), and keeps the mapping in ``_imported-<tool>.json`` in the
scripts folder (the loader skips ``_`` files), so a second import of a folder that
has grown keeps the versions already given.  ``adopt.py`` records as applied what
the tool's history table says is applied.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from migrator.errors import UsageError
from migrator.versions import Version

TOOLS = ("golang-migrate", "dbmate", "flyway", "diesel")


@dataclass(frozen=True)
class SourceMigration:
    """One migration as the other tool knows it."""

    version: str  # as the tool writes it in its history table
    sort_key: tuple[Any, ...]
    name: str  # lower-case-with-hyphens
    up: str
    down: str | None
    files: tuple[str, ...]  # relative to the tool's folder
    atomic: bool = True
    stamp: str | None = None  # our YYYY-MM-DDTHH-mm-ss when the version is a time stamp
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Imported:
    source: SourceMigration
    version: Version
    files: tuple[Path, ...]
    written: bool  # False: the files were there already, identical


@dataclass
class ImportResult:
    tool: str
    folder: Path
    scripts_dir: Path
    mapping_file: Path
    migrations: list[Imported] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what cannot be imported, and why


def tool_module(tool: str) -> ModuleType:
    if tool not in TOOLS:
        raise UsageError(f"unknown tool '{tool}'; choose one of {', '.join(TOOLS)}")
    import importlib

    return importlib.import_module(f"migrator.importers.{tool.replace('-', '_')}")


def slug(text: str) -> str:
    """A name as our file names want it: lower-case words joined by hyphens."""
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (words[:60].rstrip("-") or "migration") if words else "migration"


def stamp_of(version: str) -> str | None:
    """``20230105120000`` (or ``2023-01-05-120000``) -> ``2023-01-05T12-00-00``."""
    digits = version.replace("-", "").replace("_", "")
    if len(digits) != 14 or not digits.isdigit() or not digits.startswith(("19", "20")):
        return None
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}T{digits[8:10]}-{digits[10:12]}-{digits[12:]}"


_TX_WRAPPER = re.compile(r"^(?:BEGIN|START\s+TRANSACTION)\b", re.IGNORECASE)


def unwrap_transaction(sql: str) -> tuple[str, bool, list[str]]:
    """``(sql, atomic, notes)``: a ``BEGIN; … COMMIT;`` wrapper removed (tbmigrate runs
    each step in a transaction of its own); SQL that must run outside one (``CONCURRENTLY``,
    other transaction statements) makes the step non-atomic."""
    from migrator.sqlsplit import split

    statements = split(sql)
    notes: list[str] = []
    if (
        len(statements) >= 2
        and _TX_WRAPPER.match(statements[0].sql)
        and statements[-1].controls_transaction
        and not any(s.controls_transaction for s in statements[1:-1])
    ):
        lines = sql.split("\n")
        first, last = statements[0], statements[-1]
        lines[last.line - 1] = _blank(lines[last.line - 1], last.sql)
        lines[first.line - 1] = _blank(lines[first.line - 1], first.sql)
        sql = "\n".join(lines)
        statements = split(sql)
        notes.append("its BEGIN/COMMIT were removed (tbmigrate runs it in a transaction)")
    atomic = True
    if any(s.controls_transaction for s in statements):
        atomic = False
        notes.append("it controls its own transactions, so it runs with atomic=false")
    elif any(re.search(r"\bCONCURRENTLY\b", s.sql, re.IGNORECASE) for s in statements):
        atomic = False
        notes.append("CONCURRENTLY cannot run in a transaction, so it runs with atomic=false")
    return sql, atomic, notes


def _blank(line: str, statement: str) -> str:
    """The line with the one-line statement (and its ``;``) taken out."""
    pattern = re.compile(re.escape(statement) + r"\s*;?", re.IGNORECASE)
    return pattern.sub("", line, count=1).rstrip()


def write(
    tool: str,
    folder: Path,
    migrations: Sequence[SourceMigration],
    scripts_dir: Path,
    start: Version,
    skipped: Sequence[str] = (),
) -> ImportResult:
    """Write ``migrations`` into ``scripts_dir`` as SQL pairs; nothing is written if any
    file would clash."""
    from migrator import scripts

    if not scripts_dir.is_dir():
        raise UsageError(
            f"the scripts folder {scripts.shown(scripts_dir)} does not exist (create it, or "
            "set TBMIGRATE_SCRIPTS_DIR)"
        )
    mapping_file = scripts_dir / f"_imported-{tool}.json"
    previous = _read_mapping(mapping_file)
    taken = {str(v) for v in previous.values()}
    next_version = start
    if previous:
        newest = max(previous.values())
        next_version = max(start, Version(newest.major, newest.minor, newest.patch + 1))
    plan: list[tuple[SourceMigration, Version, dict[Path, str]]] = []
    for source in sorted(migrations, key=lambda m: m.sort_key):
        version = previous.get(source.version)
        if version is None:
            version = next_version
            while str(version) in taken:
                version = Version(version.major, version.minor, version.patch + 1)
            taken.add(str(version))
            next_version = Version(version.major, version.minor, version.patch + 1)
        plan.append((source, version, _files(tool, source, version, scripts_dir)))
    ours = _existing_versions(scripts_dir, {p for _, _, files in plan for p in files})
    problems = []
    for source, version, files in plan:
        if str(version) in ours:
            problems.append(
                f"version {version} (for {tool} {source.version}) is already used by "
                f"{scripts.shown(ours[str(version)])}"
            )
        for path, text in files.items():
            if path.exists() and path.read_text(encoding="utf-8") != text:
                problems.append(f"{scripts.shown(path)} exists and differs")
    if problems:
        raise UsageError(
            f"import refused, nothing was written: {'; '.join(problems[:5])}"
            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
            + "; choose another --start, or remove the files"
        )
    result = ImportResult(tool, folder, scripts_dir, mapping_file, skipped=list(skipped))
    for source, version, files in plan:
        written = False
        for path, text in files.items():
            if not path.exists():
                path.write_text(text, encoding="utf-8")
                written = True
        result.migrations.append(Imported(source, version, tuple(files), written))
    _write_mapping(mapping_file, tool, folder, result)
    return result


def _files(
    tool: str, source: SourceMigration, version: Version, scripts_dir: Path
) -> dict[Path, str]:
    stem = (f"{source.stamp}-" if source.stamp else "") + f"{version}-{source.name}"
    origin = f"-- Imported from {tool}: {', '.join(source.files)} (its version {source.version})."
    head = ["-- tbmigrate: atomic=false"] if not source.atomic else []
    head += [f"-- {source.name.replace('-', ' ').capitalize()}", origin]
    head += [f"-- Note: {note}." for note in source.notes]
    files = {scripts_dir / f"{stem}.up.sql": "\n".join(head) + "\n\n" + source.up.strip() + "\n"}
    if source.down is not None:
        files[scripts_dir / f"{stem}.down.sql"] = origin + "\n\n" + source.down.strip() + "\n"
    return files


def _existing_versions(scripts_dir: Path, ignore: set[Path]) -> dict[str, Path]:
    from migrator import scripts
    from migrator.errors import ScriptError

    found: dict[str, Path] = {}
    for path in scripts.script_files(scripts_dir):
        if path in ignore:
            continue
        try:
            found[str(scripts.parse_file_name(path)[0])] = path
        except ScriptError:
            continue
    return found


def _read_mapping(path: Path) -> dict[str, Version]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {str(m["source_version"]): Version.parse(m["version"]) for m in data["mapping"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} cannot be read ({exc}); fix or remove it") from None


def _write_mapping(path: Path, tool: str, folder: Path, result: ImportResult) -> None:
    data = {
        "tool": tool,
        "folder": str(folder),
        "mapping": [
            {
                "source_version": m.source.version,
                "version": str(m.version),
                "source_files": list(m.source.files),
                "files": [p.name for p in m.files],
            }
            for m in result.migrations
        ],
        "skipped": result.skipped,
    }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
