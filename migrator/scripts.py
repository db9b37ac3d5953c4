"""Find, load and create migration scripts.

A script is a Python file in the scripts folder named
``YYYY-MM-DDTHH-mm-ss-VERSION-NAME.py`` (the time stamp is optional) that defines
``version``, ``up(db)`` and optionally ``name``, ``description``, ``atomic`` and
``down(db)``; or plain SQL (``….up.sql`` / ``….down.sql``, or one ``….sql`` with
``-- migrate:up`` / ``-- migrate:down``; see ``sql_scripts.py``).  Loading never writes
anything and returns immutable ``Script`` objects; every problem becomes a
``ScriptError`` naming the file.

The code that runs is compiled from the very bytes that were hashed, so a stored
checksum always describes the code that was executed.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import re
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from migrator.errors import ScriptError, UsageError
from migrator.versions import VERSION_PATTERN, Version

FILE_NAME = re.compile(
    r"^(?:(?P<stamp>\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2})-)?"
    rf"(?P<version>{VERSION_PATTERN})-(?P<name>[^.]+)\.py$"
)
NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
STAMP_FORMAT = "%Y-%m-%dT%H-%M-%S"


@dataclass(frozen=True)
class Script:
    """One loaded migration script."""

    version: Version
    name: str
    description: str
    path: Path
    checksum: str
    up: Callable[[Any], Any] = field(repr=False, compare=False)
    down: Callable[[Any], Any] | None = field(repr=False, compare=False)
    atomic: bool = True
    # The file's bytes as hashed (what ran is kept in the history, compressed).
    source: bytes = field(default=b"", repr=False, compare=False)
    # "expand" (the default) or "contract": `run --phase expand` stops before contract steps.
    phase: str = "expand"
    # PostgreSQL lock waits of this script's steps (None: the alias's settings).
    lock_timeout: float | None = None
    lock_retries: int | None = None
    # Lock hazards the author accepts, each with its reason: {"rewrite": "table is tiny"}.
    hazards_accepted: Mapping[str, str] = field(default_factory=dict, compare=False)
    kind: str = "python"  # "python" or "sql"

    @property
    def reversible(self) -> bool:
        return self.down is not None

    @property
    def label(self) -> str:
        return f"{self.version} {self.name}"


def checksum(data: bytes) -> str:
    """SHA-256 of the file with line endings normalised (a CRLF checkout is not a change)."""
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def shown(path: Path) -> str:
    """A path as the user would type it: relative to the current folder when inside it."""
    try:
        return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


def script_files(folder: Path) -> list[Path]:
    """One path per script: ``*.py`` files, and the first file of each SQL migration
    (``load_script`` finds the others), none starting with ``_`` or ``.``."""
    if not folder.is_dir():
        raise ScriptError(
            f"the scripts folder {shown(folder)} does not exist "
            "(create it, or set TBMIGRATE_SCRIPTS_DIR to the folder that holds the scripts)"
        )
    python: list[Path] = []
    sql: list[Path] = []
    for path in folder.iterdir():
        if path.name.startswith(("_", ".")) or path.suffix not in (".py", ".sql"):
            continue
        if path.is_file():
            (python if path.suffix == ".py" else sql).append(path)
    if not sql:
        return sorted(python)
    from migrator import sql_scripts

    return sorted([*python, *sql_scripts.group_files(sql)])


def parse_file_name(path: Path) -> tuple[Version, str]:
    if path.suffix == ".sql":
        from migrator import sql_scripts

        parsed = sql_scripts.parse_name(path)
        if not NAME.match(parsed.name):
            raise ScriptError(
                f"{shown(path)}: the name '{parsed.name}' must be lower-case words joined by "
                "hyphens, e.g. 2026-11-26T10-00-00-1.0.3-add-notes.up.sql"
            )
        return parsed.version, parsed.name
    match = FILE_NAME.match(path.name)
    if not match or not NAME.match(match.group("name")):
        raise ScriptError(
            f"{shown(path)}: the file name must look like "
            "YYYY-MM-DDTHH-mm-ss-1.0.3-lower-case-name.py (create scripts with `tbmigrate create`)"
        )
    try:
        version = Version.parse(match.group("version"))
    except ValueError as exc:
        raise ScriptError(f"{shown(path)}: {exc}") from None
    return version, match.group("name")


class _Shown:
    """``shown(path)``, worked out only if an error message is printed (it costs a
    ``getcwd`` and a ``relpath``, per file, on every load otherwise)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __str__(self) -> str:
        return shown(self.path)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


