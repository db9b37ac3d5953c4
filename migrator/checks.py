"""Django system checks, so ``manage.py check --deploy`` stops a deploy that would break.

Two checks, registered in ``apps.py``:

- ``database_urls`` (every ``manage.py`` command): ``migrator.E003`` for a database URL
  that cannot be used.  It only reads settings (``TBMIGRATE_DATABASE_ERRORS``, filled
  by ``migrator/environment.py``), so it costs nothing.
- ``migrations`` (``--deploy`` only, tagged ``database``): reads the scripts and each
  database's history through ``MigrationSystem.status()``, the same states ``status``
  shows.  It connects to a database, which is why it is a deployment check: ``runserver``,
  ``shell`` or ``migrate`` never pay for it, nor fail on an unreachable server.  It
  checks the aliases given with ``--database`` (Django's convention for database
  checks), else ``default``.

Ids: ``W001`` migrations pending; ``E001`` an applied script was edited; ``E002`` a
script cannot be loaded; ``E003`` a database URL cannot be used; ``E004`` an applied
script's file is gone; ``E005`` a migration failed part-way; ``E006`` the database
cannot be reached; ``E007`` a non-atomic step was interrupted; ``W002`` one is running.
Nothing here raises: every failure is a message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.checks import Warning as CheckWarning
from django.db import DatabaseError, connections

from migrator import planner
from migrator.errors import MigratorError, ScriptError

APP_LABEL = "migrator"


def database_urls(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[Error]:
    """``migrator.E003`` for each configured URL that cannot be used."""
    if not _concerns_us(app_configs):
        return []
    problems: dict[str, str] = getattr(settings, "TBMIGRATE_DATABASE_ERRORS", {})
    return [
        Error(
            message,
            hint="Fix the URL in the environment (the message names the variable).",
            obj=_database(alias),
            id="migrator.E003",
        )
        for alias, message in sorted(problems.items())
    ]


def migrations(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Iterable[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """Pending, edited, missing and failed migrations of each database; bad scripts."""
    if not _concerns_us(app_configs):
        return []
    unusable = getattr(settings, "TBMIGRATE_DATABASE_ERRORS", {})
    messages: list[CheckMessage] = []
    for alias in databases if databases is not None else ["default"]:
        if alias in unusable:
            continue  # database_urls reports it (E003)
        try:
            status = _status(alias)
        except ScriptError as exc:
            # The scripts are the same for every database: once is enough.
            return [
                *messages,
                Error(
                    str(exc),
                    hint="Fix or remove the script; `tbmigrate status` shows the same error.",
                    obj="migration_scripts",
                    id="migrator.E002",
                ),
            ]
        except (MigratorError, DatabaseError) as exc:
            messages.append(
                Error(
                    f"cannot read the migration state: {exc}",
                    hint="Check that the database is running and reachable from here.",
                    obj=_database(alias),
                    id="migrator.E006",
                )
            )
            continue
        messages.extend(_state_messages(alias, status))
    return messages


def _status(alias: str) -> Any:
    """``MigrationSystem(alias).status()``, closing the connection only if it opened it."""
    from migrator.api import MigrationSystem

    was_open = alias in connections.settings and connections[alias].connection is not None
    system = MigrationSystem(alias)
    try:
        return system.status()
    finally:
        if not was_open:
            system.close()


def _state_messages(alias: str, status: Any) -> list[CheckMessage]:
    obj = _database(alias)
    option = "" if alias == "default" else f" --database {alias}"
    messages: list[CheckMessage] = []
    pending = [m for m in status.migrations if m.state == planner.PENDING]
    if pending:
        late = [m.label for m in pending if m.out_of_order]
        note = f" ({', '.join(late)} older than the newest applied one)" if late else ""
        messages.append(
            CheckWarning(
                f"{len(pending)} migration(s) pending on {status.database}: "
                + ", ".join(m.label for m in pending)
                + note,
                hint=f"Run `python manage.py tbmigrate run{option}` before deploying.",
                obj=obj,
                id="migrator.W001",
            )
        )
    for m in status.migrations:
        if m.state == planner.CHANGED:
            messages.append(
                Error(
                    f"{m.label} was edited after it was applied to {status.database}",
                    hint="Restore the file, or accept the edit with "
                    f"`python manage.py tbmigrate repair --checksums{option}`.",
                    obj=obj,
                    id="migrator.E001",
                )
            )
        elif m.state == planner.MISSING:
            messages.append(
                Error(
                    f"{m.label} is applied to {status.database} but its script file is gone",
                    hint="Restore the file from version control.",
                    obj=obj,
                    id="migrator.E004",
                )
            )
        elif m.state == planner.FAILED_STATE:
            messages.append(
                Error(
                    f"{m.label} failed part-way on {status.database}",
                    hint="Clean up by hand, then "
                    f"`python manage.py tbmigrate repair {m.version}{option}`.",
                    obj=obj,
                    id="migrator.E005",
                )
            )
        elif m.state == planner.INTERRUPTED:
            messages.append(
                Error(
                    f"{planner.describe_problem(m)} on {status.database}",
                    hint="Check what it did, then "
                    f"`python manage.py tbmigrate repair {m.version}{option}`.",
                    obj=obj,
                    id="migrator.E007",
                )
            )
        elif m.state == planner.RUNNING:
            messages.append(
                CheckWarning(
                    f"{planner.describe_problem(m)} on {status.database}",
                    hint="Wait for it to finish before deploying.",
                    obj=obj,
                    id="migrator.W002",
                )
            )
    return messages


def _concerns_us(app_configs: Sequence[AppConfig] | None) -> bool:
    return app_configs is None or any(config.label == APP_LABEL for config in app_configs)


def _database(alias: str) -> str:
    return f"database '{alias}'"
