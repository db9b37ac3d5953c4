"""DATABASE_URL / SQLITE_DB_PATH / QA_ / PROD_DATABASE_URL, read through dj-database-url."""

from pathlib import Path

import pytest

from migrator.environment import databases_from_environ
from tests.conftest import cli, table_script, tables_of

BASE = Path("/srv/tradingbot")


def test_without_any_variable_the_default_is_a_sqlite_file_in_the_project():
    databases, errors = databases_from_environ({}, BASE)
    assert errors == {}
    assert databases == {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": "/srv/tradingbot/tradingbot.sqlite3",
        }
    }


def test_sqlite_db_path_moves_the_default_file(tmp_path):
    databases, _ = databases_from_environ({"SQLITE_DB_PATH": str(tmp_path / "x.db")}, BASE)
    assert databases["default"]["NAME"] == str(tmp_path / "x.db")


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "pgsql"])
def test_database_url_wins_over_sqlite_path(scheme):
    environ = {
        "DATABASE_URL": f"{scheme}://bob:pw@db.example:6543/trading",
        "SQLITE_DB_PATH": "/x.db",
    }
    databases, errors = databases_from_environ(environ, BASE)
    assert errors == {}
    config = databases["default"]
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["USER"], config["PASSWORD"], config["HOST"], config["PORT"], config["NAME"]) == (
        "bob",
        "pw",
        "db.example",
        6543,
        "trading",
    )


def test_a_sqlite_url_is_accepted_as_database_url():
    databases, _ = databases_from_environ({"DATABASE_URL": "sqlite:////var/data/t.sqlite3"}, BASE)
    assert databases["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert databases["default"]["NAME"] == "/var/data/t.sqlite3"


def test_qa_and_prod_aliases_exist_only_when_their_urls_are_set():
    databases, _ = databases_from_environ({}, BASE)
    assert set(databases) == {"default"}
    databases, _ = databases_from_environ(
        {"QA_DATABASE_URL": "postgres://u:p@qa/db", "PROD_DATABASE_URL": "postgres://u:p@prod/db"},
        BASE,
    )
    assert set(databases) == {"default", "qa", "prod"}
    assert databases["prod"]["HOST"] == "prod"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://bob:Sekr1t@h/db", "uses 'mysql', which tbmigrate does not support"),
        ("not a url Sekr1t", "is not a database URL"),
        ("postgres://bob:Sekr1t@h:notaport/db", "cannot be parsed"),
        ("postgres://bob:Sekr1t@h:5432", "names no database"),
    ],
)
def test_a_bad_url_becomes_an_error_that_hides_the_password(url, expected):
    databases, errors = databases_from_environ({"DATABASE_URL": url}, BASE)
    assert databases["default"]["ENGINE"] == "django.db.backends.dummy"
    assert expected in errors["default"]
    assert "Sekr1t" not in errors["default"]


def test_database_qa_targets_the_qa_url(tmp_path, make_database):
    qa = make_database("sqlite")
    scripts = tmp_path / "s"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "qa_marker")
    result = cli("run", "--database", "qa", scripts=scripts, env={"QA_DATABASE_URL": qa.url})
    assert result.returncode == 0, result.stderr
    assert "Applying 1.0.0 create-qa-marker... OK" in result.stdout
    assert "qa_marker" in tables_of(qa)


def test_an_unknown_alias_is_bad_usage(tmp_path):
    result = cli("status", "--database", "qa", scripts=tmp_path)
    assert result.returncode == 2
    assert "unknown database alias 'qa'" in result.stderr
    assert "set QA_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_django_error_pages_hide_database_urls_and_passwords(settings, monkeypatch):
    """DEFAULT_EXCEPTION_REPORTER_FILTER is ours: a debug page shows no database URL, and a
    known password in the request's META is masked."""
    from django.test import RequestFactory
    from django.views.debug import get_default_exception_reporter_filter

    monkeypatch.setenv("DATABASE_URL", "postgres://bob:hunter2secret@db.example/trading")
    settings.QA_DATABASE_URL = "postgres://bob:hunter2secret@db.example/qa"
    get_default_exception_reporter_filter.cache_clear()
    reporter = get_default_exception_reporter_filter()
    assert type(reporter).__module__ == "migrator.error_pages"
    assert "hunter2secret" not in str(reporter.get_safe_settings()["QA_DATABASE_URL"])
    request = RequestFactory().get("/", HTTP_X_NOTE="postgres://bob:hunter2secret@db/x")
    meta = reporter.get_safe_request_meta(request)
    assert "hunter2secret" not in meta["HTTP_X_NOTE"]
