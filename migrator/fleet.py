"""A fleet of databases: the fleet file, and status, run and validate across it.

The fleet file (TOML, ``tbmigrate.fleet.toml`` in the working directory, or
``--fleet FILE``, or the setting ``FLEET_FILE``) names the databases in order, each by
the environment variable holding its URL, never the URL itself, so the file can be
committed and the secrets stay where CI and the cluster keep them::

    [[database]]
    name = "exchange-a"
    url_env = "EXCHANGE_A_DATABASE_URL"
    groups = ["exchanges", "eu"]

Each name is a database alias too (``tbmigrate run --database exchange-a``:
``targets.require`` asks ``add_alias``), which is the per-database primitive a CI
matrix cell or a cluster job's pod runs.  Over the whole fleet:

- ``status``: every database's state, read in this process, one after another;
- ``run``: each database migrated by a child process of its own running
  ``tbmigrate run --database NAME --json`` (its own connection, lock, history and
  audit log, exactly as if migrated alone), canaries first and one at a time, then the
  rest ``max_parallel`` at a time, stopping (by default) after the first database
  that does not end well;
- ``validate``: ``validate schema`` on each database, in this process.

Loading reads the file's structure only (``load``); a database's variable is read,
and its URL checked, when the database is selected (``resolve``), so that a CI cell
holding one database's secret can use the file.  Every error is a
``FleetFileError`` (bad usage, exit 2) naming the file and the entry.  Nothing here
prints: results are values, progress goes to callbacks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from migrator import conf, redact
from migrator.errors import (
    ConfigurationError,
    DatabaseMissing,
    DatabaseUnavailable,
    FleetFileError,
)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENTRY_KEYS = ("name", "url_env", "groups")

# Outcomes of a database in ``fleet run``.
SUCCESS = "success"  # the run ended well (everything planned applied; maybe nothing to do)
FAILED = "failed"  # a step failed, or the run was refused or could not start
LOCKED = "locked"  # someone else was migrating it: reported, not waited for
UNREACHABLE = "unreachable"  # its server or file could not be used
SKIPPED = "skipped"  # not started: an earlier database (or a canary) did not end well
OUTCOMES = (SUCCESS, FAILED, LOCKED, UNREACHABLE, SKIPPED)


# -- the file ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One database of the fleet file, as written (its URL is read by ``resolve``)."""

    name: str
    url_env: str
    groups: tuple[str, ...] = ()
    index: int = 0  # position in the file, from 0


@dataclass(frozen=True)
class Fleet:
    path: Path
    entries: tuple[Entry, ...]

    @property
    def shown(self) -> str:
        """The file as messages name it: relative to the working directory when inside it."""
        with contextlib.suppress(ValueError):
            return str(self.path.relative_to(Path.cwd()))
        return str(self.path)

    def names(self) -> list[str]:
        return [entry.name for entry in self.entries]

    def groups(self) -> list[str]:
        found: list[str] = []
        for entry in self.entries:
            found += [group for group in entry.groups if group not in found]
        return found

    def get(self, name: str) -> Entry | None:
        return next((entry for entry in self.entries if entry.name == name), None)

    def select(self, only: Iterable[str] = (), groups: Iterable[str] = ()) -> list[Entry]:
        """The entries named by ``only`` or in one of ``groups`` (every entry when both are
        empty), in the file's order; an unknown name or group is bad usage."""
        only = [name for item in only for name in _split(item)]
        groups = [group for item in groups for group in _split(item)]
        for name in only:
            if self.get(name) is None:
                raise FleetFileError(
                    f"--only {name}: the fleet file {self.shown} has no database of that "
                    f"name (it has: {', '.join(self.names())})"
                )
        for group in groups:
            if group not in self.groups():
                known = ", ".join(self.groups()) or "none"
                raise FleetFileError(
                    f"--group {group}: no database of the fleet file {self.shown} is in "
                    f"that group (groups: {known})"
                )
        if not only and not groups:
            return list(self.entries)
        return [
            entry
            for entry in self.entries
            if entry.name in only or any(group in entry.groups for group in groups)
        ]


def _split(text: str) -> list[str]:
    return [part.strip() for part in str(text).split(",") if part.strip()]


