"""The only code that reads or writes tbmigrate's tables (as Django's ``recorder.py``).

``AppliedMigration`` is the state (applied or failed versions), ``AuditEvent`` the
append-only log.  Everything handed out is a plain frozen ``Record``; nothing outside
this module touches the ORM models.  Every text stored is scrubbed of passwords.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import socket
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.db.models import QuerySet
from django.utils import timezone

import migrator
from migrator import redact, targets
from migrator.models import AppliedMigration, AuditEvent
from migrator.versions import Version

if TYPE_CHECKING:
    from migrator.scripts import Script

TABLES = (AppliedMigration._meta.db_table, AuditEvent._meta.db_table)
APPLIED = AppliedMigration.APPLIED
FAILED = AppliedMigration.FAILED
IN_PROGRESS = AppliedMigration.IN_PROGRESS
SUCCESS, FAILURE, REFUSED = AuditEvent.SUCCESS, AuditEvent.FAILURE, AuditEvent.REFUSED
STARTED, INTERRUPTED = AuditEvent.STARTED, AuditEvent.INTERRUPTED

# Every audit event (and history row) written during one command carries its run id, so
# the admin can show a run with its events.  ``run_context`` sets it; outside one, a
# fresh id is made per event.
_RUN_ID: ContextVar[str] = ContextVar("tbmigrate_run_id", default="")


def new_run_id() -> str:
    return secrets.token_hex(8)


@contextlib.contextmanager
def run_context(run_id: str | None = None) -> Iterator[str]:
    """Give every event written in the body the same run id (nested: the outer one)."""
    current = _RUN_ID.get()
    if current:
        yield current
        return
    token = _RUN_ID.set(run_id or new_run_id())
    try:
        yield _RUN_ID.get()
    finally:
        _RUN_ID.reset(token)


def current_run_id() -> str:
    return _RUN_ID.get()


def compress(source: bytes) -> bytes | None:
    """A script's bytes as stored in the history (``None`` when there are none)."""
    return zlib.compress(source, 6) if source else None


def decompress(stored: bytes | memoryview | None) -> str | None:
    """The text of a stored script, or ``None`` when it was not kept (applied before
    tbmigrate kept the text, or faked)."""
    if not stored:
        return None
    return zlib.decompress(bytes(stored)).decode("utf-8", errors="replace")


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
    direction: str = ""
    started_at: datetime | None = None
    pid: int | None = None
    progress: dict[str, Any] | None = None
    run_id: str = ""

    @property
    def in_progress(self) -> bool:
        return self.status == IN_PROGRESS


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
    leaves = executor.loader.graph.leaf_nodes("migrator")
    if connection.vendor != "sqlite":
        executor.migrate(leaves)
        return
    # Django's SQLite schema editor checks the foreign keys of *every* table when it
    # finishes, so one orphan row written long before tbmigrate came would stop it from
    # creating its own tables.  So the plan is applied here as the executor's
    # apply_migration does, with an editor of the backend's own class that checks only
    # tbmigrate's tables.
    editor_class = _own_tables_editor(connection)
    if not executor.recorder.has_table():  # what recorder.ensure_schema() does
        with editor_class(connection) as editor:
            editor.create_model(executor.recorder.Migration)
    for migration, _backwards in executor.migration_plan(leaves):
        state = executor.loader.project_state((migration.app_label, migration.name), at_end=False)
        with editor_class(connection, atomic=migration.atomic) as editor:
            migration.apply(state, editor)
            executor.recorder.record_applied(migration.app_label, migration.name)


def _own_tables_editor(connection: Any) -> Any:
    """The SQLite schema editor class, checking only tbmigrate's tables on exit."""
    from django.db.backends.base.schema import BaseDatabaseSchemaEditor

    class OwnTablesEditor(connection.SchemaEditorClass):
        def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
            own = {*TABLES, "django_migrations"}
            names = [t for t in connection.introspection.table_names() if t in own]
            self.connection.check_constraints(table_names=names)
            # What the SQLite editor's own __exit__ does after its check of every table.
            BaseDatabaseSchemaEditor.__exit__(self, exc_type, exc_value, traceback)
            self.connection.enable_constraint_checking()

    return OwnTablesEditor


def _own_migration_names() -> set[str]:
    folder = os.path.join(os.path.dirname(__file__), "migrations")
    return {name[:-3] for name in os.listdir(folder) if name.endswith(".py") and name[0].isdigit()}


