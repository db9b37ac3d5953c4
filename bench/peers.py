"""The peers: other migration tools, run on the same N migrations as tbmigrate.

Each peer writes, once per N, a folder holding that tool's own form of the generated
scripts (see ``SCRIPT`` in ``run.py``): migration i of 1..N creates ``bench_t{i}`` on the
way up and drops it on the way down, each migration in its own transaction, in order.
``run.py`` then times three whole processes against one fresh database, as it does for
tbmigrate: ``up`` (apply all), ``status`` (all applied) and ``down`` (roll all back).

- ``alembic``: ``alembic upgrade head`` / ``current`` / ``downgrade base`` over N revision
  files chained by ``down_revision``, each calling ``op.execute``; ``env.py`` sets
  ``transaction_per_migration=True``.  On SQLite it applies SQLAlchemy's documented recipe
  (driver autocommit off, explicit ``BEGIN``) so the DDL runs inside the transaction as it
  does with tbmigrate and on PostgreSQL; without it pysqlite commits DDL on its own.
- ``yoyo``: ``yoyo apply`` / ``list`` / ``rollback --all`` over N ``step(up, down)`` files;
  yoyo wraps each migration in a transaction.  PostgreSQL goes through psycopg 3
  (``postgresql+psycopg://``), as tbmigrate does.
- ``django``: Django's own ``migrate benchapp`` / ``showmigrations benchapp`` /
  ``migrate benchapp zero`` in a throwaway project whose only installed app holds N
  ``RunSQL(up, down)`` migrations, each depending on the one before; Django runs each
  atomically.  No contrib apps, so the time is ``migrate`` itself on top of Django's
  start-up, which tbmigrate (a Django project) pays as well.

Every peer keeps a history table of its own, as tbmigrate and the floor do, so all do
the same work; the difference is each tool's own overhead.  The peers import their
migration files, so Python caches them compiled in ``__pycache__`` from their first command
on; tbmigrate compiles its scripts on every command.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

UP = "CREATE TABLE bench_t{i} (id INTEGER PRIMARY KEY, label VARCHAR(40))"
DOWN = "DROP TABLE bench_t{i}"

Command = tuple[list[str], dict[str, str], Path]


class Target(Protocol):
    """The part of ``run.Target`` the peers use."""

    vendor: str  # "sqlite" | "postgresql"
    url: str  # postgresql://user@host:port/db or sqlite:////abs/path
    path: str  # the SQLite file


class Peer(Protocol):
    package: str  # importable when the peer is installed

    def prepare(self, folder: Path, n: int) -> None: ...

    def command(self, action: str, folder: Path, target: Target) -> Command: ...


def stems(n: int) -> list[str]:
    """File names 1..N, zero-padded so that they sort in order."""
    width = max(5, len(str(n)))
    return [f"{i:0{width}d}_t{i}" for i in range(1, n + 1)]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def psycopg_url(target: Target) -> str:
    """The URL with the scheme that selects psycopg 3 (SQLAlchemy and yoyo alike)."""
    if target.vendor == "sqlite":
        return target.url
    return "postgresql+psycopg://" + target.url.split("://", 1)[1]


# -- Alembic ---------------------------------------------------------------------------
ALEMBIC_INI = """[alembic]
script_location = %(here)s
path_separator = os

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""

ALEMBIC_ENV = '''"""The benchmark's environment: BENCH_ALEMBIC_URL, a transaction per migration."""

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, event, pool

if context.config.config_file_name:
    fileConfig(context.config.config_file_name)

engine = create_engine(os.environ["BENCH_ALEMBIC_URL"], poolclass=pool.NullPool)
if engine.dialect.name == "sqlite":
    # SQLAlchemy's recipe for transactional DDL on SQLite: pysqlite must not manage
    # transactions itself, so BEGIN is sent explicitly and covers the DDL as well.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN")


with engine.connect() as connection:
    context.configure(
        connection=connection, transaction_per_migration=True, transactional_ddl=True
    )
    with context.begin_transaction():
        context.run_migrations()
'''

ALEMBIC_REVISION = '''"""benchmark table {i}"""

from alembic import op

revision = "r{i}"
down_revision = {previous!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("{up}")


def downgrade() -> None:
    op.execute("{down}")
'''


