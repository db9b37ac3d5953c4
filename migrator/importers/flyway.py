"""Flyway: ``V{version}__{description}.sql`` (``U{version}__….sql``: its undo, our down),
in the folder and its subfolders; history table ``flyway_schema_history``, a row per
migration run, undo, baseline or deletion (by ``installed_rank``).

Repeatable migrations (``R__….sql``) have no place in a versioned history and are
skipped, as are Java migrations; ``${placeholders}`` are left as they are, and said.
A ``V….sql.conf`` with ``executeInTransaction=false`` makes the step non-atomic.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from migrator.errors import HistoryConflict
from migrator.importers import SourceMigration, slug, unwrap_transaction

TABLE = "flyway_schema_history"
_FILE = re.compile(r"^(?P<kind>[VU])(?P<version>\d+(?:[._]\d+)*)__(?P<description>.*)\.sql$")
_PLACEHOLDER = re.compile(r"\$\{[^}]+\}")


def version_key(text: str) -> tuple[int, ...]:
    """Flyway's order: numeric parts, trailing zeros ignored (1.1 == 1.1.0)."""
    parts = [int(p) for p in re.split(r"[._]", str(text)) if p != ""]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def read(folder: Path) -> tuple[list[SourceMigration], list[str]]:
    versioned: dict[tuple[int, ...], Path] = {}
    undo: dict[tuple[int, ...], Path] = {}
    skipped = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.endswith(".conf"):
            continue
        rel = str(path.relative_to(folder))
        match = _FILE.match(path.name)
        if match is None:
            why = (
                "a repeatable migration (re-run whenever it changes): tbmigrate has none; "
                "write a new versioned migration when it changes"
                if path.name.startswith("R__")
                else "not a Flyway SQL migration file name"
            )
            skipped.append(f"{rel}: {why}")
            continue
        key = version_key(match.group("version"))
        (versioned if match.group("kind") == "V" else undo)[key] = path
    found = []
    for key, path in sorted(versioned.items()):
        match = _FILE.match(path.name)
        assert match is not None
        up, atomic, notes = unwrap_transaction(path.read_text(encoding="utf-8"))
        conf = path.with_name(path.name + ".conf")
        if conf.exists() and re.search(
            r"^\s*executeInTransaction\s*=\s*false\s*$", conf.read_text(), re.MULTILINE
        ):
            atomic = False
            notes.append("its .conf says executeInTransaction=false")
        down = None
        files = [str(path.relative_to(folder))]
        if key in undo:
            down = undo[key].read_text(encoding="utf-8")
            files.append(str(undo[key].relative_to(folder)))
        if _PLACEHOLDER.search(up) or (down and _PLACEHOLDER.search(down)):
            notes.append("it uses Flyway ${placeholders}: replace them by hand before running")
        found.append(
            SourceMigration(
                version=".".join(str(p) for p in key),
                sort_key=key,
                name=slug(match.group("description")),
                up=up,
                down=down,
                files=tuple(files),
                atomic=atomic,
                notes=tuple(notes),
            )
        )
    for key, path in undo.items():
        if key not in versioned:
            skipped.append(f"{path.relative_to(folder)}: an undo without its V migration")
    return found, skipped


def applied(cursor: Any, known: list[SourceMigration]) -> list[str]:
    cursor.execute(f"SELECT version, type, success, script FROM {TABLE} ORDER BY installed_rank")
    done: dict[tuple[int, ...], str] = {}
    baseline: tuple[int, ...] | None = None
    for version, kind, success, script in cursor.fetchall():
        if version is None:
            continue  # a repeatable migration's run
        key = version_key(version)
        kind = str(kind or "").upper()
        if not success:
            raise HistoryConflict(
                f"Flyway's {TABLE} records a failed migration, version {version} ({script}); "
                "clean it up and run `flyway repair` first, then adopt"
            )
        if "BASELINE" in kind:
            baseline = key
        elif kind.startswith("UNDO") or kind == "DELETE":
            done.pop(key, None)
        else:
            done[key] = str(version)
    by_key = {version_key(m.version): m for m in known}
    if baseline is not None:
        for key, migration in by_key.items():
            if key <= baseline:
                done.setdefault(key, migration.version)
    missing = [done[k] for k in done if k not in by_key]
    if missing:
        raise HistoryConflict(
            f"Flyway's {TABLE} says version {missing[0]} is applied, but the folder has no "
            "V file for it; import the folder that migrated this database"
        )
    return [by_key[k].version for k in sorted(done)]