# (path, checksum) -> Script: a process that loads the scripts twice (plan, then again
# under the lock) compiles and runs each file once; an edited file has a new checksum.
_LOADED: dict[tuple[str, str], Script] = {}


def _compiled(data: bytes, path: Path) -> types.CodeType:
    """``compile(data)``, cached as Python caches imports, in ``__pycache__`` beside the
    script: keyed by the SHA-256 of these very bytes and the interpreter's cache tag, so
    a cached code object always belongs to exactly the bytes that were hashed (an edit,
    even of line endings, is a new key).  A missing, unreadable or foreign entry is
    compiled again; a folder that cannot be written is simply not cached."""
    key = hashlib.sha256(data).hexdigest()[:32]
    folder = path.parent / "__pycache__"
    cache = folder / f"{path.stem}.{key}.tbmigrate-{sys.implementation.cache_tag}"
    with contextlib.suppress(OSError, ValueError, EOFError, TypeError):
        code = marshal.loads(cache.read_bytes())
        if isinstance(code, types.CodeType) and code.co_filename == str(path):
            return code
    code = compile(data, str(path), "exec", dont_inherit=True)
    with contextlib.suppress(OSError):
        folder.mkdir(exist_ok=True)
        entries = _cache_entries(folder)
        for old in entries.pop(path.stem, []):
            (folder / old).unlink(missing_ok=True)  # entries of earlier versions of the file
        temporary = folder / f".{cache.name}.{os.getpid()}"
        temporary.write_bytes(marshal.dumps(code))
        os.replace(temporary, cache)
        entries[path.stem] = [cache.name]
    return code


_CACHE_LISTINGS: dict[Path, dict[str, list[str]]] = {}


def _cache_entries(folder: Path) -> dict[str, list[str]]:
    """Script stem -> its cache entries in ``folder``, listed once per process (a listing
    per compiled file would make a first run of 10,000 scripts quadratic)."""
    if folder not in _CACHE_LISTINGS:
        found: dict[str, list[str]] = {}
        for name in os.listdir(folder):
            if ".tbmigrate-" in name and not name.startswith("."):
                # "<stem>.<key>.tbmigrate-<tag>": the stem itself holds dots (1.0.3)
                stem = name.rsplit(".tbmigrate-", 1)[0].rsplit(".", 1)[0]
                found.setdefault(stem, []).append(name)
        _CACHE_LISTINGS[folder] = found
    return _CACHE_LISTINGS[folder]


def load_script(path: Path) -> Script:
    """Load one file into a ``Script``; raise ``ScriptError`` naming the file."""
    file_version, file_name = parse_file_name(path)
    if path.suffix == ".sql":
        return _load_sql(path)
    data = path.read_bytes()
    digest = checksum(data)
    cached = _LOADED.get((str(path), digest))
    if cached is not None:
        return cached
    where = _Shown(path)
    try:
        code = _compiled(data, path)
    except SyntaxError as exc:
        raise ScriptError(
            f"{where}, line {exc.lineno}: syntax error: {exc.msg} (fix the script; nothing was run)"
        ) from None
    module = types.ModuleType(f"tbmigrate_scripts.s_{digest[:16]}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    try:
        exec(code, module.__dict__)
    except Exception as exc:
        sys.modules.pop(module.__name__, None)
        raise ScriptError(
            f"{where}: importing it raised {exc.__class__.__name__}: {exc} "
            "(fix the script; scripts receive `db` and should not import application code)"
        ) from None
    script = _script_from_module(module, path, file_version, file_name, digest, data)
    _LOADED[(str(path), digest)] = script
    return script


def _script_from_module(
    module: types.ModuleType,
    path: Path,
    file_version: Version,
    file_name: str,
    digest: str,
    data: bytes,
) -> Script:
    where = _Shown(path)
    attrs = module.__dict__
    if "version" not in attrs:
        raise ScriptError(f'{where}: defines no `version` (add version = "{file_version}")')
    try:
        version = Version.parse(str(attrs["version"]))
    except ValueError as exc:
        raise ScriptError(f"{where}: {exc}") from None
    if version != file_version:
        raise ScriptError(
            f"{where}: declares version {version} but its file name says {file_version} "
            "(make them agree)"
        )
    name = attrs.get("name", file_name)
    if name != file_name:
        raise ScriptError(
            f"{where}: declares name '{name}' but its file name says '{file_name}' "
            "(make them agree)"
        )
    up, down = attrs.get("up"), attrs.get("down")
    if not callable(up):
        raise ScriptError(f"{where}: defines no up(db) function (every script needs one)")
    if down is not None and not callable(down):
        raise ScriptError(f"{where}: `down` must be a function down(db)")
    atomic = attrs.get("atomic", True)
    if not isinstance(atomic, bool):
        raise ScriptError(f"{where}: `atomic` must be True or False, not {atomic!r}")
    description = attrs.get("description") or (module.__doc__ or "").strip()
    options = script_options(attrs, where)
    return Script(
        version=version,
        name=name,
        description=str(description),
        path=path,
        checksum=digest,
        up=up,
        down=down,
        atomic=atomic,
        source=data,
        **options,
    )


def _load_sql(path: Path) -> Script:
    from migrator import sql_scripts

    loaded = sql_scripts.load(path, checksum)
    key = (str(loaded.path), loaded.checksum)
    cached = _LOADED.get(key)
    if cached is not None:
        return cached
    options = script_options(loaded.options, _Shown(loaded.path))
    script = Script(
        version=loaded.version,
        name=loaded.name,
        description=loaded.description,
        path=loaded.path,
        checksum=loaded.checksum,
        up=loaded.up,
        down=loaded.down,
        atomic=loaded.atomic,
        source=loaded.source,
        kind="sql",
        **options,
    )
    _LOADED[key] = script
    return script


PHASES = ("expand", "contract")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min)?\s*$")


