"""Every error tbmigrate raises on purpose, each with the fix in its message.

The management command turns these into ``CommandError(message, returncode=exit_code)``.
Exit codes: 1 for a failure (a migration, a check, the database), 2 for bad usage.
"""

from __future__ import annotations


class MigratorError(Exception):
    """Base class: ``str(exc)`` is one line saying what is wrong and what to do."""

    exit_code = 1


class UsageError(MigratorError):
    """The command line asks for something that does not exist or cannot be."""

    exit_code = 2


class FleetFileError(UsageError):
    """The fleet file (``tbmigrate.fleet.toml``) cannot be used: missing, not TOML, a bad
    or duplicate entry, a variable that is not set or holds no usable URL; or a
    ``--only``/``--group`` it does not have.  The message names the file and the entry."""


class ConfigurationError(MigratorError):
    """Settings or environment are wrong (bad URL, unsupported database, ...)."""


class DatabaseUnavailable(MigratorError):
    """The database cannot be reached or written."""


class DatabaseMissing(DatabaseUnavailable):
    """A SQLite file that does not exist, met by a command that only reads."""


class ScriptError(MigratorError):
    """A migration script cannot be loaded; the message names the file."""


class HistoryConflict(MigratorError):
    """Applied history disagrees with the scripts (changed, missing, failed, out of order)."""


class MigrationFailed(MigratorError):
    """A step raised; it was rolled back (or recorded as failed when not atomic)."""

    def __init__(self, message: str, version: str | None = None, step: object = None) -> None:
        super().__init__(message)
        self.version = version
        self.step = step  # the executor's StepResult for the failed step
        self.result: object = None  # the api's RunResult so far, set by MigrationSystem


class Interrupted(MigrationFailed):
    """A signal (SIGTERM, SIGINT) stopped a step; it ended as a failure does."""

    def __init__(
        self, message: str, version: str | None = None, step: object = None, signum: int = 15
    ) -> None:
        super().__init__(message, version, step)
        self.signum = signum

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return 128 + self.signum


class RollbackRefused(MigratorError):
    """A rollback was refused before anything was reverted."""

    def __init__(self, message: str, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.details = details  # e.g. the failed validation checks, for the audit event


class HazardRefused(MigratorError):
    """The lock-hazard gate refused a run before its first statement: a statement would
    stall live traffic on a large table (``validation/hazards.py``)."""

    def __init__(self, message: str, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.details = details  # the gate's verdict, for the audit event


class LockTimeout(MigratorError):
    """Another process holds the migration lock."""


class Aborted(MigratorError):
    """The user answered no at a confirmation prompt."""


class BackupFailed(MigratorError):
    """A backup could not be taken (or cannot be, e.g. pg_dump is missing); nothing ran."""


class SqlScriptError(ScriptError):
    """SQL that cannot run as written (e.g. BEGIN/COMMIT inside tbmigrate's own
    transaction); the message names the statement and the line where it starts."""


class SchemaChangeError(MigratorError):
    """A ``db`` helper cannot make a schema change as asked (rows that break the new
    constraint, an index of that name with another definition, ``CONCURRENTLY`` inside
    a transaction); the message says why and what to do, and nothing was left half-done."""
