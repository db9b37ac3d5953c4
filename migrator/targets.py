"""The databases tbmigrate can work on: aliases, how to show them, how to reach them.

Aliases come from ``settings.DATABASES`` (``default``, ``qa``, ``prod``) or are added
at run time from a URL with ``add()`` (scratch databases, custom scripts, tests).
Connection failures become ``DatabaseUnavailable`` with a one-line fix, and no
password ever reaches a message (``describe`` masks it).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections

from migrator import redact
from migrator.errors import ConfigurationError, DatabaseMissing, DatabaseUnavailable, UsageError

VENDORS = {"postgresql", "sqlite"}
_URL_VARIABLES = {"default": "DATABASE_URL", "qa": "QA_DATABASE_URL", "prod": "PROD_DATABASE_URL"}


# alias -> the environment variable its URL came from, for aliases added at run time
# (a fleet file's databases), so that messages name the variable to fix
_VARIABLES: dict[str, str] = {}


def added_from(alias: str) -> str | None:
    """The variable an alias added at run time was read from (None: not one of those)."""
    return _VARIABLES.get(alias)


def variable_for(alias: str) -> str:
    if alias in _VARIABLES:
        return _VARIABLES[alias]
    if alias == "default" and not os.environ.get("DATABASE_URL"):
        return "SQLITE_DB_PATH"
    return _URL_VARIABLES.get(alias, f"DATABASES['{alias}']")


def require(alias: str) -> None:
    """Raise a clear error unless ``alias`` is configured and usable."""
    errors: dict[str, str] = getattr(settings, "TBMIGRATE_DATABASE_ERRORS", {})
    if alias in errors:
        raise ConfigurationError(errors[alias])
    if alias not in connections.settings:
        # A name of the fleet file is an alias too (its URL read from its variable now).
        from migrator import fleet

        fleet.add_alias(alias)
    if alias not in connections.settings:
        from migrator import fleet

        known = ", ".join(sorted(connections.settings)) or "none"
        hint = f"; set {_URL_VARIABLES[alias]} to define it" if alias in _URL_VARIABLES else ""
        raise UsageError(
            f"unknown database alias '{alias}' (configured: {known}{fleet.names_hint()}){hint}"
        )
    vendor = connections[alias].vendor
    if vendor not in VENDORS:
        raise ConfigurationError(
            f"database '{alias}' uses {vendor}, which tbmigrate does not support; "
            "use PostgreSQL or SQLite"
        )


# alias -> the SQLite path an in-memory stand-in replaces while a read-only command runs
_STAND_INS: dict[str, str] = {}


def describe(alias: str) -> str:
    """The alias as a URL with its password masked, e.g. ``postgresql://bob:***@db:5432/trading``."""
    config = connections.settings[alias]
    engine = config.get("ENGINE", "")
    if engine.endswith("sqlite3"):
        return f"sqlite:///{_STAND_INS.get(alias) or config.get('NAME', '')}"
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


def add(alias: str, url_or_config: str | dict[str, Any], *, variable: str | None = None) -> str:
    """Register an alias at run time from a URL (or a settings dict); return the alias.

    ``variable``: the environment variable the URL came from, named by messages."""
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
    if variable:
        _VARIABLES[alias] = variable
    return alias


SCRATCH_PREFIX = "tbmigrate_scratch_"  # the aliases (and names) of throw-away databases


def is_scratch(alias: str) -> bool:
    """Whether ``alias`` is a throw-away database of validation (``validation/scratch.py``)."""
    return alias.startswith(SCRATCH_PREFIX)


def remove(alias: str) -> None:
    """Close and forget a run-time alias."""
    if any(c.alias == alias for c in connections.all(initialized_only=True)):
        connections[alias].close()
        del connections[alias]
    connections.settings.pop(alias, None)
    _VARIABLES.pop(alias, None)


def application_name(step: str = "", action: str = "") -> str:
    """``tbmigrate pid=4242 apply=1.0.3 host=ci-runner-7`` (PostgreSQL keeps 63 bytes):
    who is migrating, and which step it is on, for the lock holder's description."""
    doing = f" {action}={step}" if step and action else ""
    return f"tbmigrate pid={os.getpid()}{doing} host={socket.gethostname()}"[:63]


_APPLICATION = re.compile(
    r"^tbmigrate pid=(?P<pid>\d+)(?: (?P<action>apply|revert|fake)=(?P<step>\S+))?"
    r"(?: host=(?P<host>\S*))?"
)


def parse_application_name(name: str) -> dict[str, Any]:
    """The facts ``application_name`` put in a session's name (empty if not ours)."""
    match = _APPLICATION.match(name)
    if not match:
        return {}
    found: dict[str, Any] = {"pid": int(match.group("pid"))}
    if match.group("step"):
        found["step"], found["action"] = match.group("step"), match.group("action")
    if match.group("host"):
        found["client_host"] = match.group("host")
    return found


def connect(alias: str, *, create: bool = False):
    """Open the alias's connection, turning every failure into one clear line.

    A SQLite file that does not exist is created only when ``create`` (a command that
    writes: run, rollback, repair, backup); reading it raises ``DatabaseMissing``, so
    ``status`` or a validation never leaves an empty file behind.
    """
    require(alias)
    connection = connections[alias]
    if connection.vendor == "sqlite":
        name = str(connection.settings_dict.get("NAME", "") or "")
        _check_sqlite_path(alias, name)
        if not create and connection.connection is None and not sqlite_exists(alias):
            raise DatabaseMissing(
                f"database {describe(alias)} does not exist yet ({variable_for(alias)}): "
                "nothing has been applied to it; `tbmigrate run` creates it"
            )
    try:
        connection.ensure_connection()
        if connection.vendor == "postgresql":
            _tune_session(connection)
    except DatabaseError as exc:
        raise DatabaseUnavailable(connection_error_message(alias, exc)) from exc
    return connection


def _tune_session(connection) -> None:
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


def sqlite_path(alias: str) -> Path | None:
    """The file of a SQLite alias (``None``: PostgreSQL, or a database in memory)."""
    config = connections.settings[alias]
    if not str(config.get("ENGINE", "")).endswith("sqlite3"):
        return None
    name = str(config.get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


@contextlib.contextmanager
def empty_stand_in(alias: str) -> Iterator[bool]:
    """Read a SQLite alias whose file does not exist as the empty database it would be:
    in memory for the body, so a validation never creates the file (yields whether it
    stood in).  Everything shown still names the real path."""
    path = sqlite_path(alias)
    if path is None or path.exists() or alias in _STAND_INS:
        yield False
        return
    require_sqlite_folder(alias)
    config = connections.settings[alias]
    connections[alias].close()
    _STAND_INS[alias] = str(config["NAME"])
    config["NAME"] = ":memory:"
    try:
        yield True
    finally:
        connections[alias].close()
        config["NAME"] = _STAND_INS.pop(alias)


def sqlite_exists(alias: str) -> bool:
    """False only for a SQLite alias whose file is not there (yet, or any more)."""
    path = sqlite_path(alias)
    return path is None or path.exists()


def require_sqlite_folder(alias: str) -> None:
    """Raise the clear error of a SQLite path whose folder does not exist."""
    path = sqlite_path(alias)
    if path is not None:
        _check_sqlite_path(alias, str(path))


def _check_sqlite_path(alias: str, name: str) -> None:
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    folder = Path(name).parent
    if not folder.is_dir():
        raise DatabaseUnavailable(
            f"cannot use database {describe(alias)}: the folder {folder} does not exist "
            f"(create it or point {variable_for(alias)} elsewhere)"
        )
