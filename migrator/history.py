"""The only code that reads or writes tbmigrate's tables (as Django's ``recorder.py``).

``AppliedMigration`` is the state (applied or failed versions), ``AuditEvent`` the
append-only log.  Everything handed out is a plain frozen ``Record``; nothing outside
this module touches the ORM models.  Every text stored is scrubbed of passwords.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections
from django.db.models import QuerySet
from django.utils import timezone

import migrator
from migrator import redact, targets
from migrator.models import AppliedMigration, AuditEvent
from migrator.versions import Version

TABLES = (AppliedMigration._meta.db_table, AuditEvent._meta.db_table)
APPLIED = AppliedMigration.APPLIED
FAILED = AppliedMigration.FAILED
SUCCESS, FAILURE, REFUSED = AuditEvent.SUCCESS, AuditEvent.FAILURE, AuditEvent.REFUSED


@dataclass(frozen=True)
class Record:
    """One row of the applied-migration history."""

    version: Version
    name: str
    description: str
    checksum: str
    status: str
    applied_at: datetime
    duration_ms: float
    applied_by: str
    host: str
    error: str


@dataclass(frozen=True)
class Actor:
    user: str
    host: str
    pid: int


def actor() -> Actor:
    """Who and where: the OS user (or ``TBMIGRATE_ACTOR``, e.g. a CI user) and the host."""
    user = os.environ.get("TBMIGRATE_ACTOR", "")
    if not user:
        try:
            user = getpass.getuser()
        except Exception:  # no passwd entry in some containers
            user = f"uid:{os.getuid()}"
    return Actor(user=user[:150], host=socket.gethostname()[:255], pid=os.getpid())


def tables_exist(alias: str) -> bool:
    connection = connections[alias]
    with connection.cursor() as cursor:
        names = set(connection.introspection.table_names(cursor))
    return set(TABLES) <= names


def ensure_schema(alias: str) -> None:
    """Create or upgrade tbmigrate's own tables on ``alias``.

    Called only while the migration lock is held: two processes bootstrapping at once
    would otherwise race on CREATE TABLE.  Django's migration executor does the work,
    limited to this app, so ``manage.py migrate`` later sees the tables as migrated.
    The common case (all present) costs two small queries.
    """
    connection = connections[alias]
    with connection.cursor() as cursor:
        names = set(connection.introspection.table_names(cursor))
        if set(TABLES) <= names and "django_migrations" in names:
            cursor.execute("SELECT name FROM django_migrations WHERE app = %s", ["migrator"])
            recorded = {row[0] for row in cursor.fetchall()}
            if recorded >= _own_migration_names():
                return
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes("migrator"))


def _own_migration_names() -> set[str]:
    folder = os.path.join(os.path.dirname(__file__), "migrations")
    return {name[:-3] for name in os.listdir(folder) if name.endswith(".py") and name[0].isdigit()}


def load(alias: str) -> list[Record]:
    """Every history row, oldest version first; empty when the tables do not exist yet."""
    if not tables_exist(alias):
        return []
    rows = (
        AppliedMigration.objects.using(alias)
        .order_by("sort_key")
        .values_list(
            "version",
            "name",
            "description",
            "checksum",
            "status",
            "applied_at",
            "duration_ms",
            "applied_by",
            "host",
            "error",
        )
    )
    return [Record(Version.parse(row[0]), *row[1:]) for row in rows]


def record_applied(
    alias: str,
    *,
    version: Version,
    name: str,
    description: str,
    checksum: str,
    duration_ms: float,
    status: str = APPLIED,
    error: str = "",
) -> None:
    who = actor()
    AppliedMigration.objects.using(alias).update_or_create(
        version=str(version),
        defaults={
            "sort_key": version.sort_key,
            "name": name,
            "description": description,
            "checksum": checksum,
            "status": status,
            "applied_at": timezone.now(),
            "duration_ms": duration_ms,
            "applied_by": who.user,
            "host": who.host,
            "error": redact.scrub(error),
        },
    )


def remove(alias: str, version: Version) -> None:
    AppliedMigration.objects.using(alias).filter(version=str(version)).delete()


def update_checksum(alias: str, version: Version, checksum: str) -> None:
    AppliedMigration.objects.using(alias).filter(version=str(version)).update(checksum=checksum)


def clear_failed(alias: str, version: Version) -> int:
    """Delete the record of a *failed* version (``repair VERSION``); applied rows stay."""
    rows = AppliedMigration.objects.using(alias).filter(version=str(version), status=FAILED)
    return rows.delete()[0]


def accept_checksum(alias: str, version: Version, old: str, new: str) -> int:
    """Store the edited file's checksum (``repair --checksums``), only if it is still ``old``
    (a run that changed the row meanwhile wins)."""
    rows = AppliedMigration.objects.using(alias).filter(
        version=str(version), status=APPLIED, checksum=old
    )
    return rows.update(checksum=new)


def forget_applied(alias: str, version: Version) -> int:
    """Delete an applied record whose file is gone (``repair --missing``)."""
    rows = AppliedMigration.objects.using(alias).filter(version=str(version), status=APPLIED)
    return rows.delete()[0]


def audit(
    alias: str,
    action: str,
    outcome: str,
    *,
    version: Version | str = "",
    name: str = "",
    duration_ms: float | None = None,
    error: str = "",
    traceback: str = "",
    statements: Sequence[Any] = (),
    details: dict[str, Any] | None = None,
) -> None:
    """Append one audit event; every text is scrubbed of passwords first."""
    who = actor()
    secrets = redact.known_secrets()
    AuditEvent.objects.using(alias).create(
        timestamp=timezone.now(),
        action=action,
        version=str(version),
        name=name,
        outcome=outcome,
        duration_ms=duration_ms,
        error=redact.scrub(error, secrets),
        traceback=redact.scrub(traceback, secrets),
        statements=_scrub_json(list(statements), secrets),
        details=_scrub_json(details or {}, secrets),
        os_user=who.user,
        host=who.host,
        pid=who.pid,
        database=targets.describe(alias),
        tool_version=migrator.__version__,
    )


def events(alias: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Recent audit events as plain dicts, newest first (for tests, JSON and reports)."""
    if not tables_exist(alias):
        return []
    query = AuditEvent.objects.using(alias).order_by("-timestamp", "-id").values()
    return list(query[:limit] if limit else query)


def applied_rows(alias: str) -> QuerySet[AppliedMigration]:
    """The history rows as a queryset, for read-only views (the admin); never write through it."""
    return AppliedMigration.objects.using(alias).all()


def audit_rows(alias: str) -> QuerySet[AuditEvent]:
    """The audit events as a queryset, for read-only views (the admin); never write through it."""
    return AuditEvent.objects.using(alias).all()


def _scrub_json(value: Any, secrets: Iterable[str]) -> Any:
    secrets = list(secrets)
    if isinstance(value, str):
        return redact.scrub(value, secrets)
    if isinstance(value, dict):
        return {str(k): _scrub_json(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_json(v, secrets) for v in value]
    return value