RECORD_FIELDS = (
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
    "direction",
    "started_at",
    "pid",
    "progress",
    "run_id",
)


def record_fields(alias: str) -> tuple[str, ...]:
    """The fields of ``Record`` the history table has: all of them, or, on a table made
    by an older tbmigrate (a read-only command does not upgrade it: the next command
    that takes the migration lock does), those it has; the others read as defaults."""
    connection = connections[alias]
    table = connection.ops.quote_name(AppliedMigration._meta.db_table)
    # One statement, so one snapshot of the table: Django's get_table_description reads
    # the catalog and the table separately, and raised KeyError when the first run, which
    # holds the lock, added a column between the two (two runs started together).
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE 1 = 0")
        present = {column[0] for column in cursor.description}
    return tuple(name for name in RECORD_FIELDS if name in present)


def _records(query: QuerySet[AppliedMigration], fields: tuple[str, ...]) -> list[Record]:
    rows = query.order_by("sort_key").values_list(*fields)
    if fields == RECORD_FIELDS:
        return [Record(Version.parse(row[0]), *row[1:]) for row in rows]
    found = []
    for row in rows:
        values = dict(zip(fields, row, strict=True))
        version = Version.parse(values.pop("version"))
        found.append(Record(version, **values))
    return found


def load(alias: str) -> list[Record]:
    """Every history row, oldest version first; empty when the tables do not exist yet."""
    if not tables_exist(alias):
        return []
    return _records(AppliedMigration.objects.using(alias).all(), record_fields(alias))


def record_unrun(alias: str, script: Script) -> None:
    """Record ``script`` as applied without having run it (``--fake``, an adopted
    history, a scratch copy that has the schema already): duration 0."""
    record_applied(
        alias,
        version=script.version,
        name=script.name,
        description=script.description,
        checksum=script.checksum,
        duration_ms=0,
        source=script.source,
    )


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
    source: bytes = b"",
) -> None:
    fields = _applied_fields(actor(), version, name, description, checksum, duration_ms, source)
    fields.update(status=status, error=redact.scrub(error))
    AppliedMigration.objects.using(alias).update_or_create(
        version=fields.pop("version"), defaults=fields
    )


def _applied_fields(
    who: Actor,
    version: Version,
    name: str,
    description: str,
    checksum: str,
    duration_ms: float,
    source: bytes = b"",
) -> dict[str, Any]:
    """An ``AppliedMigration`` row of an applied version, as field values."""
    return {
        "version": str(version),
        "sort_key": version.sort_key,
        "name": name,
        "description": description,
        "checksum": checksum,
        "status": APPLIED,
        "applied_at": timezone.now(),
        "duration_ms": duration_ms,
        "applied_by": who.user,
        "host": who.host,
        "error": "",
        "direction": "",
        "started_at": None,
        "pid": None,
        "progress": {},
        "script_text": compress(source),
        "run_id": _RUN_ID.get(),
    }


class Writer:
    """One run's writes of the two rows every step makes, with SQL prepared once.

    ``record_applied`` and ``audit`` go through the ORM, which costs more than a small
    step itself; a run of a thousand steps writes through this instead: the actor,
    the known secrets and the masked URL are read once, each row is one plain
    ``INSERT`` (or ``DELETE``) with values prepared by the model's own fields, and on
    PostgreSQL a step's history row and audit event share one round trip.
    """

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.connection = connections[alias]
        self.who = actor()
        self.secrets = list(redact.known_secrets())
        self.database = targets.describe(alias)
        self._applied = _InsertSql(AppliedMigration, self.connection)
        self._audit = _InsertSql(AuditEvent, self.connection)
        options = self.connection.settings_dict.get("OPTIONS") or {}
        # Client-side binding (Django's default with psycopg 3) takes several statements.
        self._together = self.connection.vendor == "postgresql" and not options.get(
            "server_side_binding"
        )
        mark = "?" if self.connection.vendor == "sqlite" else "%s"
        self._remove = (
            f"DELETE FROM {self.connection.ops.quote_name(AppliedMigration._meta.db_table)} "
            f"WHERE version = {mark}"
        )

    def step_done(
        self,
        *,
        applied: dict[str, Any] | None = None,
        removed: Version | None = None,
        event: dict[str, Any],
    ) -> None:
        """Write a step's history change (``applied`` row or ``removed`` version) and its
        audit ``event`` (the keyword arguments of ``audit``), in the step's transaction."""
        statements: list[tuple[str, list[Any]]] = []
        if applied is not None:
            statements.append(self._applied.statement(self._applied_row(**applied)))
        if removed is not None:
            statements.append((self._remove, [str(removed)]))
        statements.append(self._audit.statement(self._event_row(**event)))
        if self.connection.vendor == "sqlite":
            # The driver itself, in the step's transaction: Django's cursor wrapper would
            # only rewrite the placeholders.
            raw = self.connection.connection
            for sql, params in statements:
                raw.execute(sql, params)
            return
        with self.connection.cursor() as cursor:
            if self._together:
                cursor.execute(
                    "; ".join(sql for sql, _ in statements),
                    [value for _, params in statements for value in params],
                )
            else:
                for sql, params in statements:
                    cursor.execute(sql, params)

    def _applied_row(
        self,
        *,
        version: Version,
        name: str,
        description: str,
        checksum: str,
        duration_ms: float,
        source: bytes = b"",
    ) -> dict[str, Any]:
        return _applied_fields(self.who, version, name, description, checksum, duration_ms, source)

    def _event_row(self, action: str, outcome: str, **event: Any) -> dict[str, Any]:
        return _event_fields(self.who, self.secrets, self.database, action, outcome, **event)


