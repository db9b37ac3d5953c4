"""golang-migrate: ``{version}_{title}.up.sql`` and ``….down.sql``; history table
``schema_migrations (version bigint, dirty boolean)``, one row: every version up to it
is applied, and ``dirty`` means that one failed part-way."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from migrator.errors import HistoryConflict, UsageError
from migrator.importers import SourceMigration, slug, stamp_of, unwrap_transaction

TABLE = "schema_migrations"
_FILE = re.compile(r"^(?P<version>\d+)_(?P<title>.*)\.(?P<role>up|down)\.sql$")


def read(folder: Path) -> tuple[list[SourceMigration], list[str]]:
    pairs: dict[int, dict[str, Path]] = {}
    skipped = []
    for path in sorted(folder.iterdir()):
        match = _FILE.match(path.name)
        if not match:
            if path.is_file() and not path.name.startswith("."):
                skipped.append(f"{path.name}: not a golang-migrate SQL file name")
            continue
        pairs.setdefault(int(match.group("version")), {})[match.group("role")] = path
    found = []
    for version, files in sorted(pairs.items()):
        if "up" not in files:
            skipped.append(f"{files['down'].name}: a down file without its up")
            continue
        up, atomic, notes = unwrap_transaction(files["up"].read_text(encoding="utf-8"))
        down = None
        if "down" in files:
            down, down_atomic, _ = unwrap_transaction(files["down"].read_text(encoding="utf-8"))
            atomic = atomic and down_atomic
        title = _FILE.match(files["up"].name).group("title")  # type: ignore[union-attr]
        raw = _FILE.match(files["up"].name).group("version")  # type: ignore[union-attr]
        found.append(
            SourceMigration(
                version=str(version),
                sort_key=(version,),
                name=slug(title),
                up=up,
                down=down,
                files=tuple(sorted(p.name for p in files.values())),
                atomic=atomic,
                stamp=stamp_of(raw),
                notes=tuple(notes),
            )
        )
    return found, skipped


def applied(cursor: Any, known: list[SourceMigration]) -> list[str]:
    cursor.execute(f"SELECT version, dirty FROM {TABLE}")
    rows = cursor.fetchall()
    if not rows:
        return []
    if len(rows) > 1:
        raise UsageError(
            f"{TABLE} has {len(rows)} rows, golang-migrate keeps one; is it another tool's "
            "table (dbmate also uses schema_migrations)?"
        )
    version, dirty = int(rows[0][0]), bool(rows[0][1])
    if dirty:
        raise HistoryConflict(
            f"golang-migrate's {TABLE} is dirty at version {version}: that migration failed "
            "part-way; fix the database by hand and clear it (migrate force VERSION) first, "
            "then adopt"
        )
    if version < 0:
        return []
    if not any(int(m.version) == version for m in known):
        raise HistoryConflict(
            f"golang-migrate's {TABLE} says version {version} is applied, but the folder has "
            "no such migration; import the folder that migrated this database"
        )
    return [m.version for m in known if int(m.version) <= version]
