"""dbmate: ``{version}_{name}.sql`` with ``-- migrate:up`` and ``-- migrate:down``
sections (``transaction:false`` on the section line: no transaction); history table
``schema_migrations (version varchar)``, a row per applied version."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from migrator.importers import SourceMigration, slug, stamp_of

TABLE = "schema_migrations"
_FILE = re.compile(r"^(?P<version>\d+)_(?P<name>.*)\.sql$")
_SECTION = re.compile(r"^--\s*migrate:(?P<role>up|down)\b(?P<options>.*)$", re.MULTILINE)


def read(folder: Path) -> tuple[list[SourceMigration], list[str]]:
    found, skipped = [], []
    for path in sorted(folder.iterdir()):
        match = _FILE.match(path.name)
        if not match:
            if path.is_file() and not path.name.startswith("."):
                skipped.append(f"{path.name}: not a dbmate migration file name")
            continue
        text = path.read_text(encoding="utf-8")
        sections = list(_SECTION.finditer(text))
        roles = [m.group("role") for m in sections]
        if "up" not in roles:
            skipped.append(f"{path.name}: has no -- migrate:up section")
            continue
        atomic = not any("transaction:false" in m.group("options") for m in sections)
        bodies: dict[str, str] = {}
        for index, section in enumerate(sections):
            end = sections[index + 1].start() if index + 1 < len(sections) else len(text)
            bodies[section.group("role")] = text[section.end() : end].strip("\n")
        down = bodies.get("down")
        version = match.group("version")
        found.append(
            SourceMigration(
                version=version,
                sort_key=(version,),
                name=slug(match.group("name")),
                up=bodies["up"],
                down=down if down and down.strip() else None,
                files=(path.name,),
                atomic=atomic,
                stamp=stamp_of(version),
            )
        )
    return found, skipped


def applied(cursor: Any, known: list[SourceMigration]) -> list[str]:
    cursor.execute(f"SELECT version FROM {TABLE}")
    return [str(row[0]) for row in cursor.fetchall()]