class _InsertSql:
    """``INSERT INTO <model's table> (<every concrete column but the key>) VALUES (...)``.

    Values go through the field's own ``get_db_prep_save`` only where the database
    needs another form (time stamps, JSON); text and numbers are passed as they are.
    On SQLite the statement is written with ``?`` for the driver itself.
    """

    def __init__(self, model: Any, connection: Any) -> None:
        self.connection = connection
        self.fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        self.prepare = [
            f.get_internal_type() in ("DateTimeField", "JSONField") for f in self.fields
        ]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in self.fields)
        mark = "?" if connection.vendor == "sqlite" else "%s"
        marks = ", ".join([mark] * len(self.fields))
        self.sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({marks})"

    def statement(self, row: dict[str, Any]) -> tuple[str, list[Any]]:
        values = [
            f.get_db_prep_save(row[f.name], self.connection) if prepare else row[f.name]
            for f, prepare in zip(self.fields, self.prepare, strict=True)
        ]
        return self.sql, values


def clear_failed(alias: str, version: Version) -> int:
    """Delete the record of a *failed* or *interrupted* version (``repair VERSION``);
    applied rows stay."""
    rows = AppliedMigration.objects.using(alias).filter(
        version=str(version), status__in=(FAILED, IN_PROGRESS)
    )
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


def event_fields(
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
) -> dict[str, Any]:
    """An audit event's fields, built now (who, when, the run id), written later."""
    return _event_fields(
        actor(),
        list(redact.known_secrets()),
        targets.describe(alias),
        action,
        outcome,
        version=version,
        name=name,
        duration_ms=duration_ms,
        error=error,
        traceback=traceback,
        statements=statements,
        details=details,
    )


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
    fields = _event_fields(
        actor(),
        list(redact.known_secrets()),
        targets.describe(alias),
        action,
        outcome,
        version=version,
        name=name,
        duration_ms=duration_ms,
        error=error,
        traceback=traceback,
        statements=statements,
        details=details,
    )
    AuditEvent.objects.using(alias).create(**fields)


def _event_fields(
    who: Actor,
    secrets: list[str],
    database: str,
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
) -> dict[str, Any]:
    """An ``AuditEvent`` row as field values, every text scrubbed of ``secrets``."""
    return {
        "timestamp": timezone.now(),
        "action": action,
        "version": str(version),
        "name": name,
        "outcome": outcome,
        "duration_ms": duration_ms,
        "error": redact.scrub(error, secrets),
        "traceback": redact.scrub(traceback, secrets),
        "statements": _scrub_json(list(statements), secrets),
        "details": _scrub_json(details or {}, secrets),
        "os_user": who.user,
        "host": who.host,
        "pid": who.pid,
        "database": database,
        "tool_version": migrator.__version__,
        "run_id": _RUN_ID.get() or new_run_id(),
    }


