"""Diesel: a folder per migration, ``{version}_{name}/up.sql`` and ``down.sql``
(``metadata.toml`` with ``run_in_transaction = false``: no transaction); history table
``__diesel_schema_migrations (version, run_on)``, a row per applied version, the
version being the folder name's prefix without its dashes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from migrator.importers import SourceMigration, slug, stamp_of, unwrap_transaction

TABLE = "__diesel_schema_migrations"
_FOLDER = re.compile(r"^(?P<version>[0-9-]+)_(?P<name>.+)$")


def read(folder: Path) -> tuple[list[SourceMigration], list[str]]:
    found, skipped = [], []
    for path in sorted(folder.iterdir()):
        if not path.is_dir():
            if path.is_file() and not path.name.startswith("."):
                skipped.append(f"{path.name}: not a Diesel migration folder")
            continue
        match = _FOLDER.match(path.name)
        if match is None or not (path / "up.sql").is_file():
            skipped.append(f"{path.name}/: not a Diesel migration (VERSION_name/up.sql)")
            continue
        version = match.group("version").replace("-", "")
        up, atomic, notes = unwrap_transaction((path / "up.sql").read_text(encoding="utf-8"))
        down = None
        files = [f"{path.name}/up.sql"]
        if (path / "down.sql").is_file():
            down = (path / "down.sql").read_text(encoding="utf-8")
            files.append(f"{path.name}/down.sql")
        metadata = path / "metadata.toml"
        if metadata.is_file() and re.search(
            r"^\s*run_in_transaction\s*=\s*false\s*$", metadata.read_text(), re.MULTILINE
        ):
            atomic = False
            notes.append("its metadata.toml says run_in_transaction = false")
        found.append(
            SourceMigration(
                version=version,
                sort_key=(version,),
                name=slug(match.group("name")),
                up=up,
                down=down if down and down.strip() else None,
                files=tuple(files),
                atomic=atomic,
                stamp=stamp_of(version),
                notes=tuple(notes),
            )
        )
    return found, skipped


def applied(cursor: Any, known: list[SourceMigration]) -> list[str]:
    cursor.execute(f"SELECT version FROM {TABLE}")
    return [str(row[0]).replace("-", "") for row in cursor.fetchall()]
