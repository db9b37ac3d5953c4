"""Shared fixtures: real databases, one set per test run, on SQLite and PostgreSQL.

- ``vendor`` is parametrised over ``sqlite`` and ``postgresql``, so every test that
  asks for ``target`` runs on both.
- ``target`` is a brand-new empty database, registered as a Django alias and
  dropped afterwards.  PostgreSQL databases are named ``tbm_<run id>_<n>``, so two
  test runs on one server never collide.
- PostgreSQL must be reachable: when it is not, the tests *fail* (never skip).
  Point ``TBMIGRATE_TEST_POSTGRES_URL`` at another server if needed.
"""

from __future__ import annotations

import itertools
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from migrator import targets

PROJECT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "TBMIGRATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
RUN_ID = f"{os.getpid()}_{secrets.token_hex(2)}"
_counter = itertools.count(1)

for _variable in (
    "DATABASE_URL",
    "QA_DATABASE_URL",
    "PROD_DATABASE_URL",
    "SQLITE_DB_PATH",
    "TBMIGRATE_SCRIPTS_DIR",
):
    os.environ.pop(_variable, None)


@dataclass
class TestDatabase:
    """A real, empty database made for one test."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    vendor: str
    alias: str
    url: str
    name: str  # PostgreSQL database name, or SQLite file path


def pg_admin() -> psycopg.Connection:
    """An autocommit connection to the test server's maintenance database."""
    return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)