def events(alias: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Recent audit events as plain dicts, newest first (for tests, JSON and reports)."""
    if not tables_exist(alias):
        return []
    query = AuditEvent.objects.using(alias).order_by("-timestamp", "-id").values()
    return [dict(row) for row in (query[:limit] if limit else query)]


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


# -- the journal of steps that cannot roll back -----------------------------------------
def journal_start(
    alias: str,
    *,
    version: Version,
    name: str,
    description: str,
    checksum: str,
    direction: str,
) -> None:
    """Before a non-atomic step runs: its row says ``in_progress`` (who, where, pid, when,
    which direction), committed by the caller before the step's first statement."""
    who = actor()
    now = timezone.now()
    fields: dict[str, Any] = {
        "status": IN_PROGRESS,
        "direction": direction,
        "started_at": now,
        "pid": who.pid,
        "progress": {},
        "applied_by": who.user,
        "host": who.host,
        "error": "",
    }
    if direction == "up":
        fields.update(
            sort_key=version.sort_key,
            name=name,
            description=description,
            checksum=checksum,
            applied_at=now,
            duration_ms=0,
            run_id=_RUN_ID.get(),
        )
        AppliedMigration.objects.using(alias).update_or_create(
            version=str(version), defaults=fields
        )
    else:
        changed = (
            AppliedMigration.objects.using(alias).filter(version=str(version)).update(**fields)
        )
        if changed != 1:
            raise RuntimeError(f"no history row of {version} to journal its revert on")


def journal_progress(alias: str, version: Version, progress: dict[str, Any]) -> None:
    """How far an in-progress step got; written in the same transaction as the work."""
    AppliedMigration.objects.using(alias).filter(version=str(version), status=IN_PROGRESS).update(
        progress=_scrub_json(progress, redact.known_secrets())
    )


def journal_done(
    alias: str, *, version: Version, direction: str, duration_ms: float, source: bytes = b""
) -> None:
    """A journaled step finished: applied (up) or gone from the history (down)."""
    rows = AppliedMigration.objects.using(alias).filter(version=str(version))
    if direction == "down":
        rows.delete()
        return
    rows.update(
        status=APPLIED,
        applied_at=timezone.now(),
        duration_ms=duration_ms,
        direction="",
        pid=None,
        error="",
        progress={},
        script_text=compress(source),
    )


def journal_progress_of(alias: str, version: Version | str, pid: int) -> dict[str, Any] | None:
    """The progress committed by this process's in-progress step (None: no such row):
    what the database holds, whatever the process believed when it was stopped."""
    found = (
        AppliedMigration.objects.using(alias)
        .filter(version=str(version), status=IN_PROGRESS, pid=pid)
        .values_list("progress", flat=True)
        .first()
    )
    return None if found is None else dict(found or {})


def journal_end(alias: str, *, version: str, status: str, error: str, pid: int) -> int:
    """A journaled step ended badly: ``failed``, or left ``in_progress`` with a note
    (interrupted by a signal: it is interrupted once this process is gone).  Only the
    row this process journaled is touched (a later run may own it by now)."""
    return (
        AppliedMigration.objects.using(alias)
        .filter(version=version, status=IN_PROGRESS, pid=pid)
        .update(status=status, error=redact.scrub(error))
    )


def resume_points(alias: str, version: Version, checksum: str) -> dict[str, Any]:
    """Where a rerun of a journaled step may start: the last committed key of each
    ``batched_update`` of the newest attempt of this same script that did not finish
    (its failure or interruption event, or the ``repair`` that cleared it)."""
    events_of = AuditEvent.objects.using(alias).filter(version=str(version))
    newest = events_of.filter(action__in=("apply", "repair")).order_by("-timestamp", "-id")
    for action, outcome, details in newest.values_list("action", "outcome", "details")[:5]:
        if action == "apply" and outcome == SUCCESS:
            return {}
        if action == "apply" and outcome == STARTED:
            continue
        facts = details or {}
        was = facts.get("was") or {}
        if action == "repair" and was.get("direction", "up") != "up":
            return {}  # a revert was interrupted: its keys say nothing of where an up got
        progress = facts.get("progress") or was.get("progress")
        if not progress or facts.get("checksum", was.get("checksum", checksum)) != checksum:
            continue
        return {
            f"{item['table']}:{item.get('key', 'id')}": item["last_key"]
            for item in progress.get("updates", [])
            if item.get("table") and item.get("last_key") is not None
        }
    return {}


def last_failures(alias: str, versions: Iterable[str]) -> dict[str, tuple[datetime, str]]:
    """The newest failed ``apply`` of each of ``versions`` not followed by a success:
    ``version -> (when, error)`` (``status`` notes it beside a pending version)."""
    wanted = [str(v) for v in versions]
    if not wanted or not tables_exist(alias):
        return {}
    rows = (
        AuditEvent.objects.using(alias)
        .filter(action="apply", version__in=wanted, outcome__in=(FAILURE, INTERRUPTED, SUCCESS))
        .order_by("-timestamp", "-id")
        .values_list("version", "outcome", "timestamp", "error")
    )
    found: dict[str, tuple[datetime, str]] = {}
    seen: set[str] = set()
    for version, outcome, when, error in rows:
        if version in seen:
            continue
        seen.add(version)
        if outcome != SUCCESS:
            found[version] = (when, error)
    return found


def insert_event_fields(alias: str, fields: dict[str, Any]) -> None:
    """Write one audit event whose fields were built earlier (``spool.py``)."""
    AuditEvent.objects.using(alias).create(**fields)


# -- read-only queries of the admin, `tbmigrate diff` and `migrator.running` -------------------
@dataclass(frozen=True)
class AppliedScript:
    """A history row with the script's text as it was applied (``text`` is ``None`` when it
    was not kept: applied before tbmigrate kept the text)."""

    version: str
    name: str
    status: str
    checksum: str
    applied_at: datetime
    run_id: str
    text: str | None


def script_as_applied(alias: str, version: Version | str) -> AppliedScript | None:
    """What ran for ``version`` (``None`` when it has no history row, or no tables)."""
    if not tables_exist(alias):
        return None
    row = (
        AppliedMigration.objects.using(alias)
        .filter(version=str(version))
        .values_list("version", "name", "status", "checksum", "applied_at", "run_id", "script_text")
        .first()
    )
    if row is None:
        return None
    return AppliedScript(*row[:6], text=decompress(row[6]))


def in_progress_records(alias: str) -> list[Record]:
    """The journaled steps (``in_progress`` rows), oldest first; empty without tables."""
    if not tables_exist(alias):
        return []
    return load_versions(alias, status=IN_PROGRESS)


def load_versions(alias: str, *, status: str) -> list[Record]:
    """The history rows of one ``status`` as ``Record``s, in version order."""
    return _records(
        AppliedMigration.objects.using(alias).filter(status=status), record_fields(alias)
    )


def recent_run_ids(alias: str, limit: int = 100) -> list[str]:
    """The run ids of the latest ``limit`` commands, newest first (by their last event)."""
    from django.db.models import Max

    rows = (
        AuditEvent.objects.using(alias)
        .exclude(run_id="")
        .values("run_id")
        .annotate(last=Max("timestamp"), last_id=Max("id"))
        .order_by("-last", "-last_id")
        .values_list("run_id", flat=True)
    )
    return list(rows[:limit])


# What a later success must be to resolve a failure of each action: (actions, same version).
_RESOLVED_BY = {
    "apply": ("apply", "fake"),
    "fake": ("apply", "fake"),
    "revert": ("revert",),
}
_STEP_ACTIONS = {"run": "apply", "rollback": "revert"}
_UNRESOLVED = (FAILURE, REFUSED, INTERRUPTED)


def resolving_event(alias: str, event: AuditEvent) -> AuditEvent | None:
    """The later event that made a failure good, or ``None`` while it is unresolved.

    A failed (or interrupted) step is resolved by a later success of the same version in
    the same direction (an apply also by a ``fake``, which adopts it); a failed ``run``
    or ``rollback`` by the resolution of the step that failed in it (by a later
    success of the same command when no step failed, e.g. a refusal); anything else
    (validate, repair, backup) by a later success of the same action on the same version.
    Events that are not failures resolve nothing and return ``None``.
    """
    if event.outcome not in _UNRESOLVED:
        return None
    events = AuditEvent.objects.using(alias)
    step_action = _STEP_ACTIONS.get(event.action)
    if step_action and event.run_id:
        failed_step = (
            events.filter(
                run_id=event.run_id, action=step_action, outcome__in=(FAILURE, INTERRUPTED)
            )
            .order_by("-timestamp", "-id")
            .first()
        )
        if failed_step is not None:
            return resolving_event(alias, failed_step)
    from django.db.models import Q

    later = events.filter(
        Q(timestamp__gt=event.timestamp) | Q(timestamp=event.timestamp, id__gt=event.pk),
        outcome=SUCCESS,
        action__in=_RESOLVED_BY.get(event.action, (event.action,)),
    )
    if event.version or event.action in _RESOLVED_BY:
        later = later.filter(version=event.version)
    return later.order_by("timestamp", "id").first()
