"""The built-in settings of the ``tbmigrate`` command (``migrator/console.py``).

Only what the command needs is installed (no admin, auth or sessions: start-up pays for
every app), and everything comes from the environment (``migrator/environment.py``):
``DATABASE_URL`` or ``SQLITE_DB_PATH`` (default ``tradingbot.sqlite3`` in the working
directory), ``QA_DATABASE_URL`` / ``PROD_DATABASE_URL`` for ``--database qa|prod``, and
the ``TBMIGRATE_*`` variables.  Relative paths are taken from the working directory:
there is no project folder, and the package's own folder (site-packages) is never
written to.  A project with settings of its own uses them instead:
``DJANGO_SETTINGS_MODULE=mysite.settings tbmigrate …`` or ``--settings``.
"""

from __future__ import annotations

import os
from pathlib import Path

from migrator.environment import databases_from_environ, logging_config, tbmigrate_settings

INSTALLED_APPS = ["migrator"]

DATABASES, TBMIGRATE_DATABASE_ERRORS = databases_from_environ(os.environ, Path.cwd())
globals().update(tbmigrate_settings(os.environ))

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# No web page is served from these settings; Django only wants the setting to exist.
SECRET_KEY = "tbmigrate-command-line-only"

LOGGING = logging_config(os.environ)
