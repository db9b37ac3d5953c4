"""``import … --adopt``: record as applied what the other tool's history table says is.

Under the migration lock, as every change to the history: the tool's table is read on
the target database, each applied version is mapped to ours, and the history rows and
one audit event per version (action ``adopt``) are written in one transaction, so
an adoption happens whole or not at all.  Versions already recorded with the same
checksum are left alone (adopting twice changes nothing); anything else recorded, a
version the folder does not have, or a tool's history that says a migration failed
half-way refuses the adoption, with the database as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from django.db import DatabaseError, connections, transaction

from migrator import conf, history, scripts, targets
from migrator.errors import HistoryConflict, UsageError
from migrator.importers import Imported, ImportResult
from migrator.locking import migration_lock


@dataclass(frozen=True)
class Adopted:
    imported: Imported
    already: bool  # recorded before, with the same checksum: left alone


def adopt(
    alias: str, tool: str, module: ModuleType, result: ImportResult, lock_timeout: float | None
) -> list[Adopted]:
    names: set[str] = set()
    if targets.sqlite_exists(alias):  # a SQLite file that is not there holds no table
        targets.connect(alias)
        targets.require_writable(alias)
        with connections[alias].cursor() as cursor:
            names = set(connections[alias].introspection.table_names(cursor))
    connection = connections[alias]
    if module.TABLE not in names:
        raise UsageError(
            f"there is no {module.TABLE} table in {targets.describe(alias)}, so {tool} has "
            "recorded nothing there to adopt; run without --adopt, or choose the database "
            "with --database"
        )
    known = [m.source for m in result.migrations]
    try:
        with connection.cursor() as cursor:
            applied = list(module.applied(cursor, known))
    except DatabaseError as exc:
        first = (str(exc).strip().splitlines() or ["?"])[0]
        raise UsageError(
            f"{module.TABLE} in {targets.describe(alias)} is not {tool}'s history table as "
            f"expected ({first})"
        ) from None
    by_source = {m.source.version: m for m in result.migrations}
    unknown = [v for v in applied if v not in by_source]
    if unknown:
        raise HistoryConflict(
            f"{tool}'s {module.TABLE} says version {unknown[0]} is applied, but the folder "
            "has no such migration; import the folder that migrated this database"
        )
    timeout = float(conf.get("LOCK_TIMEOUT") if lock_timeout is None else lock_timeout)
    with history.run_context(), migration_lock(alias, timeout):
        history.ensure_schema(alias)
        loaded = {s.version: s for s in scripts.load_scripts(result.scripts_dir)}
        recorded = {r.version: r for r in history.load(alias)}
        chosen = [by_source[v] for v in applied]
        done: list[Adopted] = []
        clashes = []
        for imported in chosen:
            script = loaded[imported.version]
            record = recorded.get(imported.version)
            if record is not None:
                if record.checksum == script.checksum and record.status == history.APPLIED:
                    done.append(Adopted(imported, already=True))
                else:
                    clashes.append(f"{imported.version} is already recorded ({record.status})")
                continue
            done.append(Adopted(imported, already=False))
        if clashes:
            raise HistoryConflict(
                "adopt refused, nothing was recorded: " + "; ".join(clashes[:5]) + " (see "
                "`tbmigrate status`)"
            )
        _record(alias, tool, module.TABLE, [a for a in done if not a.already], loaded)
        return done


def _record(alias: str, tool: str, table: str, todo: Sequence[Adopted], loaded: dict) -> None:
    with transaction.atomic(using=alias):
        for adopted in todo:
            script = loaded[adopted.imported.version]
            history.record_unrun(alias, script)
            history.audit(
                alias,
                "adopt",
                history.SUCCESS,
                version=script.version,
                name=script.name,
                duration_ms=0,
                details={
                    "tool": tool,
                    "table": table,
                    "source_version": adopted.imported.source.version,
                    "source_files": list(adopted.imported.source.files),
                    "note": f"recorded as applied without running up(): {tool}'s {table} "
                    "says it is applied",
                },
            )
