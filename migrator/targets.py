"""The databases tbmigrate can work on: aliases, how to show them, how to reach them.

Aliases come from ``settings.DATABASES`` (``default``, ``qa``, ``prod``) or are added
at run time from a URL with ``add()`` (scratch databases, custom scripts, tests).
Connection failures become ``DatabaseUnavailable`` with a one-line fix, and no
password ever reaches a message (``describe`` masks it).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections

from migrator import redact
from migrator.errors import ConfigurationError, DatabaseUnavailable, UsageError

VENDORS = {"postgresql", "sqlite"}
_URL_VARIABLES = {"default": "DATABASE_URL", "qa": "QA_DATABASE_URL", "prod": "PROD_DATABASE_URL"}


def variable_for(alias: str) -> str:
    if alias == "default" and not os.environ.get("DATABASE_URL"):
        return "SQLITE_DB_PATH"
    return _URL_VARIABLES.get(alias, f"DATABASES['{alias}']")


def require(alias: str) -> None:
    """Raise a clear error unless ``alias`` is configured and usable."""
    errors: dict[str, str] = getattr(settings, "TBMIGRATE_DATABASE_ERRORS", {})
    if alias in errors:
        raise ConfigurationError(errors[alias])
    if alias not in connections.settings:
        known = ", ".join(sorted(connections.settings)) or "none"
        hint = f"; set {_URL_VARIABLES[alias]} to define it" if alias in _URL_VARIABLES else ""
        raise UsageError(f"unknown database alias '{alias}' (configured: {known}){hint}")
    vendor = connections[alias].vendor
    if vendor not in VENDORS:
        raise ConfigurationError(
            f"database '{alias}' uses {vendor}, which tbmigrate does not support; "
            "use PostgreSQL or SQLite"
        )


def describe(alias: str) -> str:
    """The alias as a URL with its password masked, e.g. ``postgresql://bob:***@db:5432/trading``."""
    config = connections.settings[alias]
    engine = config.get("ENGINE", "")
    if engine.endswith("sqlite3"):
        return f"sqlite:///{config.get('NAME', '')}"
    if engine.endswith("postgresql"):
        user = config.get("USER") or ""
        secret = ":" + redact.MASK if config.get("PASSWORD") else ""
        auth = f"{user}{secret}@" if user else ""
        port = f":{config['PORT']}" if config.get("PORT") else ""
        return (
            f"postgresql://{auth}{config.get('HOST') or 'localhost'}{port}/{config.get('NAME', '')}"
        )
    return f"{engine or 'unconfigured'} ({alias})"


def vendor(alias: str) -> str:
    return connections[alias].vendor


def add(alias: str, url_or_config: str | dict[str, Any]) -> str:
    """Register an alias at run time from a URL (or a settings dict); return the alias."""
    from migrator.environment import parse_url

    if isinstance(url_or_config, str):
        redact.register_secret(redact.password_in_url(url_or_config))
        try:
            config = parse_url(url_or_config, alias)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    else:
        config = dict(url_or_config)
        redact.register_secret(config.get("PASSWORD"))
    full = connections.configure_settings({"default": {}, alias: config})[alias]
    if alias in connections.settings:
        remove(alias)
    connections.settings[alias] = full
    return alias


def remove(alias: str) -> None:
    """Close and forget a run-time alias."""
    if hasattr(connections._connections, alias):
        connections[alias].close()
        delattr(connections._connections, alias)
    connections.settings.pop(alias, None)


def application_name() -> str:
    return f"tbmigrate pid={os.getpid()} host={socket.gethostname()}"[:63]


def connect(alias: str):  # type: ignore[no-untyped-def]
    """Open the alias's connection, turning every failure into one clear line."""
    require(alias)
    connection = connections[alias]
    if connection.vendor == "sqlite":
        _check_sqlite_path(alias, str(connection.settings_dict.get("NAME") or ""))
    try:
        connection.ensure_connection()
        if connection.vendor == "postgresql":
            _tune_session(connection)
    except DatabaseError as exc:
        raise DatabaseUnavailable(connection_error_message(alias, exc)) from exc
    return connection


def _tune_session(connection) -> None:  # type: ignore[no-untyped-def]
    """Name the session after this process, and have the server watch for a dead client.

    The application name lets a waiting run (and a DBA) see who holds the migration
    lock.  ``client_connection_check_interval`` (PostgreSQL 14+) makes the server notice
    a killed tbmigrate even while its backend is busy in a long statement: without it
    a SIGKILLed run keeps its advisory lock and its open transaction until that
    statement ends, which may be hours for a data migration.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('application_name', %s, false)", [application_name()])
        if connection.pg_version >= 140000:
            cursor.execute("SET client_connection_check_interval = '1s'")


def connection_error_message(alias: str, exc: BaseException) -> str:
    text = redact.scrub(str(exc)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = lines[0] if lines else exc.__class__.__name__
    lowered = text.lower()
    where = f"{describe(alias)} ({variable_for(alias)})"
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        hint = "check the user and password in the URL"
    elif "role" in lowered and "does not exist" in lowered:
        hint = "check the user name in the URL"
    elif "does not exist" in lowered and "database" in lowered:
        hint = "create the database (createdb NAME) or fix the name in the URL"
    elif "connection refused" in lowered or "could not connect" in lowered:
        hint = "is the server running and the host and port right?"
    elif "could not translate host name" in lowered or "name or service not known" in lowered:
        hint = "check the host name in the URL"
    elif "timeout" in lowered:
        hint = "the server did not answer in time; check the network"
    elif "readonly" in lowered or "read-only" in lowered:
        hint = "the SQLite file is read-only; fix its permissions or point SQLITE_DB_PATH elsewhere"
    elif "unable to open" in lowered:
        hint = "check that SQLITE_DB_PATH names a file in a folder that exists and is writable"
    else:
        hint = "check the database URL and that the server accepts connections"
    if "\n" in detail or len(detail) > 300:
        detail = detail[:300]
    return f"cannot use database {where}: {detail} ({hint})"


def require_writable(alias: str) -> None:
    """Refuse, before the lock is taken, a SQLite file this process cannot write.

    SQLite opens a file it may not write *read-only*, without a word, and fails only at
    the first write, part-way through a run.  Opening it for writing as SQLite would
    tells us first (whatever the reason: permissions, another owner, ``chattr +i``, a
    read-only mount).
    """
    if vendor(alias) != "sqlite":
        return
    name = str(connections[alias].settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:") or not os.path.exists(name):
        return
    try:
        os.close(os.open(name, os.O_RDWR))
    except OSError as exc:
        raise DatabaseUnavailable(
            f"cannot use database {describe(alias)} ({variable_for(alias)}): the file is "
            f"read-only for this user ({exc.strerror}); fix its permissions, run as its "
            "owner, or point the URL at a writable copy"
        ) from None


def _check_sqlite_path(alias: str, name: str) -> None:
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    folder = Path(name).parent
    if not folder.is_dir():
        raise DatabaseUnavailable(
            f"cannot use database {describe(alias)}: the folder {folder} does not exist "
            f"(create it or point {variable_for(alias)} elsewhere)"
        )
