"""Settings from the environment, never raising: database URLs, tbmigrate's variables, logging.

Shared by the built-in settings of the ``tbmigrate`` command (``migrator.settings``)
and this repository's project (``tradingbot_site.settings``); a host project that
installs ``"migrator"`` as an app may use them too, or not.

Settings must import cleanly even when a URL is wrong, so that ``tbmigrate`` can report
the mistake as one clear line (and ``manage.py check`` as a system check) instead of a
traceback from deep inside Django's start-up.  A bad alias is configured with Django's
dummy backend and its error is kept in ``errors``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SUPPORTED_ENGINES = {
    "django.db.backends.postgresql": "postgresql",
    "django.db.backends.sqlite3": "sqlite",
}

# alias -> environment variable holding its URL
URL_VARIABLES = {"default": "DATABASE_URL", "qa": "QA_DATABASE_URL", "prod": "PROD_DATABASE_URL"}

DUMMY = {"ENGINE": "django.db.backends.dummy"}

DEFAULT_SQLITE_FILE = "tradingbot.sqlite3"


def parse_url(url: str, variable: str) -> dict[str, Any]:
    """Parse one database URL into a Django settings dict, or raise ValueError with a fix."""
    import dj_database_url

    from migrator.redact import mask_url

    if "://" not in url:
        # Not a URL at all: echo none of it, since we cannot tell which part is secret.
        raise ValueError(
            f"{variable} is not a database URL (it has no scheme://); "
            "expected postgres://USER:PASSWORD@HOST:PORT/NAME or sqlite:///PATH"
        )
    shown = mask_url(url)
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(url))
    except Exception as exc:  # dj-database-url raises ValueError/KeyError on odd input
        reason = str(exc).replace(url, shown)
        raise ValueError(
            f"{variable}={shown} cannot be parsed ({reason}); "
            "expected postgres://USER:PASSWORD@HOST:PORT/NAME or sqlite:///PATH"
        ) from None
    engine = config.get("ENGINE", "")
    if engine not in SUPPORTED_ENGINES:
        scheme = url.split("://", 1)[0]
        raise ValueError(
            f"{variable}={shown} uses '{scheme}', which tbmigrate does not support; "
            "use a postgres:// (or postgresql://) or sqlite:/// URL"
        )
    if engine.endswith("sqlite3") and config.get("NAME") in ("", ":memory:"):
        # dj-database-url reads `sqlite://file.db` (two slashes) as an in-memory database:
        # a run would "succeed" and leave nothing behind.
        raise ValueError(
            f"{variable}={shown} names no SQLite file, only a database in memory that would "
            "vanish when tbmigrate exits; use sqlite:////absolute/path.sqlite3 (four slashes) "
            "or sqlite:///relative/path.sqlite3 (three)"
        )
    if not config.get("NAME"):
        raise ValueError(f"{variable}={shown} names no database; add it after the host: .../NAME")
    if engine.endswith("sqlite3"):
        # A relative file is taken from the working directory, as the shell would.
        config["NAME"] = str(Path(config["NAME"]).expanduser().absolute())
    if engine.endswith("postgresql") and config.get("PORT") in ("", None):
        config["PORT"] = ""
    return config


def sqlite_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(Path(path).expanduser().absolute())}


def databases_from_environ(
    environ: Mapping[str, str], base_dir: Path
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """``(DATABASES, errors)`` from DATABASE_URL / SQLITE_DB_PATH / QA_ / PROD_DATABASE_URL.

    Without either of the first two, ``default`` is ``tradingbot.sqlite3`` in ``base_dir``;
    a relative ``SQLITE_DB_PATH`` is taken from the working directory.
    """
    databases: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for alias, variable in URL_VARIABLES.items():
        url = environ.get(variable, "").strip()
        if not url:
            continue
        try:
            databases[alias] = parse_url(url, variable)
        except ValueError as exc:
            databases[alias] = dict(DUMMY)
            errors[alias] = str(exc)
    if "default" not in databases:
        path = environ.get("SQLITE_DB_PATH", "").strip() or base_dir / DEFAULT_SQLITE_FILE
        databases["default"] = sqlite_config(path)
    return databases, errors


# TBMIGRATE_<NAME> variables copied into settings as they are (text), or as a list.
_TEXT_VARIABLES = ("SCRIPTS_DIR", "BACKUP_DIR", "PG_DUMP", "ADMIN_DATABASE")
_LIST_VARIABLES = ("BACKUP_DATABASES",)


def tbmigrate_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``TBMIGRATE_*`` settings the environment sets (defaults stay in ``conf.py``)."""
    found: dict[str, Any] = {}
    for name in _TEXT_VARIABLES:
        if environ.get(f"TBMIGRATE_{name}"):
            found[f"TBMIGRATE_{name}"] = environ[f"TBMIGRATE_{name}"]
    for name in _LIST_VARIABLES:
        if environ.get(f"TBMIGRATE_{name}"):
            items = environ[f"TBMIGRATE_{name}"].split(",")
            found[f"TBMIGRATE_{name}"] = [item.strip() for item in items if item.strip()]
    return found


def logging_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """``LOGGING``: the ``migrator`` loggers to stderr, passwords masked.

    stdout stays the command's output (one JSON document under ``--json``).
    ``TBMIGRATE_LOG_FORMAT=json``: one JSON object a line (``migrator/logs.py``), INFO
    by default, so CI gets a record of every step.  Text: WARNING by default, and the
    step records, which the command already prints as progress, only when
    ``TBMIGRATE_LOG_LEVEL`` asks.
    """
    as_json = environ.get("TBMIGRATE_LOG_FORMAT", "").strip().lower() == "json"
    level = environ.get("TBMIGRATE_LOG_LEVEL", "").strip().upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "redact": {"()": "migrator.redact.RedactingFilter"},
            "hide_steps": {"()": "migrator.logs.HideStepRecords"},
        },
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            "json": {"()": "migrator.logs.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "filters": ["redact"] + ([] if as_json or level else ["hide_steps"]),
                "formatter": "json" if as_json else "plain",
            }
        },
        "loggers": {
            "migrator": {
                "handlers": ["console"],
                "level": level or ("INFO" if as_json else "WARNING"),
            }
        },
    }