def parse_seconds(value: Any, what: str) -> float:
    """``"500ms"``, ``"2s"``, ``"1min"``, ``2`` or ``0.5`` as seconds; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f'{what} must be a duration such as "500ms" or 2, not {value!r}')
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f'{what} must be a duration such as "500ms" or 2, not {value!r}')
        number, unit = float(match.group(1)), match.group(2) or "s"
        seconds = number / 1000 if unit == "ms" else number * 60 if unit == "min" else number
    if seconds < 0:
        raise ValueError(f"{what} must not be negative, not {value!r}")
    return seconds


def script_options(attrs: Mapping[str, Any], where: Any) -> dict[str, Any]:
    """The optional module-level settings of a script, checked: ``phase``,
    ``lock_timeout``, ``lock_retries``, ``hazards_accepted``."""
    options: dict[str, Any] = {}
    phase = attrs.get("phase", "expand")
    if phase not in PHASES:
        raise ScriptError(f'{where}: `phase` must be "expand" or "contract", not {phase!r}')
    options["phase"] = phase
    if attrs.get("lock_timeout") is not None:
        try:
            options["lock_timeout"] = parse_seconds(attrs["lock_timeout"], "`lock_timeout`")
        except ValueError as exc:
            raise ScriptError(f"{where}: {exc}") from None
    retries = attrs.get("lock_retries")
    if retries is not None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ScriptError(
                f"{where}: `lock_retries` must be a whole number >= 0, not {retries!r}"
            )
        options["lock_retries"] = retries
    accepted = attrs.get("hazards_accepted", {})
    if not isinstance(accepted, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in accepted.items()
    ):
        raise ScriptError(
            f"{where}: `hazards_accepted` must map each hazard to its reason, e.g. "
            '{"rewrite": "the table is tiny"}'
        )
    if accepted:
        from migrator.validation.hazards import HAZARD_IDS

        unknown = sorted(set(accepted) - set(HAZARD_IDS))
        if unknown:
            raise ScriptError(
                f"{where}: `hazards_accepted` names no hazard {', '.join(map(repr, unknown))} "
                f"(the hazards are {', '.join(HAZARD_IDS)})"
            )
    options["hazards_accepted"] = dict(accepted)
    return options


def load_scripts(folder: Path) -> list[Script]:
    """Load every script in ``folder``, sorted by version.

    Every problem in every file is collected first, so one run reports them all;
    duplicates are named with both files.  Nothing is loaded partially: either all
    scripts are returned or ``ScriptError`` is raised.
    """
    problems: list[str] = []
    scripts: list[Script] = []
    for path in script_files(folder):
        try:
            scripts.append(load_script(path))
        except ScriptError as exc:
            problems.append(str(exc))
    problems.extend(_duplicates(scripts))
    if problems:
        head = (
            "a migration script cannot be loaded"
            if len(problems) == 1
            else (f"{len(problems)} migration script problems")
        )
        raise ScriptError(f"{head}: " + "; ".join(problems))
    return sorted(scripts, key=lambda script: script.version)


def _duplicates(scripts: Iterable[Script]) -> list[str]:
    seen: dict[Version, Script] = {}
    problems = []
    for script in scripts:
        if script.version in seen:
            problems.append(
                f"version {script.version} is used by both {shown(seen[script.version].path)} and "
                f"{shown(script.path)} (give one of them the next free version)"
            )
        else:
            seen[script.version] = script
    return problems


TEMPLATE = '''"""{description}"""

version = "{version}"
name = "{name}"
description = {description_literal}
# atomic = False  # run outside a transaction (e.g. CREATE INDEX CONCURRENTLY on PostgreSQL)


def up(db):
    # db.execute(sql, params) runs SQL with %s placeholders on PostgreSQL and SQLite;
    # db.vendor is "postgresql" or "sqlite"; see migrator/database.py for the helpers.
    raise NotImplementedError("write up() of {version} {name}")


def down(db):
    # Undo exactly what up() did. Delete this function only if the change cannot be
    # undone: rollback then refuses, and `tbmigrate status` shows it as irreversible.
    raise NotImplementedError("write down() of {version} {name}")
'''


def render(version: Version, name: str, description: str) -> str:
    return TEMPLATE.format(
        version=version,
        name=name,
        description=description.replace('"""', "'''") or name.replace("-", " ").capitalize(),
        description_literal=repr(description or name.replace("-", " ").capitalize()),
    )


