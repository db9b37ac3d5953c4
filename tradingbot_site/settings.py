"""Settings for the tbmigrate project.

Databases come from the environment (see ``databases.py``): ``DATABASE_URL``, else a
SQLite file at ``SQLITE_DB_PATH`` (default ``tradingbot.sqlite3`` here), plus the
aliases ``qa`` and ``prod`` when ``QA_DATABASE_URL`` / ``PROD_DATABASE_URL`` are set.
"""

from __future__ import annotations

import os
from pathlib import Path

from tradingbot_site.databases import databases_from_environ

BASE_DIR = Path(__file__).resolve().parent.parent

# The admin is a local review tool; production deployments set their own key.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "tbmigrate-local-only-not-a-secret")
DEBUG = os.environ.get("TBMIGRATE_DEBUG", "") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"] + [
    host for host in os.environ.get("TBMIGRATE_ALLOWED_HOSTS", "").split(",") if host
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "migrator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tradingbot_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "tradingbot_site.wsgi.application"

DATABASES, TBMIGRATE_DATABASE_ERRORS = databases_from_environ(os.environ, BASE_DIR)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

# Error pages must never show a database URL (DEBUG pages list the environment).
DEFAULT_EXCEPTION_REPORTER_FILTER = "migrator.error_pages.SafeReporterFilter"

# tbmigrate's own settings; every one has a default in migrator/conf.py.
if os.environ.get("TBMIGRATE_SCRIPTS_DIR"):
    TBMIGRATE_SCRIPTS_DIR = os.environ["TBMIGRATE_SCRIPTS_DIR"]
if os.environ.get("TBMIGRATE_BACKUP_DIR"):
    TBMIGRATE_BACKUP_DIR = os.environ["TBMIGRATE_BACKUP_DIR"]
if os.environ.get("TBMIGRATE_BACKUP_DATABASES"):
    TBMIGRATE_BACKUP_DATABASES = [
        alias.strip()
        for alias in os.environ["TBMIGRATE_BACKUP_DATABASES"].split(",")
        if alias.strip()
    ]
if os.environ.get("TBMIGRATE_PG_DUMP"):
    TBMIGRATE_PG_DUMP = os.environ["TBMIGRATE_PG_DUMP"]
if os.environ.get("TBMIGRATE_ADMIN_DATABASE"):
    TBMIGRATE_ADMIN_DATABASE = os.environ["TBMIGRATE_ADMIN_DATABASE"]

# Logs go to stderr (stdout stays the command's output, one JSON document under --json).
# TBMIGRATE_LOG_FORMAT=json: one JSON object a line (migrator/logs.py), INFO by default,
# so CI gets a record of every step.  Text: WARNING by default, and the step records,
# which the command already prints as progress, only when TBMIGRATE_LOG_LEVEL asks.
_LOG_JSON = os.environ.get("TBMIGRATE_LOG_FORMAT", "").strip().lower() == "json"
_LOG_LEVEL = os.environ.get("TBMIGRATE_LOG_LEVEL", "").strip().upper()
LOGGING = {
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
            "filters": ["redact"] + ([] if _LOG_JSON or _LOG_LEVEL else ["hide_steps"]),
            "formatter": "json" if _LOG_JSON else "plain",
        }
    },
    "loggers": {
        "migrator": {
            "handlers": ["console"],
            "level": _LOG_LEVEL or ("INFO" if _LOG_JSON else "WARNING"),
        }
    },
}