def fleet_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--fleet FILE``, else the setting ``FLEET_FILE``; relative: from the working
    directory (the file belongs to whoever runs the fleet, e.g. a CI checkout)."""
    path = Path(explicit if explicit else str(conf.get("FLEET_FILE"))).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


def load(path: str | os.PathLike[str] | None = None) -> Fleet:
    """Read and check the fleet file's structure (no variable is read here)."""
    where = fleet_path(path)
    if not where.is_file():
        raise FleetFileError(
            f"no fleet file {where}: write one with a [[database]] table (name, url_env, "
            "optional groups) for each database, or point --fleet (or TBMIGRATE_FLEET_FILE) "
            "at yours"
        )
    try:
        text = where.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetFileError(f"cannot read the fleet file {where}: {exc}") from None
    return parse(text, where)


def parse(text: str, path: Path) -> Fleet:
    """The fleet described by ``text`` (the contents of ``path``)."""
    shown = Fleet(path, ()).shown
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FleetFileError(f"the fleet file {shown} is not valid TOML: {exc}") from None
    unknown = [key for key in data if key != "database"]
    if unknown:
        hint = " (the tables are [[database]], singular)" if "databases" in unknown else ""
        raise FleetFileError(
            f"the fleet file {shown} has an unknown key '{unknown[0]}'{hint}; it holds only "
            "[[database]] tables"
        )
    tables = data.get("database")
    if not isinstance(tables, list) or not tables:
        raise FleetFileError(
            f"the fleet file {shown} names no database; add a [[database]] table with name "
            "and url_env for each"
        )
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables):
        entry = _entry(shown, index, table)
        if entry.name in seen:
            raise FleetFileError(
                f"the fleet file {shown}: database #{index + 1} has the name '{entry.name}' "
                f"of database #{seen[entry.name] + 1}; names must be unique"
            )
        seen[entry.name] = index
        entries.append(entry)
    return Fleet(path, tuple(entries))


def _entry(shown: str, index: int, table: Any) -> Entry:
    where = f"the fleet file {shown}: database #{index + 1}"
    if not isinstance(table, dict):
        raise FleetFileError(f"{where} is not a table; write it as [[database]]")
    name = table.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise FleetFileError(
            f"{where} needs a name of letters, digits, '-', '_' or '.' (at most 63, starting "
            f"with a letter or digit), not {_shown_value(name)}"
        )
    where = f"the fleet file {shown}: database '{name}'"
    unknown = [key for key in table if key not in ENTRY_KEYS]
    if unknown:
        raise FleetFileError(
            f"{where} has an unknown key '{unknown[0]}' (keys: {', '.join(ENTRY_KEYS)})"
        )
    variable = table.get("url_env")
    if isinstance(variable, str) and "://" in variable:
        raise FleetFileError(
            f"{where}: url_env must name the environment variable holding the URL, not hold "
            "the URL itself (a URL in the file would put its password in version control); "
            'e.g. url_env = "EXCHANGE_A_DATABASE_URL"'
        )
    if not isinstance(variable, str) or not VARIABLE.match(variable):
        raise FleetFileError(
            f"{where} needs url_env, the name of the environment variable holding its URL "
            f'(e.g. url_env = "EXCHANGE_A_DATABASE_URL"), not {_shown_value(variable)}'
        )
    groups = table.get("groups", [])
    if not isinstance(groups, list) or not all(
        isinstance(group, str) and NAME.match(group) for group in groups
    ):
        raise FleetFileError(
            f'{where}: groups must be a list of names, e.g. groups = ["exchanges", "eu"]'
        )
    return Entry(name, variable, tuple(dict.fromkeys(groups)), index)


