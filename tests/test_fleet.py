"""A fleet of databases: the fleet file, `fleet status`, `fleet run`, `fleet validate`.

Every fleet here is real: PostgreSQL databases and SQLite files made for the test, one
database made to fail (it already has the table a script creates), one unreachable (a
closed port), each named in a fleet file by the variable that holds its URL, with a
password in every PostgreSQL URL that must show up nowhere.  `fleet run` starts a real
`tbmigrate run` process per database, so those tests are marked `slow`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from migrator import fleet, history, locking, targets
from tests.conftest import (
    PROJECT,
    TestDatabase,
    cli_env,
    snapshot,
    tables_of,
    tbmigrate,
    write_script,
)
from tests.schemas import document, errors, schema

PASSWORD = "Fleet-Pw-7731"
TBMIGRATE = Path(sys.executable).parent / "tbmigrate"
UNREACHABLE = f"postgresql://fleet:{PASSWORD}@127.0.0.1:1/nowhere"


def with_password(url: str, password: str = PASSWORD) -> str:
    """The test server trusts local connections, so any password is accepted: it is
    there to prove it never shows."""
    parts = urlsplit(url)
    if parts.password or not parts.username:
        return url
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{password}@{parts.hostname}{port}"))


def scripts_for_fleet(folder: Path) -> None:
    """Three steps; 1.0.1 fails where `orders` already exists.  1.0.0 waits, when
    FLEET_BARRIER is set, until FLEET_BARRIER_COUNT runs have reached it: runs that
    are not at the same time never get there together (it then fails, after 2 min);
    and on the databases named in FLEET_HOLD_FOR, until the file FLEET_RELEASE exists."""
    barrier = """
        import os, pathlib, time
        if db.alias in os.environ.get("FLEET_HOLD_FOR", "").split(","):
            deadline = time.monotonic() + 120  # until the test lets it go on
            while not os.path.exists(os.environ["FLEET_RELEASE"]):
                if time.monotonic() > deadline:
                    raise RuntimeError("never released")
                time.sleep(0.05)
        folder = os.environ.get("FLEET_BARRIER")
        if folder:
            pathlib.Path(folder, str(os.getpid())).touch()
            deadline = time.monotonic() + 120
            while len(os.listdir(folder)) < int(os.environ["FLEET_BARRIER_COUNT"]):
                if time.monotonic() > deadline:
                    raise RuntimeError("the other runs never came: they did not run in parallel")
                time.sleep(0.05)
    """
    write_script(
        folder,
        "1.0.0",
        "accounts",
        up=textwrap.dedent(barrier)
        + 'db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name VARCHAR(40))")',
        down='db.execute("DROP TABLE accounts")',
    )
    write_script(
        folder,
        "1.0.1",
        "orders",
        up='db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, account_id INTEGER)")',
        down='db.execute("DROP TABLE orders")',
    )
    write_script(
        folder,
        "1.0.2",
        "fills",
        up='db.execute("CREATE TABLE fills (id INTEGER PRIMARY KEY, order_id INTEGER)")',
        down='db.execute("DROP TABLE fills")',
    )


@dataclass
class Member:
    name: str
    variable: str
    groups: tuple[str, ...]
    database: TestDatabase | None  # None: the unreachable one


@dataclass
class FleetUnderTest:
    folder: Path
    scripts: Path
    members: dict[str, Member]
    env: dict[str, str]  # the URL variables

    def write(self, names: list[str] | None = None, path: Path | None = None) -> Path:
        """The fleet file with ``names`` in that order (default: all, as made)."""
        path = path or self.folder / "tbmigrate.fleet.toml"
        text = ""
        for name in names or list(self.members):
            member = self.members[name]
            groups = ", ".join(f'"{g}"' for g in member.groups)
            text += (
                f'[[database]]\nname = "{name}"\nurl_env = "{member.variable}"\n'
                f"groups = [{groups}]\n\n"
            )
        path.write_text(text)
        return path

    def db(self, name: str) -> TestDatabase:
        database = self.members[name].database
        assert database is not None
        return database


# name, vendor ("down": unreachable), groups
LAYOUT = [
    ("pg-a", "postgresql", ("exchanges", "eu")),
    ("lite-b", "sqlite", ("exchanges",)),
    ("bad-c", "postgresql", ("eu",)),  # already has `orders`: 1.0.1 fails there
    ("pg-d", "postgresql", ("tenants",)),
    ("lite-e", "sqlite", ("tenants", "eu")),
    ("down-f", "down", ("tenants",)),
]


@pytest.fixture
def fleet_dbs(make_database, tmp_path, settings, monkeypatch, postgres_available):
    """Six databases of a fleet (see LAYOUT), their variables set, the scripts configured."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    scripts_for_fleet(scripts)
    settings.TBMIGRATE_SCRIPTS_DIR = str(scripts)
    members, env = {}, {}
    for name, vendor, groups in LAYOUT:
        variable = name.upper().replace("-", "_") + "_DATABASE_URL"
        database = None if vendor == "down" else make_database(vendor)
        url = UNREACHABLE if database is None else with_password(database.url)
        members[name] = Member(name, variable, groups, database)
        env[variable] = url
        monkeypatch.setenv(variable, url)
    with psycopg.connect(with_password(members["bad-c"].database.url), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, placed_by TEXT)")
    made = FleetUnderTest(tmp_path, scripts, members, env)
    yield made
    for name in members:
        targets.remove(name)


