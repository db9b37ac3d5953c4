"""Settings for the test run: the project's, minus anything taken from the environment.

Tests never touch the databases of DATABASE_URL / QA_ / PROD_DATABASE_URL: each test
makes its own databases (see ``conftest.py``).  ``default`` is pytest-django's
in-memory SQLite database, used by the admin's own tables.
"""

from tradingbot_site.settings import *  # noqa: F403

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
TBMIGRATE_DATABASE_ERRORS: dict[str, str] = {}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
