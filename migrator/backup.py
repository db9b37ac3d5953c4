"""Backups before migrating: SQLite's online backup API, PostgreSQL's ``pg_dump``.

- SQLite: ``sqlite3.Connection.backup`` copies the database page by page into a new
  file while other connections keep reading (a plain file copy could catch a write
  half-done).  Restore: copy the file back over the database (see README "Safety").
- PostgreSQL: ``pg_dump --format=custom``, the format ``pg_restore`` reads, compressed
  and restorable table by table.  The password goes to pg_dump through ``PGPASSWORD``
  in its environment, never on its command line (where ``ps`` would show it).

Backups are written as ``<BACKUP_DIR>/<alias>-<database>-<UTC time>.<ext>``, readable
by their owner only (they hold every row).  ``require_tool`` is called before
anything runs, so a missing ``pg_dump`` stops ``run --backup`` with nothing done.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.db import DatabaseError, connections

from migrator import conf, history, redact, targets
from migrator.errors import BackupFailed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backup:
    alias: str
    path: Path
    size_bytes: int
    duration_ms: float
    method: str  # "sqlite backup API" | "pg_dump --format=custom"

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "duration_ms": self.duration_ms,
            "method": self.method,
        }


def wanted(alias: str, requested: bool) -> bool:
    """``--backup`` given, or the alias is listed in the BACKUP_DATABASES setting."""
    return requested or alias in (conf.get("BACKUP_DATABASES") or [])


def pg_dump_path() -> str | None:
    return shutil.which(str(conf.get("PG_DUMP")))


def require_tool(alias: str) -> None:
    """Raise ``BackupFailed`` now (before anything runs) if the backup cannot be taken."""
    if targets.vendor(alias) == "postgresql" and pg_dump_path() is None:
        raise BackupFailed(
            f"cannot back up {targets.describe(alias)}: {conf.get('PG_DUMP')} is not installed "
            "(not found on PATH), so nothing was run; install the PostgreSQL client tools "
            "(e.g. apt install postgresql-client) or set TBMIGRATE_PG_DUMP to its path"
        )


def take(alias: str, folder: Path | None = None) -> Backup:
    """Back up ``alias`` now and audit it; the caller holds the migration lock."""
    require_tool(alias)
    folder = folder or conf.project_path("BACKUP_DIR")
    started = time.perf_counter()
    path: Path | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = _new_file(folder, alias)
        if targets.vendor(alias) == "sqlite":
            method = "sqlite backup API"
            _sqlite_backup(alias, path)
        else:
            method = "pg_dump --format=custom"
            _pg_dump(alias, path)
    except (OSError, sqlite3.Error, BackupFailed) as exc:
        if path is not None:
            path.unlink(missing_ok=True)
        reason = (
            str(exc)
            if isinstance(exc, BackupFailed)
            else f"{exc.__class__.__name__}: {redact.scrub(str(exc))}"
        )
        _audit(alias, history.FAILURE, error=reason, details={"folder": str(folder)})
        if isinstance(exc, BackupFailed):
            raise
        raise BackupFailed(
            f"cannot back up {targets.describe(alias)} into {folder}: {reason}; nothing was run"
        ) from exc
    result = Backup(
        alias,
        path,
        path.stat().st_size,
        round((time.perf_counter() - started) * 1000, 3),
        method,
    )
    _audit(alias, history.SUCCESS, duration_ms=result.duration_ms, details=result.as_dict())
    logger.info("backed up %s to %s", targets.describe(alias), path)
    return result


def _new_file(folder: Path, alias: str) -> Path:
    """A new, empty file readable by its owner only; a second backup in the same second
    gets a suffix instead of overwriting the first."""
    name = str(connections[alias].settings_dict.get("NAME") or alias)
    stem = Path(name).stem if targets.vendor(alias) == "sqlite" else name
    ext = "sqlite3" if targets.vendor(alias) == "sqlite" else "dump"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1, 1000):
        suffix = "" if n == 1 else f"-{n}"
        path = folder / f"{alias}-{stem}-{stamp}{suffix}.{ext}"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            continue
        return path
    raise BackupFailed(f"too many backups named {alias}-{stem}-{stamp}* in {folder}")


def _sqlite_backup(alias: str, path: Path) -> None:
    source_name = str(connections[alias].settings_dict["NAME"])
    source = sqlite3.connect(f"{Path(source_name).absolute().as_uri()}?mode=ro", uri=True)
    try:
        destination = sqlite3.connect(path)
        try:
            source.backup(destination)
        finally:
            destination.close()
    finally:
        source.close()


def _libpq(alias: str) -> tuple[str, dict[str, str]]:
    """``alias``'s connection string for a libpq client tool, and the environment to run
    it in: the password in ``PGPASSWORD``, never on the command line."""
    from psycopg.conninfo import make_conninfo

    params = connections[alias].get_connection_params()
    password = params.get("password")
    libpq = {
        key: value
        for key, value in params.items()
        if isinstance(value, str | int) and key not in {"password", "prepare_threshold"}
    }
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **libpq), env


def _run_tool(command: list[str], env: dict[str, str]) -> str:
    """Run a libpq client tool to its end: ``""`` when it succeeded, else the first line
    it printed (passwords masked), or its exit status."""
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if completed.returncode == 0:
        return ""
    lines = [line for line in redact.scrub(completed.stderr).splitlines() if line.strip()]
    return lines[0] if lines else f"exit status {completed.returncode}"


def _pg_dump(alias: str, path: Path) -> None:
    dsn, env = _libpq(alias)
    command = [
        str(pg_dump_path()),
        "--format=custom",
        "--no-password",  # never prompt: a backup in CI must fail, not hang
        f"--file={path}",
        f"--dbname={dsn}",
    ]
    error = _run_tool(command, env)
    if error:
        raise BackupFailed(
            f"pg_dump could not back up {targets.describe(alias)}: {error}; nothing was run"
        )


def pg_restore_path() -> str | None:
    """``pg_restore`` beside the configured ``pg_dump`` (same version), else on PATH."""
    dump = pg_dump_path()
    if dump:
        sibling = Path(dump).with_name("pg_restore")
        if os.access(sibling, os.X_OK):
            return str(sibling)
    return shutil.which("pg_restore")


def copy_schema(source: str, target: str, exclude: tuple[str, ...] = ()) -> None:
    """Copy ``source``'s schema, no rows, into the empty PostgreSQL database ``target``.

    ``pg_dump --schema-only`` (tables ``exclude`` left out) restored with
    ``pg_restore --single-transaction --exit-on-error``, owners and grants left out
    (the copy belongs to the user making it).  Read-only on ``source``: pg_dump takes
    ACCESS SHARE locks, which wait for no reader or writer.  Raises ``BackupFailed``
    with pg_dump's or pg_restore's first error line (a missing tool, a server newer
    than the client, an extension the user may not create)."""
    dump, restore = pg_dump_path(), pg_restore_path()
    if dump is None or restore is None:
        raise BackupFailed(
            f"{conf.get('PG_DUMP') if dump is None else 'pg_restore'} is not installed "
            "(install the PostgreSQL client tools)"
        )
    source_dsn, source_env = _libpq(source)
    target_dsn, target_env = _libpq(target)
    with tempfile.TemporaryDirectory(prefix="tbmigrate-schema-") as folder:
        path = Path(folder) / "schema.dump"
        error = _run_tool(
            [
                dump,
                "--schema-only",
                "--format=custom",
                "--no-password",
                # a lock that waits (an ALTER queued on a table) fails fast, not stalls
                "--lock-wait-timeout=5s",
                *(f"--exclude-table={name}" for name in exclude),
                f"--file={path}",
                f"--dbname={source_dsn}",
            ],
            source_env,
        )
        if error:
            raise BackupFailed(f"pg_dump: {error}")
        error = _run_tool(
            [
                restore,
                "--single-transaction",
                "--exit-on-error",
                "--no-owner",
                "--no-privileges",
                "--no-password",
                f"--dbname={target_dsn}",
                str(path),
            ],
            target_env,
        )
        if error:
            raise BackupFailed(f"pg_restore: {error}")


def _audit(alias: str, outcome: str, **kwargs: object) -> None:
    try:
        history.audit(alias, "backup", outcome, **kwargs)  # type: ignore[arg-type]
    except DatabaseError as exc:
        logger.warning("could not audit the backup: %s", redact.scrub(str(exc)))
