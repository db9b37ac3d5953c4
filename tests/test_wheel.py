"""Installed from its own wheel, as a new user would: into a fresh virtualenv, then used
in an empty folder (the `tbmigrate` command) and as an app in a `startproject` host.

Slow: builds the wheel and installs it with its dependencies (pip, through the indexes
this machine is configured with) once for the module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.conftest import PROJECT
from tests.test_console import mixed_scripts

pytestmark = pytest.mark.slow


def run(argv, cwd, env=None, timeout=600):
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    return done


def clean_env(**extra: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "PIP_FIND_LINKS", "PIP_CERT", "PIP_DEFAULT_TIMEOUT")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, **extra}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the source tree (the tree itself stays clean)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(
        PROJECT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "__pycache__", "*.sqlite3", "build", "*.egg-info", "backups"
        ),
    )
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            work / "dist",
            source,
        ],
        cwd=work,
    )
    assert built.returncode == 0, built.stderr
    (path,) = (work / "dist").glob("tbmigrate-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel and its dependencies installed."""
    home = tmp_path_factory.mktemp("venv") / "venv"
    made = run([sys.executable, "-m", "venv", home], cwd=home.parent)
    assert made.returncode == 0, made.stderr
    installed = run(
        [home / "bin" / "pip", "install", "-q", "--find-links", wheel.parent, wheel],
        cwd=home.parent,
        env=clean_env(),
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    return home


def site_packages(venv: Path) -> Path:
    (path,) = (venv / "lib").glob("python3*/site-packages")
    return path


def test_the_wheel_carries_templates_schemas_and_migrations_and_no_project(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "migrator/templates/admin/migrator/appliedmigration/change_list.html" in names
    assert "migrator/schemas/run.schema.json" in names
    assert "migrator/migrations/0001_initial.py" in names
    assert "migrator/console_settings.py" in names
    assert not any(n.startswith("tradingbot_site/") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "tbmigrate = migrator.console:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_in_an_empty_folder_from_the_wheel(venv, vendor, make_database, tmp_path):
    tbmigrate = venv / "bin" / "tbmigrate"
    folder = tmp_path / "project"
    mixed_scripts(folder / "migration_scripts")
    if vendor == "sqlite":
        env = clean_env(SQLITE_DB_PATH="app.sqlite3")
    else:
        env = clean_env(DATABASE_URL=make_database("postgresql").url)
    version = run([tbmigrate, "--version"], folder, env)
    assert version.returncode == 0 and version.stdout.startswith("tbmigrate ")
    applied = run([tbmigrate, "run"], folder, env)
    assert applied.returncode == 0, applied.stderr
    assert "Applied 3 migration(s)" in applied.stdout
    assert run([tbmigrate, "status", "--check"], folder, env).returncode == 0
    sql = run([tbmigrate, "sql", "1.0.2"], folder, env)
    assert sql.returncode == 0 and "CREATE TABLE notes" in sql.stdout, sql.stderr
    back = run([tbmigrate, "rollback", "--no-input"], folder, env)
    assert back.returncode == 0, back.stderr
    assert "1 pending" in run([tbmigrate, "status"], folder, env).stdout
    packages = site_packages(venv)
    assert not (packages / "tradingbot.sqlite3").exists()
    assert not (packages / "migration_scripts").exists()
    if vendor == "sqlite":
        assert (folder / "app.sqlite3").is_file()


HOST_SETTINGS = """
INSTALLED_APPS += ["migrator"]
import os
if os.environ.get("HOST_DATABASE_URL"):
    import dj_database_url
    DATABASES = {"default": dj_database_url.parse(os.environ["HOST_DATABASE_URL"])}
"""

ADMIN_PAGES = """
from django.contrib.auth.models import User
from django.test import Client
from migrator.models import AppliedMigration
client = Client(HTTP_HOST="localhost")
client.force_login(User.objects.get(username="admin"))
first = AppliedMigration.objects.order_by("sort_key").first()
for url in ["/admin/", "/admin/migrator/", "/admin/migrator/appliedmigration/",
            "/admin/migrator/appliedmigration/pending/", "/admin/migrator/auditevent/",
            f"/admin/migrator/appliedmigration/{first.pk}/change/"]:
    response = client.get(url)
    body = response.content.decode()
    print(url, response.status_code, "1.0.2" in body or "notes" in body)
"""


def test_as_an_app_in_a_startproject_host(venv, vendor, make_database, tmp_path):
    python = venv / "bin" / "python"
    host = tmp_path / "host"
    host.mkdir()
    made = run([venv / "bin" / "django-admin", "startproject", "mysite", host], host, clean_env())
    assert made.returncode == 0, made.stderr
    settings = host / "mysite" / "settings.py"
    assert "BASE_DIR / 'db.sqlite3'" in settings.read_text()  # NAME is a Path
    settings.write_text(settings.read_text() + textwrap.dedent(HOST_SETTINGS))
    mixed_scripts(host / "migration_scripts")
    env = clean_env()
    if vendor == "postgresql":
        env["HOST_DATABASE_URL"] = make_database("postgresql").url
    elsewhere = tmp_path / "elsewhere"  # paths come from BASE_DIR, not the working directory
    elsewhere.mkdir()
    manage = host / "manage.py"
    for argv in (
        [python, manage, "migrate", "-v", "0"],
        [python, manage, "tbmigrate", "run"],
        [python, manage, "tbmigrate", "status", "--check"],
    ):
        done = run(argv, elsewhere, env)
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
    if vendor == "sqlite":
        assert (host / "db.sqlite3").is_file()
    superuser = run(
        [
            python,
            manage,
            "createsuperuser",
            "--noinput",
            "--username",
            "admin",
            "--email",
            "admin@example.com",
        ],
        host,
        {**env, "DJANGO_SUPERUSER_PASSWORD": "not-a-real-secret-1"},
    )
    assert superuser.returncode == 0, superuser.stderr
    pages = run([python, manage, "shell", "-c", ADMIN_PAGES], host, env)
    assert pages.returncode == 0, pages.stderr
    lines = [line for line in pages.stdout.splitlines() if line.startswith("/admin/")]
    assert len(lines) == 6, pages.stdout
    for line in lines:
        _url, status, _shows = line.split()
        assert status == "200", line
    assert "/admin/migrator/appliedmigration/ 200 True" in lines