def with_dbname(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def create_database(vendor: str, tmp_path: Path) -> TestDatabase:
    n = next(_counter)
    if vendor == "sqlite":
        path = tmp_path / f"db{n}.sqlite3"
        url = f"sqlite:///{path}"
        name = str(path)
    else:
        name = f"tbm_{RUN_ID}_{n}"
        with pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = with_dbname(POSTGRES_URL, name)
    alias = f"t_{vendor}_{n}"
    targets.add(alias, url)
    return TestDatabase(vendor, alias, url, name)


def drop_database(database: TestDatabase) -> None:
    targets.remove(database.alias)
    if database.vendor == "postgresql":
        with pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_available() -> None:
    """Fail the run, loudly, when PostgreSQL cannot be used."""
    try:
        with pg_admin() as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL tests cannot run: {exc} (start it with `pg_ctlcluster "
            "--skip-systemctl-redirect $(ls /etc/postgresql) main start` or set "
            "TBMIGRATE_TEST_POSTGRES_URL)",
            pytrace=False,
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def vendor(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("postgres_available")
    return str(request.param)


@pytest.fixture
def make_database(django_db_setup, django_db_blocker, tmp_path):  # type: ignore[no-untyped-def]
    """Factory for more empty databases in one test: ``make_database("postgresql")``."""
    made: list[TestDatabase] = []

    def make(vendor: str) -> TestDatabase:
        database = create_database(vendor, tmp_path)
        made.append(database)
        return database

    with django_db_blocker.unblock():
        yield make
        for database in reversed(made):
            drop_database(database)


@pytest.fixture
def target(vendor: str, make_database) -> TestDatabase:  # type: ignore[no-untyped-def]
    """A brand-new empty database of ``vendor``."""
    return make_database(vendor)


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private temporary folder for the test, so that leftover temporary files show."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def scripts_dir(tmp_path: Path, settings) -> Path:  # type: ignore[no-untyped-def]
    """An empty scripts folder, made the configured one for this test."""
    folder = tmp_path / "scripts"
    folder.mkdir()
    settings.TBMIGRATE_SCRIPTS_DIR = str(folder)
    return folder


def write_script(
    folder: Path,
    version: str,
    name: str = "step",
    up: str = "pass",
    down: str | None = "pass",
    *,
    atomic: bool | None = None,
    header: str = "",
    stamp: str = "2026-01-01T00-00-00",
) -> Path:
    """Write a migration script whose up/down bodies are the given code."""
    parts = [
        f'"""Test script {version} {name}."""',
        header,
        f'version = "{version}"',
        f'name = "{name}"',
        f'description = "test {name}"',
    ]
    if atomic is not None:
        parts.append(f"atomic = {atomic}")
    parts.append(
        "\n\ndef up(db):\n" + textwrap.indent(textwrap.dedent(up).strip() or "pass", "    ")
    )
    if down is not None:
        parts.append(
            "\n\ndef down(db):\n" + textwrap.indent(textwrap.dedent(down).strip() or "pass", "    ")
        )
    path = folder / f"{stamp}-{version}-{name}.py"
    path.write_text("\n".join(p for p in parts if p) + "\n")
    return path


def table_script(folder: Path, version: str, table: str, **kwargs: object) -> Path:
    """A script creating ``table`` (and dropping it in down)."""
    return write_script(
        folder,
        version,
        f"create-{table.replace('_', '-')}",
        up=f'db.execute("CREATE TABLE {table} (id INTEGER PRIMARY KEY, label VARCHAR(50))")',
        down=f'db.execute("DROP TABLE {table}")',
        **kwargs,  # type: ignore[arg-type]
    )


@dataclass
class Result:
    code: int
    out: str
    err: str


def tbmigrate(*args: str, database: TestDatabase | None = None) -> Result:
    """Run ``tbmigrate`` in this process with call_command; never raises CommandError."""
    argv = list(args)
    if database is not None:
        argv += ["--database", database.alias]
    out, err = StringIO(), StringIO()
    try:
        call_command("tbmigrate", *argv, stdout=out, stderr=err)
    except CommandError as exc:
        return Result(exc.returncode, out.getvalue(), err.getvalue() + str(exc))
    return Result(0, out.getvalue(), err.getvalue())


def cli_env(database: TestDatabase | None, scripts: Path | None, **extra: str) -> dict[str, str]:
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ}
    env["PYTHONPATH"] = str(PROJECT)
    env["DJANGO_SETTINGS_MODULE"] = "tradingbot_site.settings"
    if database is not None:
        env["DATABASE_URL"] = database.url
    if scripts is not None:
        env["TBMIGRATE_SCRIPTS_DIR"] = str(scripts)
    env.update(extra)
    return env


def cli(
    *args: str,
    database: TestDatabase | None = None,
    scripts: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python manage.py tbmigrate ...`` as a real process, as a user would."""
    return subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), "tbmigrate", *args],
        cwd=PROJECT,
        env={**cli_env(database, scripts), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def tables_of(database: TestDatabase) -> set[str]:
    """Table names, read through Django's introspection."""
    from django.db import connections

    connection = connections[database.alias]
    with connection.cursor() as cursor:
        return set(connection.introspection.table_names(cursor))


def rows(database: TestDatabase, sql: str, params: list[object] | None = None) -> list[tuple]:
    from django.db import connections

    with connections[database.alias].cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def snapshot(database: TestDatabase) -> dict[str, list[tuple]]:
    """Every table with every row: compare before and after to prove nothing changed."""
    from django.db import connections

    connection = connections[database.alias]
    result = {}
    for table in sorted(tables_of(database)):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            result[table] = sorted(map(repr, cursor.fetchall()))  # type: ignore[arg-type]
    return result


@pytest.fixture(scope="session", autouse=True)
def _drop_leftover_databases() -> Iterator[None]:
    """Drop every database of this run, whatever happened to the tests."""
    yield
    try:
        with pg_admin() as conn:
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s", [f"tbm_{RUN_ID}_%"]
                )
            ]
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.OperationalError:
        pass


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test is a failed promise here (PostgreSQL tests must run): fail the run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and exitstatus == 0:
        session.exitstatus = 1
        if reporter:
            reporter.write_line(
                f"{len(skipped)} test(s) skipped: every test must run on this machine "
                "(is PostgreSQL up?)",
                red=True,
            )