def _shown_value(value: Any) -> str:
    if value is None:
        return "nothing"
    text = redact.mask_urls(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


# -- databases -----------------------------------------------------------------------------
def resolve(
    fleet: Fleet, entries: Iterable[Entry], environ: Mapping[str, str] | None = None
) -> list[str]:
    """Register each entry as a database alias from its variable's URL, all of them
    before anything connects: an unset variable or an unusable URL is bad usage naming
    the entry, and no database is touched."""
    from django.conf import settings

    from migrator import targets
    from migrator.environment import URL_VARIABLES, parse_url

    environ = os.environ if environ is None else environ
    chosen = list(entries)
    configs = []

    def from_settings(name: str) -> bool:
        return name in settings.DATABASES and targets.added_from(name) is None

    for entry in chosen:
        where = f"the fleet file {fleet.shown}: database '{entry.name}'"
        if from_settings(entry.name) and not _same_variable(entry):
            raise FleetFileError(
                f"{where}: '{entry.name}' is already a database alias of the settings (from "
                f"{URL_VARIABLES.get(entry.name, 'DATABASES')}); give the entry another name"
            )
        url = environ.get(entry.url_env, "").strip()
        if not url:
            raise FleetFileError(
                f"{where}: {entry.url_env} is not set; export it holding the database's URL "
                "(postgresql://... or sqlite:///...), or leave the database out with "
                "--only/--group"
            )
        redact.register_secret(redact.password_in_url(url))
        try:
            config = parse_url(url, entry.url_env)
        except ValueError as exc:
            raise FleetFileError(f"{where}: {exc}") from None
        configs.append((entry, _with_connect_timeout(config, environ)))
    for entry, config in configs:
        if not from_settings(entry.name):
            targets.add(entry.name, config, variable=entry.url_env)
    return [entry.name for entry in chosen]


def _same_variable(entry: Entry) -> bool:
    """A fleet entry may name a settings alias when it reads the very same variable
    (``name = "qa"``, ``url_env = "QA_DATABASE_URL"``): they are one database."""
    from migrator.environment import URL_VARIABLES

    return URL_VARIABLES.get(entry.name) == entry.url_env


def _with_connect_timeout(config: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    if not str(config.get("ENGINE", "")).endswith("postgresql"):
        return config
    options = dict(config.get("OPTIONS") or {})
    if "connect_timeout" not in options and not environ.get("PGCONNECT_TIMEOUT"):
        options["connect_timeout"] = int(float(conf.get("FLEET_CONNECT_TIMEOUT")))
    return {**config, "OPTIONS": options}


def add_alias(name: str) -> bool:
    """Make ``name`` a database alias if the fleet file names it (``targets.require``'s
    fallback for an alias the settings do not have); False when there is no fleet file
    or it has no such name."""
    path = fleet_path()
    if not path.is_file():
        return False
    fleet = load(path)
    entry = fleet.get(name)
    if entry is None:
        return False
    resolve(fleet, [entry])
    return True


def names_hint() -> str:
    """``; fleet file tbmigrate.fleet.toml: a, b`` for an unknown-alias message (empty when
    there is no readable fleet file)."""
    try:
        fleet = load()
    except FleetFileError:
        return ""
    return f"; fleet file {fleet.shown}: {', '.join(fleet.names())}"


def _described(name: str) -> tuple[str, str]:
    from migrator import targets

    return targets.describe(name), targets.vendor(name)


# -- status --------------------------------------------------------------------------------
@dataclass
class DatabaseStatus:
    entry: Entry
    database: str  # masked URL
    vendor: str
    reachable: bool
    status: Any = None  # the api's Status (None when unreachable)
    error: str | None = None

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def head(self) -> str | None:
        """The newest version whose changes are in the database."""
        applied = [m.version for m in self.migrations if m.is_applied]
        return str(max(applied)) if applied else None

    @property
    def migrations(self) -> list[Any]:
        return list(self.status.migrations) if self.status is not None else []

    def versions(self, state: str) -> list[str]:
        return [str(m.version) for m in self.migrations if m.state == state]

    @property
    def problems(self) -> list[Any]:
        return [m for m in self.migrations if m.state.is_problem]

    @property
    def ok(self) -> bool:
        """At head and clean: everything applied, nothing edited, missing or failed."""
        return self.reachable and self.status is not None and self.status.clean

    @property
    def state(self) -> str:
        """One word for the table: unreachable, problem, running, behind, at-head."""
        if not self.reachable:
            return "unreachable"
        if self.status.lock_holder is not None:
            return "running"
        if self.problems:
            return "problem"
        return "at-head" if self.status.clean else "behind"


@dataclass
class FleetStatus:
    fleet: Fleet
    scripts_dir: Path
    latest: str | None  # the newest script's version
    databases: list[DatabaseStatus]

    @property
    def ok(self) -> bool:
        return all(database.ok for database in self.databases)

    def count(self, state: str) -> int:
        return sum(1 for database in self.databases if database.state == state)

    @property
    def summary(self) -> str:
        words = {
            "at-head": "at head",
            "behind": "behind",
            "running": "being migrated",
            "problem": "with problems",
            "unreachable": "unreachable",
        }
        parts = [f"{self.count(s)} {word}" for s, word in words.items() if self.count(s)]
        latest = f" (latest {self.latest})" if self.latest else ""
        return f"{len(self.databases)} database(s){latest}: " + ", ".join(parts)


def status(
    fleet: Fleet,
    entries: Sequence[Entry],
    *,
    on_database: Callable[[DatabaseStatus], None] | None = None,
) -> FleetStatus:
    """The state of each database, read one after another in this process; an
    unreachable one is reported as such, never raised."""
    from migrator import scripts
    from migrator.api import MigrationSystem

    resolve(fleet, entries)
    folder = conf.scripts_dir()
    loaded = scripts.load_scripts(folder)  # a broken script is one error, not one per database
    latest = str(max(script.version for script in loaded)) if loaded else None
    found = []
    for entry in entries:
        database, vendor = _described(entry.name)
        system = MigrationSystem(entry.name, scripts_dir=folder)
        try:
            result = DatabaseStatus(entry, database, vendor, True, status=system.status())
        except (DatabaseUnavailable, ConfigurationError) as exc:
            result = DatabaseStatus(entry, database, vendor, False, error=redact.scrub(exc))
        finally:
            system.close()
        found.append(result)
        if on_database is not None:
            on_database(result)
    return FleetStatus(fleet, folder, latest, found)


# -- validate ------------------------------------------------------------------------------
@dataclass
class DatabaseValidation:
    entry: Entry
    database: str
    vendor: str
    reachable: bool
    report: Any = None  # validation.Report (None when unreachable)
    error: str | None = None

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def ok(self) -> bool:
        return self.reachable and self.report is not None and self.report.ok


@dataclass
class FleetValidation:
    fleet: Fleet
    databases: list[DatabaseValidation]

    @property
    def ok(self) -> bool:
        return all(database.ok for database in self.databases)

    @property
    def summary(self) -> str:
        passed = sum(1 for d in self.databases if d.ok)
        failed = sum(1 for d in self.databases if d.reachable and not d.ok)
        unreachable = sum(1 for d in self.databases if not d.reachable)
        parts = [f"{passed} passed"]
        if failed:
            parts.append(f"{failed} failed")
        if unreachable:
            parts.append(f"{unreachable} unreachable")
        return f"validate schema on {len(self.databases)} database(s): " + ", ".join(parts)


def validate(
    fleet: Fleet,
    entries: Sequence[Entry],
    *,
    on_database: Callable[[DatabaseValidation], None] | None = None,
) -> FleetValidation:
    """``validate schema`` on each database, one after another in this process."""
    from migrator import scripts
    from migrator.api import MigrationSystem

    resolve(fleet, entries)
    folder = conf.scripts_dir()
    scripts.load_scripts(folder)
    found = []
    for entry in entries:
        database, vendor = _described(entry.name)
        verdict, why = probe(entry.name)
        if verdict == UNREACHABLE:
            # (validate schema would report it as a failed check; here it is a database
            # the fleet cannot reach, as in status and run)
            result = DatabaseValidation(entry, database, vendor, False, error=why)
        else:
            system = MigrationSystem(entry.name, scripts_dir=folder)
            try:
                report = system.validate_schema()
                result = DatabaseValidation(entry, database, vendor, True, report=report)
            except (DatabaseUnavailable, ConfigurationError) as exc:
                error = redact.scrub(exc)
                result = DatabaseValidation(entry, database, vendor, False, error=error)
            finally:
                system.close()
        found.append(result)
        if on_database is not None:
            on_database(result)
    return FleetValidation(fleet, found)


# -- run -----------------------------------------------------------------------------------
@dataclass
class DatabaseRun:
    """What ``fleet run`` did to one database."""

    entry: Entry
    database: str
    vendor: str
    outcome: str
    canary: bool = False
    applied: list[str] = field(default_factory=list)  # versions applied by this run
    planned: list[str] = field(default_factory=list)  # labels it set out to apply
    duration_ms: float | None = None  # the child process, start to end
    error: str | None = None
    exit_code: int | None = None
    summary: str = ""

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def ok(self) -> bool:
        return self.outcome == SUCCESS


@dataclass
class FleetRun:
    fleet: Fleet
    databases: list[DatabaseRun]
    canary: int = 0
    max_parallel: int = 1
    continue_on_error: bool = False
    interrupted: int | None = None  # the signal that stopped the fleet run, if one did

    @property
    def ok(self) -> bool:
        return self.interrupted is None and all(database.ok for database in self.databases)

    def named(self, outcome: str) -> list[str]:
        return [d.name for d in self.databases if d.outcome == outcome]

    @property
    def summary(self) -> str:
        total = len(self.databases)
        text = f"Fleet run: {len(self.named(SUCCESS))} of {total} database(s) migrated"
        for outcome, word in (
            (FAILED, "failed"),
            (LOCKED, "being migrated by someone else"),
            (UNREACHABLE, "unreachable"),
            (SKIPPED, "not started"),
        ):
            names = self.named(outcome)
            if names:
                text += f"; {word}: {', '.join(names)}"
        if self.interrupted is not None:
            text += f"; interrupted by {signal.Signals(self.interrupted).name}"
        return text + "."


def console_command() -> list[str]:
    """The ``tbmigrate`` command as this Python runs it (the console entry point)."""
    return [sys.executable, "-m", "migrator.console"]


def child_environment(fleet: Fleet, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a child ``tbmigrate run`` needs to be the same tbmigrate: this process's
    environment, its settings module (importable), its scripts folder and the fleet file."""
    from django.conf import settings

    env = dict(os.environ if base is None else base)
    module = getattr(settings, "SETTINGS_MODULE", None) or os.environ.get(
        "DJANGO_SETTINGS_MODULE", ""
    )
    if module:
        env["DJANGO_SETTINGS_MODULE"] = module
        root = _import_root(module)
        if root:
            env["PYTHONPATH"] = os.pathsep.join(
                part for part in (root, env.get("PYTHONPATH", "")) if part
            )
    env["TBMIGRATE_SCRIPTS_DIR"] = str(conf.scripts_dir())
    env["TBMIGRATE_FLEET_FILE"] = str(fleet.path)
    return env


def _import_root(module: str) -> str | None:
    """The folder from which ``module`` (a settings module) is imported."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module.split(".")[0])
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return str(Path(next(iter(spec.submodule_search_locations))).parent)
    return str(Path(spec.origin).parent) if spec.origin else None


def probe(name: str) -> tuple[str, str | None]:
    """Before its child starts: can the database be reached, and is someone migrating
    it?  ``(SUCCESS, None)``, ``(UNREACHABLE, why)`` or ``(LOCKED, who)``; never waits
    for the lock (a SQLite file not created yet is fine: ``run`` creates it)."""
    from django.db import DatabaseError, connections

    from migrator import locking, targets

    try:
        with contextlib.suppress(DatabaseMissing):  # run creates it; someone may hold its lock
            targets.connect(name)
        holder = locking.is_locked(name)
    except (DatabaseUnavailable, ConfigurationError) as exc:
        return UNREACHABLE, redact.scrub(exc)
    except DatabaseError as exc:
        return UNREACHABLE, targets.connection_error_message(name, exc)
    finally:
        connections[name].close()
    if holder is not None:
        return LOCKED, (
            f"database {targets.describe(name)} is being migrated by "
            f"{locking.holder_description(holder)}; not waited for (run the fleet again "
            "once it is done)"
        )
    return SUCCESS, None


@dataclass
class _Child:
    entry: Entry
    canary: bool
    process: subprocess.Popen[bytes]
    stdout: IO[bytes]
    stderr: IO[bytes]
    started: float


def run(
    fleet: Fleet,
    entries: Sequence[Entry],
    *,
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    canary: int = 0,
    max_parallel: int = 1,
    continue_on_error: bool = False,
    lock_timeout: float | None = None,
    to: str | None = None,
    on_start: Callable[[Entry, bool], None] | None = None,
    on_done: Callable[[DatabaseRun], None] | None = None,
) -> FleetRun:
    """Migrate each database by a ``tbmigrate run --database NAME --json`` process.

    The first ``canary`` databases go one at a time, and any that does not end well
    stops the fleet there.  Then the rest, ``max_parallel`` at a time; after one that
    does not end well no new one is started (those running finish) unless
    ``continue_on_error``.  A database someone else is migrating is reported
    (``LOCKED``) without waiting; a child itself waits ``lock_timeout`` at most.
    SIGTERM or SIGINT is passed on to the children, which end their step as a failure
    does; the result then says so (``interrupted``).
    """
    from migrator import signals

    if max_parallel < 1:
        raise FleetFileError(f"--max-parallel must be 1 or more, not {max_parallel}")
    if canary < 0:
        raise FleetFileError(f"--canary must be 0 or more, not {canary}")
    resolve(fleet, entries)
    argv = list(command or console_command())
    child_env = dict(env) if env is not None else child_environment(fleet)
    extra = ["--lock-timeout", f"{lock_timeout:g}"] if lock_timeout is not None else []
    extra += ["--to", to] if to else []
    done: dict[str, DatabaseRun] = {}
    running: list[_Child] = []
    stopped_by: list[str] = []
    canaries = list(entries[:canary])
    rest = deque(entries[canary:])
    result = FleetRun(
        fleet, [], canary=len(canaries), max_parallel=max_parallel,
        continue_on_error=continue_on_error,
    )  # fmt: skip

    def finish(outcome: DatabaseRun) -> None:
        done[outcome.name] = outcome
        if not outcome.ok and (outcome.canary or not continue_on_error):
            stopped_by.append(outcome.name)
        if on_done is not None:
            on_done(outcome)

    def start(entry: Entry, is_canary: bool) -> None:
        database, vendor = _described(entry.name)
        verdict, why = probe(entry.name)
        if verdict != SUCCESS:
            finish(DatabaseRun(entry, database, vendor, verdict, is_canary, error=why))
            return
        if on_start is not None:
            on_start(entry, is_canary)
        # Files, not pipes: a chatty child never blocks; closed by _collect.
        out = tempfile.TemporaryFile()  # noqa: SIM115
        err = tempfile.TemporaryFile()  # noqa: SIM115
        args = ["run", "--database", entry.name, "--json", "--no-input", *extra]
        process = subprocess.Popen(
            [*argv, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=child_env
        )
        running.append(_Child(entry, is_canary, process, out, err, time.monotonic()))

    def reap() -> None:
        """Collect the children that ended, or pause a moment when none has."""
        ended = [child for child in running if child.process.poll() is not None]
        if not ended:
            time.sleep(0.05)
        for child in ended:
            running.remove(child)
            finish(_collect(child))

    with signals.handled():
        try:
            for entry in canaries:  # one at a time: the first that fails stops everything
                if stopped_by:
                    break
                start(entry, True)
                while running:
                    reap()
            while (rest and not stopped_by) or running:
                while rest and not stopped_by and len(running) < max_parallel:
                    start(rest.popleft(), False)
                reap()
        except KeyboardInterrupt as exc:
            result.interrupted = int(getattr(exc, "signum", signal.SIGINT))
            with signals.shielded():  # pass it on, then let every child end its step
                for child in running:
                    with contextlib.suppress(ProcessLookupError):
                        child.process.send_signal(result.interrupted)
                for child in running:
                    child.process.wait()
                    finish(_collect(child))
                running.clear()
    reason = _stop_reason(done, stopped_by, result.interrupted)
    for index, entry in enumerate(entries):
        if entry.name not in done:
            database, vendor = _described(entry.name)
            done[entry.name] = DatabaseRun(
                entry, database, vendor, SKIPPED, index < len(canaries), summary=reason
            )
    result.databases = [done[entry.name] for entry in entries]
    return result


def _stop_reason(done: Mapping[str, DatabaseRun], stopped_by: list[str], signum: int | None) -> str:
    if signum is not None:
        return f"not started: interrupted by {signal.Signals(signum).name}"
    if not stopped_by:
        return "not started"
    first = done[stopped_by[0]]
    what = "canary " if first.canary else ""
    return f"not started: {what}{first.name} ended {first.outcome}"


def _collect(child: _Child) -> DatabaseRun:
    """A finished child's result, from its one JSON document (``run.schema.json``)."""
    seconds = time.monotonic() - child.started
    code = child.process.returncode
    child.stdout.seek(0)
    child.stderr.seek(0)
    out = child.stdout.read().decode("utf-8", errors="replace")
    err = child.stderr.read().decode("utf-8", errors="replace")
    child.stdout.close()
    child.stderr.close()
    database, vendor = _described(child.entry.name)
    found = DatabaseRun(
        child.entry,
        database,
        vendor,
        SUCCESS if code == 0 else FAILED,
        child.canary,
        duration_ms=round(seconds * 1000, 1),
        exit_code=code,
    )
    try:
        document = json.loads(out)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        lines = [line for line in redact.scrub(err).splitlines() if line.strip()]
        found.error = (lines[-1] if lines else f"exited {code} with no result")[:500]
        if code == 0:
            found.outcome = FAILED  # a run must say what it did
        return found
    steps = document.get("steps") or []
    found.applied = [s["version"] for s in steps if s.get("outcome") == SUCCESS]
    found.planned = list(document.get("planned") or [])
    found.summary = redact.scrub(document.get("summary") or "")
    error = document.get("error")
    if error is None and code != 0:
        failed = [s for s in steps if s.get("outcome") != SUCCESS]
        error = failed[-1].get("error") if failed else f"exited {code}"
    found.error = redact.scrub(error) if error else None
    if code != 0 and not found.summary:
        found.summary = found.error or ""
    return found