SQL_UP_TEMPLATE = """\
-- {description}
--
-- {version} {name}: statements separated by ";", run in one transaction with the
-- history row (a first line "-- tbmigrate: atomic=false" runs them without one, e.g.
-- for CREATE INDEX CONCURRENTLY). A file with no statement never counts as applied.
-- Where PostgreSQL and SQLite need different SQL, write ….postgresql.up.sql and
-- ….sqlite.up.sql (each with its .down.sql) instead of this pair.

"""

SQL_DOWN_TEMPLATE = """\
-- Undo exactly what the .up.sql of {version} {name} did. Delete this file only if the
-- change cannot be undone: rollback then refuses, and `tbmigrate status` shows it as
-- irreversible.

"""


def create_script(
    folder: Path,
    version_text: str,
    name: str,
    description: str = "",
    now: datetime | None = None,
    *,
    sql: bool = False,
) -> Path:
    """Write a new script from the template and return its path (the ``.up.sql`` of an
    SQL pair, whose ``.down.sql`` is written beside it)."""
    try:
        version = Version.parse(version_text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not NAME.match(name):
        raise UsageError(
            f"'{name}' is not a valid name: use lower-case words joined by hyphens, "
            "e.g. add-trading-sessions"
        )
    if not folder.is_dir():
        raise UsageError(
            f"the scripts folder {shown(folder)} does not exist "
            "(create it, or set TBMIGRATE_SCRIPTS_DIR)"
        )
    for path in script_files(folder):
        try:
            existing = parse_file_name(path)[0]
        except ScriptError:
            continue
        if existing == version:
            raise UsageError(
                f"version {version} already exists in {shown(path)} (choose the next free version)"
            )
    stamp = (now or datetime.now(UTC)).strftime(STAMP_FORMAT)
    stem = f"{stamp}-{version}-{name}"
    if sql:
        text = description or name.replace("-", " ").capitalize()
        files = {
            folder / f"{stem}.up.sql": SQL_UP_TEMPLATE.format(
                description=text.replace("\n", " "), version=version, name=name
            ),
            folder / f"{stem}.down.sql": SQL_DOWN_TEMPLATE.format(version=version, name=name),
        }
    else:
        files = {folder / f"{stem}.py": render(version, name, description)}
    _check_name_length(folder, files)
    written: list[Path] = []
    try:
        for path, content in files.items():
            with path.open("x", encoding="utf-8") as handle:
                written.append(path)
                handle.write(content)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return next(iter(files))


def _check_name_length(folder: Path, files: Mapping[Path, str]) -> None:
    """A name too long for the file system is bad usage, said before anything is written."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    for path in files:
        size = len(os.fsencode(path.name))
        if size > limit:
            raise UsageError(
                f"the file name {path.name[:40]}… would be {size} bytes, more than the {limit} "
                "this file system allows; choose a shorter NAME"
            )