def no_password(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text


def run_fleet(*args: str, made: FleetUnderTest, how: str = "manage.py", **extra: str):
    """``fleet ARGS`` as a real process: `manage.py tbmigrate` or the `tbmigrate` command."""
    env = {**cli_env(None, made.scripts), **made.env, **extra}
    if how == "console":
        env.pop("DJANGO_SETTINGS_MODULE")  # the command's built-in settings
        argv = [str(TBMIGRATE), "fleet", *args]
    else:
        argv = [sys.executable, str(PROJECT / "manage.py"), "tbmigrate", "fleet", *args]
    done = subprocess.run(
        argv, cwd=made.folder, env=env, capture_output=True, text=True, timeout=300
    )
    no_password(done.stdout, done.stderr)
    return done


def fleet_status(made: FleetUnderTest, *args: str) -> dict:
    """`fleet status --json` in this process, checked against its schema."""
    result = tbmigrate(
        "fleet", "status", "--json", "--fleet", str(made.folder / "tbmigrate.fleet.toml"), *args
    )
    no_password(result.out, result.err)
    data = document(result, "fleet-status")
    return {d["name"]: d for d in data["databases"]} | {"": data}


def by_name(data: dict) -> dict[str, dict]:
    return {d["name"]: d for d in data["databases"]}


# -- the fleet file ------------------------------------------------------------------------
BAD_FILES = {
    "not TOML": ("[[database]\nname = 'a'\n", "is not valid TOML"),
    "plural tables": (
        '[[databases]]\nname = "a"\nurl_env = "A_URL"\n',
        "unknown key 'databases' (the tables are [[database]], singular)",
    ),
    "empty": ("# nothing yet\n", "names no database"),
    "duplicate": (
        '[[database]]\nname = "a"\nurl_env = "A_URL"\n\n'
        '[[database]]\nname = "b"\nurl_env = "B_URL"\n\n'
        '[[database]]\nname = "a"\nurl_env = "C_URL"\n',
        "database #3 has the name 'a' of database #1; names must be unique",
    ),
    "no url_env": ('[[database]]\nname = "a"\n', "database 'a' needs url_env"),
    "a URL instead of a variable": (
        f'[[database]]\nname = "a"\nurl_env = "postgres://bob:{PASSWORD}@db/a"\n',
        "database 'a': url_env must name the environment variable holding the URL",
    ),
    "bad name": (
        '[[database]]\nname = "exchange a!"\nurl_env = "A_URL"\n',
        "database #1 needs a name",
    ),
    "unknown key": (
        '[[database]]\nname = "a"\nurl_env = "A_URL"\nurl = "x"\n',
        "database 'a' has an unknown key 'url'",
    ),
    "groups not a list": (
        '[[database]]\nname = "a"\nurl_env = "A_URL"\ngroups = "eu"\n',
        "database 'a': groups must be a list of names",
    ),
    "variable not set": (
        '[[database]]\nname = "a"\nurl_env = "FLEET_TEST_NEVER_SET_URL"\n',
        "database 'a': FLEET_TEST_NEVER_SET_URL is not set; export it",
    ),
    "bad URL": (
        '[[database]]\nname = "a"\nurl_env = "FLEET_TEST_BAD_URL"\n',
        "database 'a': FLEET_TEST_BAD_URL=mysql://bob:***@db/a uses 'mysql'",
    ),
    "URL naming no file": (
        '[[database]]\nname = "a"\nurl_env = "FLEET_TEST_MEMORY_URL"\n',
        "database 'a': FLEET_TEST_MEMORY_URL=sqlite:// names no SQLite file",
    ),
    "a settings alias": (
        '[[database]]\nname = "default"\nurl_env = "FLEET_TEST_MEMORY_URL"\n',
        "database 'default': 'default' is already a database alias of the settings",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
@pytest.mark.parametrize("action", ["status", "run", "validate"])
def test_a_bad_fleet_file_is_one_line_naming_the_entry_and_exit_2(
    case, action, tmp_path, monkeypatch
):
    text, expected = BAD_FILES[case]
    monkeypatch.setenv("FLEET_TEST_BAD_URL", f"mysql://bob:{PASSWORD}@db/a")
    monkeypatch.setenv("FLEET_TEST_MEMORY_URL", "sqlite://")
    monkeypatch.delenv("FLEET_TEST_NEVER_SET_URL", raising=False)
    path = tmp_path / "tbmigrate.fleet.toml"
    path.write_text(text)
    result = tbmigrate("fleet", action, "--fleet", str(path))
    assert result.code == 2, result
    assert expected in result.err, result.err
    assert str(path) in result.err or "tbmigrate.fleet.toml" in result.err
    assert result.out == ""
    no_password(result.err)


def test_a_bad_fleet_file_from_the_command_line_is_one_line_without_traceback(tmp_path):
    (tmp_path / "tbmigrate.fleet.toml").write_text(
        '[[database]]\nname = "a"\nurl_env = "NOPE_URL"\n'
    )
    done = subprocess.run(
        [str(TBMIGRATE), "fleet", "run", "--canary", "1"],
        cwd=tmp_path,
        env={k: v for k, v in cli_env(None, None).items() if k != "DJANGO_SETTINGS_MODULE"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0] == (
        "CommandError: the fleet file tbmigrate.fleet.toml: database 'a': NOPE_URL is not "
        "set; export it holding the database's URL (postgresql://... or sqlite:///...), or "
        "leave the database out with --only/--group"
    )
    missing = subprocess.run(
        [str(TBMIGRATE), "fleet", "status"],
        cwd=tmp_path / "..",
        env={k: v for k, v in cli_env(None, None).items() if k != "DJANGO_SETTINGS_MODULE"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith("CommandError: no fleet file ")
    assert len(missing.stderr.strip().splitlines()) == 1


def test_a_bad_fleet_file_under_json_prints_the_error_document(tmp_path):
    result = tbmigrate("fleet", "status", "--json", "--fleet", str(tmp_path / "none.toml"))
    data = document(result, "fleet-status")
    assert data["exit_code"] == 2 and data["error"].startswith("no fleet file ")


def test_unknown_only_and_group_are_bad_usage_and_change_nothing(fleet_dbs):
    path = fleet_dbs.write()
    before = {name: snapshot(fleet_dbs.db(name)) for name in ("pg-a", "bad-c")}
    for args, expected in [
        (["--only", "pg-a,nope"], "--only nope: the fleet file"),
        (["--group", "asia"], "--group asia: no database of the fleet file"),
    ]:
        result = tbmigrate("fleet", "run", "--fleet", str(path), *args)
        assert result.code == 2 and expected in result.err, result.err
    assert {name: snapshot(fleet_dbs.db(name)) for name in ("pg-a", "bad-c")} == before
    assert not Path(fleet_dbs.db("lite-b").name).exists()


def test_an_unset_variable_of_a_selected_database_stops_fleet_run_before_any_database(
    fleet_dbs, monkeypatch
):
    path = fleet_dbs.write()
    monkeypatch.delenv("PG_D_DATABASE_URL")
    result = tbmigrate("fleet", "run", "--fleet", str(path))
    assert result.code == 2
    assert "database 'pg-d': PG_D_DATABASE_URL is not set" in result.err
    assert tables_of(fleet_dbs.db("pg-a")) == set()  # the first database was not touched
    assert not Path(fleet_dbs.db("lite-b").name).exists()
    # Leaving it out is enough: the other entries need only their own variables.
    assert tbmigrate("fleet", "status", "--fleet", str(path), "--only", "pg-a").code == 1


def test_the_fleet_file_is_read_as_written(tmp_path):
    path = tmp_path / "f.toml"
    path.write_text(
        '[[database]]\nname = "exchange-a"\nurl_env = "EXCHANGE_A_DATABASE_URL"\n'
        'groups = ["exchanges", "eu"]\n\n'
        '[[database]]\nname = "tenant.1"\nurl_env = "TENANT_1_URL"\n'
    )
    loaded = fleet.load(path)
    assert loaded.entries == (
        fleet.Entry("exchange-a", "EXCHANGE_A_DATABASE_URL", ("exchanges", "eu"), 0),
        fleet.Entry("tenant.1", "TENANT_1_URL", (), 1),
    )
    assert loaded.groups() == ["exchanges", "eu"]
    assert [e.name for e in loaded.select(only=["tenant.1"], groups=["eu"])] == [
        "exchange-a",
        "tenant.1",
    ]
    assert [e.name for e in loaded.select(groups=["eu"])] == ["exchange-a"]


def test_fleet_names_lists_the_names_and_picks_one_by_index(tmp_path):
    path = tmp_path / "tbmigrate.fleet.toml"
    path.write_text(
        "".join(f'[[database]]\nname = "db-{i}"\nurl_env = "DB_{i}_URL"\n' for i in range(3))
    )
    names = tbmigrate("fleet", "names", "--fleet", str(path))
    assert names.code == 0 and names.out.split() == ["db-0", "db-1", "db-2"]
    assert tbmigrate("fleet", "names", "--fleet", str(path), "--index", "2").out.strip() == "db-2"
    beyond = tbmigrate("fleet", "names", "--fleet", str(path), "--index", "3")
    assert beyond.code == 2 and "the index is 0 to 2" in beyond.err


# -- fleet names as aliases ----------------------------------------------------------------
def test_a_fleet_name_is_a_database_alias_for_every_command(fleet_dbs, settings):
    settings.TBMIGRATE_FLEET_FILE = str(fleet_dbs.write())
    done = tbmigrate("run", "--database", "lite-b")
    assert done.code == 0, done.err
    assert "Applied 3 migration(s)" in done.out
    assert {"accounts", "orders", "fills"} <= tables_of(fleet_dbs.db("lite-b"))
    assert tbmigrate("status", "--check", "--database", "lite-b").code == 0
    down = tbmigrate("status", "--database", "down-f")
    assert down.code == 1
    assert (
        "cannot use database postgresql://fleet:***@127.0.0.1:1/nowhere (DOWN_F_DATABASE_URL)"
        in down.err
    )
    no_password(done.out, down.out, down.err)
    unknown = tbmigrate("status", "--database", "lite-z")
    assert unknown.code == 2
    assert "fleet file" in unknown.err and "lite-b" in unknown.err


# -- fleet status --------------------------------------------------------------------------
def test_fleet_status_of_a_new_fleet_one_table_and_one_json_document(fleet_dbs):
    path = fleet_dbs.write()
    text = tbmigrate("fleet", "status", "--fleet", str(path))
    assert text.code == 1
    no_password(text.out, text.err)
    lines = text.out.splitlines()
    assert lines[0].startswith("Fleet:   ") and "(6 database(s))" in lines[0]
    assert "(latest 1.0.2)" in lines[1]
    header = next(line for line in lines if line.startswith("Name"))
    assert header.split() == ["Name", "Groups", "Database", "Head", "Pending", "State"]
    row = {
        line.split()[0]: line
        for line in lines
        if line.split() and line.split()[0] in fleet_dbs.members
    }
    assert row["pg-a"].split()[1:] == [
        "exchanges,eu",
        with_password(fleet_dbs.db("pg-a").url).replace(PASSWORD, "***"),
        "-",
        "3",
        "behind",
    ]
    assert "unreachable" in row["down-f"]
    assert "  down-f: cannot use database postgresql://fleet:***@127.0.0.1:1/nowhere" in text.out
    assert lines[-1] == "6 database(s) (latest 1.0.2): 5 behind, 1 unreachable."

    data = fleet_status(fleet_dbs)
    assert data[""]["ok"] is False
    assert data[""]["counts"] == {
        "at-head": 0,
        "behind": 5,
        "running": 0,
        "problem": 0,
        "unreachable": 1,
    }
    assert data["pg-a"]["pending"] == ["1.0.0", "1.0.1", "1.0.2"]
    assert data["pg-a"]["head"] is None and data["pg-a"]["groups"] == ["exchanges", "eu"]
    assert data["down-f"]["reachable"] is False and "Connection refused" in data["down-f"]["error"]
    assert data["lite-b"]["state"] == "behind"
    assert not Path(fleet_dbs.db("lite-b").name).exists()  # reading never creates a file
    eu = fleet_status(fleet_dbs, "--group", "eu")
    assert sorted(eu) == ["", "bad-c", "lite-e", "pg-a"]


# -- fleet run -----------------------------------------------------------------------------
@pytest.mark.slow
def test_a_failing_canary_stops_the_fleet_before_any_other_database(fleet_dbs):
    fleet_dbs.write(["bad-c", "pg-a", "lite-b", "pg-d"])
    done = run_fleet("run", "--canary", "1", "--max-parallel", "3", made=fleet_dbs, how="console")
    assert done.returncode == 1, done.stderr
    assert "  bad-c: failed: " in done.stdout and "orders" in done.stdout
    assert done.stdout.splitlines()[-1] == (
        "Fleet run: 0 of 4 database(s) migrated; failed: bad-c; not started: pg-a, lite-b, pg-d."
    )
    assert done.stderr.strip().splitlines() == [
        "CommandError: Fleet run: 0 of 4 database(s) migrated; failed: bad-c; not started: "
        "pg-a, lite-b, pg-d."
    ]
    rows_ = {
        line.split()[0]: line
        for line in done.stdout.splitlines()
        if line.startswith(("bad-c", "pg-a"))
    }
    assert "(canary)" in rows_["bad-c"] and "1.0.0" in rows_["bad-c"]
    assert "not started: canary bad-c ended failed" in rows_["pg-a"]
    # Right after: the canary kept what it applied before the failing step, the rest is untouched.
    status = fleet_status(fleet_dbs)
    assert status["bad-c"]["head"] == "1.0.0" and status["bad-c"]["pending"] == ["1.0.1", "1.0.2"]
    for name in ("pg-a", "pg-d"):
        assert tables_of(fleet_dbs.db(name)) == set()
        assert status[name]["head"] is None
    assert not Path(fleet_dbs.db("lite-b").name).exists()
    # The canary's own audit log says what failed, as if it had been migrated alone.
    failure = (
        history.audit_rows(fleet_dbs.db("bad-c").alias)
        .filter(action="apply", outcome="failure")
        .get()
    )
    assert failure.version == "1.0.1" and "orders" in failure.error


@pytest.mark.slow
def test_canaries_pass_then_the_rest_in_parallel_and_a_failure_stops_new_starts(
    fleet_dbs, tmp_path
):
    """pg-a and lite-b are canaries; then bad-c and pg-d start together (two at a time).
    pg-d is held in its first step until bad-c has failed: it then finishes, while
    lite-e and down-f, not started yet, never are."""
    fleet_dbs.write(["pg-a", "lite-b", "bad-c", "pg-d", "lite-e", "down-f"])
    release = tmp_path / "release"
    env = {
        **cli_env(None, fleet_dbs.scripts),
        **fleet_dbs.env,
        "FLEET_HOLD_FOR": "pg-d",
        "FLEET_RELEASE": str(release),
    }
    argv = ["fleet", "run", "--canary", "2", "--max-parallel", "2", "--json"]
    process = subprocess.Popen(
        [sys.executable, str(PROJECT / "manage.py"), "tbmigrate", *argv],
        cwd=fleet_dbs.folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_failure(fleet_dbs.db("bad-c"), process)
    finally:
        release.touch()
        out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err
    no_password(out, err)
    data = json.loads(out)
    assert errors(data, "fleet-run") == []
    outcomes = {d["name"]: d["outcome"] for d in data["databases"]}
    assert outcomes == {
        "pg-a": "success",
        "lite-b": "success",
        "bad-c": "failed",
        "pg-d": "success",
        "lite-e": "skipped",
        "down-f": "skipped",
    }
    found = by_name(data)
    assert [found[n]["canary"] for n in ("pg-a", "lite-b", "bad-c")] == [True, True, False]
    assert found["pg-a"]["applied"] == ["1.0.0", "1.0.1", "1.0.2"]
    assert found["pg-a"]["error"] is None and found["pg-a"]["exit_code"] == 0
    assert found["bad-c"]["applied"] == ["1.0.0"] and found["bad-c"]["exit_code"] == 1
    assert "orders" in found["bad-c"]["error"]
    assert found["pg-d"]["applied"] == ["1.0.0", "1.0.1", "1.0.2"]
    assert found["lite-e"]["summary"] == "not started: bad-c ended failed"
    assert found["lite-e"]["duration_ms"] is None and found["pg-d"]["duration_ms"] > 0
    assert data["counts"] == {
        "success": 3,
        "failed": 1,
        "locked": 0,
        "unreachable": 0,
        "skipped": 2,
    }
    status = fleet_status(fleet_dbs)
    assert [
        status[n]["state"] for n in ("pg-a", "lite-b", "bad-c", "pg-d", "lite-e", "down-f")
    ] == ["at-head", "at-head", "behind", "at-head", "behind", "unreachable"]
    assert not Path(fleet_dbs.db("lite-e").name).exists()


def wait_for_failure(database: TestDatabase, process: subprocess.Popen[str]) -> None:
    """Until ``database``'s audit log holds a failed step (its run failed)."""
    from django.db import DatabaseError, connections

    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the failing database never failed"
        try:
            if history.audit_rows(database.alias).filter(outcome="failure").exists():
                return
        except DatabaseError:  # its tables are not there yet
            connections[database.alias].close()
        time.sleep(0.1)


@pytest.mark.slow
def test_continue_on_error_runs_every_database_in_parallel_each_with_its_own_history(
    fleet_dbs, tmp_path, monkeypatch
):
    fleet_dbs.write()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    # Three runs must be inside 1.0.0 at the same moment for any of them to go on.
    monkeypatch.setenv("FLEET_BARRIER", str(barrier))
    monkeypatch.setenv("FLEET_BARRIER_COUNT", "3")
    path = str(fleet_dbs.folder / "tbmigrate.fleet.toml")
    result = tbmigrate(
        "fleet", "run", "--fleet", path, "--max-parallel", "3", "--continue-on-error"
    )
    assert result.code == 1, result.err
    no_password(result.out, result.err)
    assert len(os.listdir(barrier)) == 5  # every reachable database's run came
    lines = result.out.splitlines()
    assert (
        lines[0] == f"Fleet: {path}: 6 database(s), up to 3 at a time, continuing after failures."
    )
    assert result.out.splitlines()[-1] == (
        "Fleet run: 4 of 6 database(s) migrated; failed: bad-c; unreachable: down-f."
    )
    table = {
        line.split()[0]: line.split()
        for line in lines
        if line and not line.startswith(" ") and line.split()[0] in fleet_dbs.members
    }
    assert table["pg-a"][1:3] == ["success", "1.0.0,"]
    assert table["down-f"][1] == "unreachable"

    status = fleet_status(fleet_dbs)
    assert {n: status[n]["state"] for n in fleet_dbs.members} == {
        "pg-a": "at-head",
        "lite-b": "at-head",
        "bad-c": "behind",
        "pg-d": "at-head",
        "lite-e": "at-head",
        "down-f": "unreachable",
    }
    # Each database keeps its own history and audit log, written by its own process.
    pids = set()
    for name in ("pg-a", "lite-b", "pg-d", "lite-e"):
        alias = fleet_dbs.db(name).alias
        assert [str(r.version) for r in history.load(alias)] == ["1.0.0", "1.0.1", "1.0.2"]
        events = list(history.audit_rows(alias).filter(action="run"))
        assert [e.outcome for e in events] == ["success"]
        assert PASSWORD not in events[0].database
        pids.add(events[0].pid)
    assert len(pids) == 4 and os.getpid() not in pids
    for name in ("pg-a", "bad-c", "pg-d"):
        no_password(repr(snapshot(fleet_dbs.db(name))))

    # Fix bad-c and run again: only what is left is applied; the unreachable one stays so.
    with psycopg.connect(fleet_dbs.env["BAD_C_DATABASE_URL"], autocommit=True) as conn:
        conn.execute("DROP TABLE orders")
    monkeypatch.delenv("FLEET_BARRIER")
    again = tbmigrate("fleet", "run", "--fleet", path, "--json", "--max-parallel", "2")
    data = document(again, "fleet-run")
    assert {d["name"]: d["applied"] for d in data["databases"]} == {
        "pg-a": [],
        "lite-b": [],
        "bad-c": ["1.0.1", "1.0.2"],
        "pg-d": [],
        "lite-e": [],
        "down-f": [],
    }
    assert by_name(data)["down-f"]["outcome"] == "unreachable"
    assert again.code == 1
    # Without the unreachable one, the fleet is at head: status exits 0.
    reachable = [n for n in fleet_dbs.members if n != "down-f"]
    assert tbmigrate("fleet", "status", "--fleet", path, "--only", ",".join(reachable)).code == 0
    assert tbmigrate("fleet", "status", "--fleet", path, "--group", "exchanges").code == 0
    assert tbmigrate("fleet", "status", "--fleet", path, "--group", "tenants").code == 1


@pytest.mark.slow
def test_only_and_group_choose_the_databases_run(fleet_dbs):
    fleet_dbs.write()
    done = run_fleet(
        "run",
        "--group",
        "exchanges",
        "--only",
        "pg-d",
        "--max-parallel",
        "2",
        made=fleet_dbs,
        how="console",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "Fleet run: 3 of 3 database(s) migrated."
    status = fleet_status(fleet_dbs)
    assert [n for n in fleet_dbs.members if status[n]["state"] == "at-head"] == [
        "pg-a",
        "lite-b",
        "pg-d",
    ]
    assert status["bad-c"]["pending"] == ["1.0.0", "1.0.1", "1.0.2"]


@pytest.mark.slow
def test_a_database_being_migrated_by_another_process_is_reported_not_waited_for(fleet_dbs):
    """Real other processes hold the migration lock of pg-a (a PostgreSQL session) and
    lite-b (flock): the fleet run reports both at once, although its runs would wait
    five minutes for a lock, and migrates the others."""
    fleet_dbs.write(["pg-a", "lite-b", "pg-d"])
    lite = fleet_dbs.db("lite-b")
    lite_path = Path(lite.name)
    lite_path.touch()  # an empty SQLite database, being migrated for the first time
    holder_code = (
        "import fcntl, json, os, sys, time, psycopg\n"
        "pg = psycopg.connect(sys.argv[1], autocommit=True, application_name='deploy-job-42')\n"
        f"pg.execute('SELECT pg_advisory_lock(%s)', [{locking.PG_LOCK_KEY}])\n"
        "f = open(sys.argv[2], 'a+')\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\n"
        "f.seek(0); f.truncate()\n"
        "f.write(json.dumps({'pid': os.getpid(), 'user': 'ci', 'host': 'runner-7'})); f.flush()\n"
        "print('locked', flush=True)\n"
        "time.sleep(600)\n"
    )
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            holder_code,
            fleet_dbs.env["PG_A_DATABASE_URL"],
            f"{lite_path}.tbmigrate.lock",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        done = run_fleet(
            "run", "--continue-on-error", "--lock-timeout", "300", "--json", made=fleet_dbs
        )
        assert holder.poll() is None  # still holding both locks: nobody waited for them
        data = document(done, "fleet-run")
        found = by_name(data)
        assert [found[n]["outcome"] for n in ("pg-a", "lite-b", "pg-d")] == [
            "locked",
            "locked",
            "success",
        ]
        assert "is being migrated by deploy-job-42" in found["pg-a"]["error"]
        assert f"ci, runner-7, pid {holder.pid}" in found["lite-b"]["error"]
        assert "not waited for" in found["pg-a"]["error"]
        assert done.returncode == 1
        status = fleet_status(fleet_dbs)
        assert status["pg-a"]["state"] == "running" and status["pg-a"]["running"] is not None
        assert status["lite-b"]["state"] == "running"
        assert tables_of(fleet_dbs.db("pg-a")) == set()
    finally:
        holder.kill()
        holder.wait()
    again = run_fleet("run", made=fleet_dbs)
    assert again.returncode == 0, again.stdout + again.stderr
    assert fleet_status(fleet_dbs)[""]["ok"] is True


@pytest.mark.slow
def test_fleet_validate_summarises_validate_schema_on_each_database(fleet_dbs):
    fleet_dbs.write(["pg-a", "lite-b", "bad-c", "down-f"])
    assert run_fleet("run", "--only", "pg-a,lite-b", made=fleet_dbs).returncode == 0
    path = str(fleet_dbs.folder / "tbmigrate.fleet.toml")
    result = tbmigrate("fleet", "validate", "--fleet", path, "--json")
    data = document(result, "fleet-validate")
    found = by_name(data)
    assert result.code == 1
    assert found["pg-a"]["ok"] is True and found["pg-a"]["counts"]["FAIL"] == 0
    assert found["lite-b"]["ok"] is True
    assert found["down-f"]["reachable"] is False and found["down-f"]["checks"] == []
    # bad-c has a table no script made: the schema check says so.
    assert found["bad-c"]["reachable"] is True
    assert any("orders" in json.dumps(c) for c in found["bad-c"]["checks"])
    text = tbmigrate("fleet", "validate", "--fleet", path, "--only", "pg-a,lite-b")
    assert text.code == 0, text.err
    assert text.out.splitlines()[-1] == "validate schema on 2 database(s): 2 passed."
    no_password(result.out, text.out, result.err)


# -- schemas and help ----------------------------------------------------------------------
def test_the_fleet_schemas_are_valid_and_share_the_error_document():
    from jsonschema import Draft202012Validator

    for name in ("fleet-status", "fleet-run", "fleet-validate"):
        Draft202012Validator.check_schema(schema(name))
        assert schema(name)["$defs"]["error"] == schema("status")["$defs"]["error"]
    assert errors({"ok": True}, "fleet-run") != []


@pytest.mark.parametrize("action", ["status", "run", "validate", "names"])
def test_each_fleet_actions_help_ends_with_examples(action, tmp_path):
    done = subprocess.run(
        [str(TBMIGRATE), "fleet", action, "--help"],
        cwd=tmp_path,
        env={k: v for k, v in cli_env(None, None).items() if k != "DJANGO_SETTINGS_MODULE"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0
    tail = done.stdout.rstrip().split("\n\n")[-1]
    assert tail.startswith("examples:\n  tbmigrate fleet " + action)


@pytest.mark.slow
def test_sigterm_to_a_fleet_run_ends_every_running_step_cleanly(fleet_dbs, tmp_path):
    """A cancelled CI job: the fleet run passes SIGTERM on to its runs, each rolls its
    step back, and the fleet run says so and exits 143; nothing is left half-done."""
    fleet_dbs.write(["pg-a", "lite-b", "pg-d"])
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {
        **cli_env(None, fleet_dbs.scripts),
        **fleet_dbs.env,
        "FLEET_BARRIER": str(barrier),
        "FLEET_BARRIER_COUNT": "99",  # never reached: both runs stay in 1.0.0
    }
    argv = ["tbmigrate", "fleet", "run", "--max-parallel", "2"]
    process = subprocess.Popen(
        [sys.executable, str(PROJECT / "manage.py"), *argv],
        cwd=fleet_dbs.folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(os.listdir(barrier)) < 2:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the runs never reached their step"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, out + err
    assert out.splitlines()[-1] == (
        "Fleet run: 0 of 3 database(s) migrated; failed: pg-a, lite-b; not started: pg-d; "
        "interrupted by SIGTERM."
    )
    assert "interrupted" in out  # each run's own error says its step was interrupted
    for name in ("pg-a", "lite-b"):
        database = fleet_dbs.db(name)
        assert "accounts" not in tables_of(database)
        assert history.load(database.alias) == []
        event = history.audit_rows(database.alias).filter(action="apply").get()
        assert event.outcome == "interrupted", event.outcome
    assert tables_of(fleet_dbs.db("pg-d")) == set()


@pytest.mark.slow
def test_a_protected_database_in_the_fleet_is_asked_about_once_before_anything_starts(
    make_database, tmp_path, settings, monkeypatch
):
    settings.TBMIGRATE_SCRIPTS_DIR = str(tmp_path / "scripts")
    (tmp_path / "scripts").mkdir()
    scripts_for_fleet(tmp_path / "scripts")
    prod, other = make_database("sqlite"), make_database("sqlite")
    monkeypatch.setenv("PROD_DATABASE_URL", prod.url)  # the `prod` alias's own variable
    monkeypatch.setenv("OTHER_URL", other.url)
    path = tmp_path / "tbmigrate.fleet.toml"
    path.write_text(
        '[[database]]\nname = "other"\nurl_env = "OTHER_URL"\n\n'
        '[[database]]\nname = "prod"\nurl_env = "PROD_DATABASE_URL"\n'
    )
    try:
        refused = tbmigrate("fleet", "run", "--fleet", str(path))
        assert refused.code == 1
        assert "confirmation needed but there is no terminal" in refused.err
        assert not Path(other.name).exists() and not Path(prod.name).exists()
        done = tbmigrate("fleet", "run", "--fleet", str(path), "--no-input")
        assert done.code == 0, done.err
        assert done.out.splitlines()[-1] == "Fleet run: 2 of 2 database(s) migrated."
    finally:
        targets.remove("other")
        targets.remove("prod")