class Alembic:
    package = "alembic"
    actions = {"up": ["upgrade", "head"], "status": ["current"], "down": ["downgrade", "base"]}

    def prepare(self, folder: Path, n: int) -> None:
        write(folder / "alembic.ini", ALEMBIC_INI)
        write(folder / "env.py", ALEMBIC_ENV)
        for i, stem in enumerate(stems(n), start=1):
            previous = f"r{i - 1}" if i > 1 else None
            text = ALEMBIC_REVISION.format(
                i=i, previous=previous, up=UP.format(i=i), down=DOWN.format(i=i)
            )
            write(folder / "versions" / f"{stem}.py", text)

    def command(self, action: str, folder: Path, target: Target) -> Command:
        argv = [sys.executable, "-m", "alembic", "-c", str(folder / "alembic.ini")]
        return [*argv, *self.actions[action]], {"BENCH_ALEMBIC_URL": psycopg_url(target)}, folder


# -- yoyo-migrations -------------------------------------------------------------------
YOYO_MIGRATION = '''"""benchmark table {i}"""

from yoyo import step

steps = [step("{up}", "{down}")]
'''


class Yoyo:
    package = "yoyo"
    actions = {"up": ["apply"], "status": ["list"], "down": ["rollback", "--all"]}

    def prepare(self, folder: Path, n: int) -> None:
        for i, stem in enumerate(stems(n), start=1):
            text = YOYO_MIGRATION.format(i=i, up=UP.format(i=i), down=DOWN.format(i=i))
            write(folder / f"{stem}.py", text)

    def command(self, action: str, folder: Path, target: Target) -> Command:
        options = ["--no-config-file", "--batch", "--database", psycopg_url(target), str(folder)]
        return [sys.executable, "-m", "yoyo", *self.actions[action], *options], {}, folder


# -- Django migrate --------------------------------------------------------------------
DJANGO_MANAGE = """import sys

from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
"""

DJANGO_SETTINGS = '''"""A bare project: one app of migrations; the database from the environment."""

import json
import os

SECRET_KEY = "benchmark"
INSTALLED_APPS = ["benchapp"]
DATABASES = {"default": json.loads(os.environ["BENCH_DJANGO_DATABASE"])}
USE_TZ = True
'''

DJANGO_MIGRATION = '''"""benchmark table {i}"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = {dependencies!r}
    operations = [migrations.RunSQL("{up}", "{down}")]
'''


class Django:
    package = "django"
    actions = {
        "up": ["migrate", "benchapp"],
        "status": ["showmigrations", "benchapp"],
        "down": ["migrate", "benchapp", "zero"],
    }

    def prepare(self, folder: Path, n: int) -> None:
        write(folder / "manage.py", DJANGO_MANAGE)
        write(folder / "benchsite.py", DJANGO_SETTINGS)
        write(folder / "benchapp" / "__init__.py", "")
        write(folder / "benchapp" / "migrations" / "__init__.py", "")
        previous: str | None = None
        for i, stem in enumerate(stems(n), start=1):
            dependencies = [("benchapp", previous)] if previous else []
            text = DJANGO_MIGRATION.format(
                i=i, dependencies=dependencies, up=UP.format(i=i), down=DOWN.format(i=i)
            )
            write(folder / "benchapp" / "migrations" / f"{stem}.py", text)
            previous = stem

    def command(self, action: str, folder: Path, target: Target) -> Command:
        env = {
            "DJANGO_SETTINGS_MODULE": "benchsite",  # over any the caller has set
            "BENCH_DJANGO_DATABASE": json.dumps(self.database(target)),
        }
        return [sys.executable, "manage.py", *self.actions[action]], env, folder

    @staticmethod
    def database(target: Target) -> dict[str, str]:
        if target.vendor == "sqlite":
            return {"ENGINE": "django.db.backends.sqlite3", "NAME": target.path}
        url = urlsplit(target.url)
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": url.path.lstrip("/"),
            "USER": url.username or "",
            "PASSWORD": url.password or "",
            "HOST": url.hostname or "",
            "PORT": str(url.port or ""),
        }


PEERS: dict[str, Peer] = {"alembic": Alembic(), "yoyo": Yoyo(), "django": Django()}


def available() -> list[str]:
    """The peers whose package is installed, in the order of ``PEERS``."""
    return [name for name, peer in PEERS.items() if importlib.util.find_spec(peer.package)]
