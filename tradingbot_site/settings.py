"""Settings for the tbmigrate project (``manage.py`` in this repository).

Databases come from the environment (``migrator/environment.py``): ``DATABASE_URL``,
else a SQLite file at ``SQLITE_DB_PATH`` (default ``tradingbot.sqlite3`` in this
folder), plus the aliases ``qa`` and ``prod`` when ``QA_DATABASE_URL`` /
``PROD_DATABASE_URL`` are set.  Unlike the ``tbmigrate`` command's built-in settings
(``migrator/console_settings.py``) they install the admin, to review the history in
a browser.
"""

from __future__ import annotations

import os
from pathlib import Path

from migrator.environment import databases_from_environ, logging_config, tbmigrate_settings

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

# tbmigrate's own settings from TBMIGRATE_* variables; every one has a default in
# migrator/conf.py.
globals().update(tbmigrate_settings(os.environ))

# Logs go to stderr (stdout stays the command's output, one JSON document under --json).
LOGGING = logging_config(os.environ)
