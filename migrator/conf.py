"""tbmigrate's settings, with their defaults, read at call time (never copied at import).

Each setting is ``TBMIGRATE_<NAME>`` in Django settings; ``get("NAME")`` returns it or
the default below.  Reading lazily keeps ``override_settings`` working in tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Folder holding the versioned scripts (env TBMIGRATE_SCRIPTS_DIR overrides it).
    "SCRIPTS_DIR": "migration_scripts",
    # Seconds a second run/rollback waits for the migration lock before giving up.
    "LOCK_TIMEOUT": 60.0,
    # Aliases whose run/rollback ask for confirmation unless --no-input.
    "PROTECTED_DATABASES": ["prod"],
    # Where `tbmigrate backup` writes; aliases always backed up before `run`.
    "BACKUP_DIR": "backups",
    "BACKUP_DATABASES": [],
    # The pg_dump used for PostgreSQL backups (a name on PATH or a full path).
    "PG_DUMP": "pg_dump",
    # Callables that may veto a rollback (see migrator.validation.rollback).
    "ROLLBACK_GUARDS": ["migrator.validation.guards.active_trading_sessions"],
    # Tables that schema validation leaves alone (tbmigrate's own and Django's).
    "IGNORED_TABLES": [
        "tbmigrate_applied_migration",
        "tbmigrate_audit_event",
        "django_migrations",
        "django_content_type",
        "django_admin_log",
        "django_session",
        "auth_group",
        "auth_group_permissions",
        "auth_permission",
        "auth_user",
        "auth_user_groups",
        "auth_user_user_permissions",
        "sqlite_sequence",
    ],
    # PostgreSQL: how long a step waits for a table lock, and how it retries.  While a
    # migration waits for a lock on a busy table, every query on that table waits behind
    # it: so the first attempt waits 0.1 s, each retry 1.5 times longer up to 0.5 s, with
    # pauses doubling from 0.1 s up to 5 s (jittered) in between for the queued traffic to
    # drain; at most 30 retries within 120 s of waits and pauses (README: Safety, measured
    # with bench/live.py).  Atomic steps: a statement running longer than 10 s is cancelled
    # (a long statement there holds its locks to the commit); non-atomic ones have none.
    "PG_LOCK_TIMEOUT": 0.1,
    "PG_LOCK_TIMEOUT_MAX": 0.5,
    "PG_LOCK_RETRIES": 30,
    "PG_LOCK_RETRY_PAUSE": 0.1,
    "PG_LOCK_RETRY_PAUSE_MAX": 5.0,
    "PG_LOCK_RETRY_BUDGET": 120.0,
    "PG_STATEMENT_TIMEOUT": 10.0,
    # The lock-hazard gate (PostgreSQL): a table estimated above this many rows is large,
    # and `run` refuses a statement that would stall traffic on it (a long UPDATE, an
    # index built without CONCURRENTLY, SET NOT NULL with a scan, a rewrite, ...) unless
    # the script accepts the hazard.  10,000 rows: the slowest of these, an UPDATE of the
    # whole table, took 20 us a row on the development machine idle and ~38 us a row under
    # the trading workload of issue 12 (1.5M rows in 58 s), so a table under the threshold
    # stalls traffic for at most ~0.4 s: inside the 1 s longest-stall target, near the
    # 0.5 s a lock wait is allowed.  0 turns the gate off (README: Safety).
    "HAZARD_TABLE_ROWS": 10_000,
    # How many SQL statements of one step the audit event keeps.
    "MAX_STATEMENTS_KEPT": 500,
    # validate migration/rollback: seconds a dry run waits for a table lock before giving
    # up (PostgreSQL), and the age in seconds from which another session's query or
    # transaction counts as long-running.
    "PREFLIGHT_LOCK_TIMEOUT": 3.0,
    "PREFLIGHT_LONG_RUNNING": 60.0,
    # `validate scripts`: the vendors ("postgresql", "sqlite") every script is replayed on.
    # None: the vendor of --database and of every database in DATABASES, so a project
    # configured for PostgreSQL only is not asked to run its scripts on SQLite.
    "VALIDATE_VENDORS": None,
    # Seconds a failure's audit event is retried while the database is unreachable (a
    # restart, a failover) before it is kept in the spool file for the next command.
    "AUDIT_RETRY_SECONDS": 15.0,
    # Where PostgreSQL failures that could not be audited wait (SQLite: beside the file).
    "SPOOL_DIR": "tbmigrate-spool",
    # The database alias whose history the admin shows when no ?database= is given
    # (env TBMIGRATE_ADMIN_DATABASE overrides it).  Django's own tables stay in default.
    "ADMIN_DATABASE": "default",
    # The fleet file: named databases, each with the variable holding its URL (see
    # migrator/fleet.py); relative: from the working directory.  Its names are database
    # aliases too (`tbmigrate run --database exchange-a`).
    "FLEET_FILE": "tbmigrate.fleet.toml",
    # Seconds a fleet database's PostgreSQL connection attempt may take (libpq's
    # connect_timeout) unless its URL or PGCONNECT_TIMEOUT says: one server that does
    # not answer must not hold the whole fleet up.
    "FLEET_CONNECT_TIMEOUT": 10,
}


def get(name: str, alias: str | None = None) -> Any:
    """``settings.TBMIGRATE_<NAME>``, else the environment variable of that name (numbers
    and the lists' comma-separated text parsed as the default's type), else the default.

    With ``alias``, a value set for that database alone comes first: its ``DATABASES``
    entry may hold ``"TBMIGRATE": {"PG_LOCK_TIMEOUT": 0.2}`` (settings of one database,
    beside its connection settings, as ``TEST`` is)."""
    if alias is not None:
        own = settings.DATABASES.get(alias, {}).get("TBMIGRATE") or {}
        if name in own:
            return own[name]
    key = f"TBMIGRATE_{name}"
    if hasattr(settings, key):
        return getattr(settings, key)
    default = DEFAULTS[name]
    text = os.environ.get(key)
    if text is None or text.strip() == "":
        return default
    return _parsed(text.strip(), default, key)


def _parsed(text: str, default: Any, key: str) -> Any:
    try:
        if isinstance(default, bool):
            return text.lower() in ("1", "true", "yes", "on")
        if isinstance(default, float) or (default is None and _number(text)):
            return float(text)
        if isinstance(default, int):
            return int(text)
    except ValueError:
        from migrator.errors import ConfigurationError

        raise ConfigurationError(f"{key}={text!r} is not a number") from None
    if isinstance(default, list):
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def base_dir() -> Path:
    """Where relative path settings start: the project's ``BASE_DIR`` when its settings
    have one (this repository, a host project), else the working directory (the
    ``tbmigrate`` command's built-in settings have none: there is no project folder,
    and the installed package's folder is never written to)."""
    base = getattr(settings, "BASE_DIR", None)
    return Path(base) if base else Path.cwd()


def project_path(name: str) -> Path:
    """A path setting (a ``str`` or a ``Path``), relative ones taken from ``base_dir()``."""
    path = Path(str(get(name))).expanduser()
    return path if path.is_absolute() else base_dir() / path


def scripts_dir() -> Path:
    return project_path("SCRIPTS_DIR")
