"""Migrations written as plain SQL files, beside the Python ones.

Two forms, with the time stamp optional as for Python scripts:

- a pair ``2026-11-26T10-00-00-1.0.3-add-notes.up.sql`` and, optionally,
  ``….down.sql`` (golang-migrate's and Diesel's form);
- one file ``2026-11-26T10-00-00-1.0.3-add-notes.sql`` holding a ``-- migrate:up``
  section and optionally a ``-- migrate:down`` one (dbmate's form, ``transaction:false``
  on the section line included).

Where one text cannot serve both databases, vendor variants stand beside (or instead
of) the generic files: ``….postgresql.up.sql``, ``….sqlite.up.sql`` (or
``….postgresql.sql``).  A database uses its own variant when there is one, all of it
(its up and its down), else the generic files.

Comment lines at the top of a file may set what a Python script sets with module
variables: ``-- tbmigrate: atomic=false`` (run without a transaction, e.g. ``CREATE
INDEX CONCURRENTLY``), ``phase=contract``, ``lock_timeout=5s``, ``lock_retries=3``,
``description="…"``, and ``accept.HAZARD="reason"`` (a lock hazard the script accepts, as
a Python script's ``hazards_accepted``).  Otherwise the description is the first plain
comment line there.

The checksum is the file's SHA-256 (line endings ignored), as for a Python script;
for several files (a pair, variants) the SHA-256 of each file's name ending and
SHA-256, so editing, adding or removing any of them is a change.  Statements are split
and run by ``db.execute_script``, which names a failing one with its line in the file.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrator.errors import ScriptError, SqlScriptError
from migrator.versions import VERSION_PATTERN, Version

VENDORS = ("postgresql", "sqlite")
ROLES = ("up", "down")
SQL_FILE_NAME = re.compile(
    r"^(?:(?P<stamp>\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2})-)?"
    rf"(?P<version>{VERSION_PATTERN})-(?P<name>[^.]+)(?P<suffix>(?:\.[A-Za-z0-9_]+)*)\.sql$"
)
_SECTION = re.compile(r"^--\s*migrate:(?P<role>up|down)\b(?P<options>.*)$")
_MARKER = re.compile(r"^--\s*tbmigrate:(?P<options>.*)$")
MARKER_KEYS = ("atomic", "phase", "lock_timeout", "lock_retries", "description")
ACCEPT = "accept."  # -- tbmigrate: accept.rewrite="the table is read at night only"


@dataclass(frozen=True)
class SqlFile:
    """One file of an SQL migration, by what its name says."""

    path: Path
    base: str  # the name without vendor, role and ".sql": what a pair's files share
    version: Version
    name: str
    vendor: str | None  # None: for every database without a variant of its own
    role: str | None  # "up", "down", or None (one file with -- migrate: sections)

    @property
    def ending(self) -> str:
        """``postgresql.up.sql``, ``up.sql``, ``sql``: what tells the files of one base apart."""
        return ".".join([p for p in (self.vendor, self.role) if p] + ["sql"])


def parse_name(path: Path) -> SqlFile:
    match = SQL_FILE_NAME.match(path.name)
    if not match:
        raise ScriptError(
            f"{_shown(path)}: the file name must look like "
            "YYYY-MM-DDTHH-mm-ss-1.0.3-lower-case-name.up.sql (or .down.sql, or one .sql with "
            "-- migrate:up / -- migrate:down sections; create them with `tbmigrate create --sql`)"
        )
    parts = [p for p in match.group("suffix").split(".") if p]
    role = parts.pop() if parts and parts[-1] in ROLES else None
    vendor = parts.pop() if parts else None
    if parts or (vendor is not None and vendor not in VENDORS):
        extra = ".".join([*parts, vendor or ""]).strip(".")
        raise ScriptError(
            f"{_shown(path)}: '{extra}' in the file name is not a database; variants are "
            f"named ….{VENDORS[0]}.up.sql or ….{VENDORS[1]}.up.sql"
        )
    try:
        version = Version.parse(match.group("version"))
    except ValueError as exc:
        raise ScriptError(f"{_shown(path)}: {exc}") from None
    stamp = match.group("stamp")
    base = (f"{stamp}-" if stamp else "") + f"{match.group('version')}-{match.group('name')}"
    return SqlFile(path, base, version, match.group("name"), vendor, role)


def group_files(paths: Sequence[Path]) -> list[Path]:
    """One path per SQL migration (its first file), plus every path whose name does not
    parse, so that loading it reports the problem."""
    firsts: dict[str, Path] = {}
    unnamed: list[Path] = []
    for path in sorted(paths):
        try:
            base = parse_name(path).base
        except ScriptError:
            unnamed.append(path)
            continue
        firsts.setdefault(base, path)
    return sorted([*firsts.values(), *unnamed])


def files_of(path: Path) -> list[SqlFile]:
    """Every file of the migration ``path`` belongs to (a handful of ``stat`` calls,
    never a folder listing: loading 10,000 scripts stays linear)."""
    first = parse_name(path)
    found = []
    for vendor in (None, *VENDORS):
        for role in (None, *ROLES):
            ending = ".".join([p for p in (vendor, role) if p] + ["sql"])
            candidate = path.parent / f"{first.base}.{ending}"
            if candidate.is_file():
                found.append(parse_name(candidate))
    return found


@dataclass(frozen=True)
class Section:
    """The SQL of one direction of one variant, and where it starts in its file."""

    sql: str
    source: Path
    first_line: int


@dataclass
class SqlStep:
    """The ``up`` (or ``down``) of an SQL migration: runs the database's variant."""

    label: str
    direction: str
    sections: dict[str | None, Section]
    variants: frozenset[str | None]

    def section_for(self, vendor: str) -> Section:
        key = vendor if vendor in self.variants else None
        section = self.sections.get(key)
        if section is None:
            raise SqlScriptError(
                f"{self.label} has no SQL for {vendor} (add a ….{vendor}.{self.direction}.sql "
                f"or a generic ….{self.direction}.sql)"
            )
        return section

    def __call__(self, db: Any) -> None:
        from migrator.sqlsplit import split

        section = self.section_for(db.vendor)
        where = _shown(section.source)
        if not split(section.sql, section.first_line):
            raise SqlScriptError(
                f"{where} has no statements (write the {self.direction} SQL; an empty step "
                "is never recorded as done)"
            )
        db.execute_script(section.sql, source=where, first_line=section.first_line)


@dataclass(frozen=True)
class Loaded:
    """What ``scripts.load_script`` needs to build the ``Script``."""

    version: Version
    name: str
    description: str
    path: Path
    checksum: str
    source: bytes
    up: SqlStep
    down: SqlStep | None
    atomic: bool
    options: dict[str, Any]


def load(path: Path, checksum_of: Any) -> Loaded:
    """Read every file of the migration ``path`` belongs to."""
    files = files_of(path)
    first = files[0]
    label = f"{first.version} {first.name}"
    raw = {f.path: f.path.read_bytes() for f in files}
    texts = {f.path: _decode(f.path, raw[f.path]) for f in files}
    ups: dict[str | None, Section] = {}
    downs: dict[str | None, Section] = {}
    markers: dict[str, Any] = {}
    comments: list[str] = []
    atomic = True
    for key in sorted({f.vendor for f in files}, key=lambda v: v or ""):
        mine = {f.role: f for f in files if f.vendor == key}
        if None in mine and ("up" in mine or "down" in mine):
            raise ScriptError(
                f"{_shown(mine[None].path)} and {_shown(mine.get('up', mine.get('down')).path)} "  # type: ignore[union-attr]
                "are two forms of one migration; keep the single file or the .up.sql/.down.sql "
                "pair"
            )
        if None in mine:
            single = mine[None]
            up, down, found, head = _sections(single.path, texts[single.path])
        else:
            if "up" not in mine:
                raise ScriptError(
                    f"{_shown(mine['down'].path)} has no up file beside it (add "
                    f"{mine['down'].base}.{'.'.join(p for p in (key, 'up') if p)}.sql)"
                )
            up_file = mine["up"]
            found, head = _header(up_file.path, texts[up_file.path].splitlines())
            up = Section(texts[up_file.path], up_file.path, 1)
            down = None
            if "down" in mine:
                down_text = texts[mine["down"].path]
                down_markers, _ = _header(mine["down"].path, down_text.splitlines())
                if down_markers.get("atomic") is False:
                    found["atomic"] = False
                down = Section(down_text, mine["down"].path, 1)
        if found.pop("atomic", True) is False:
            atomic = False
        _merge(markers, found, label)
        comments.extend(head)
        ups[key] = up
        if down is not None:
            downs[key] = down
    variants = frozenset(ups)
    if downs and set(downs) != set(ups):
        lacking = sorted(k or "generic" for k in set(ups) - set(downs))
        raise ScriptError(
            f"{label}: the {', '.join(lacking)} SQL has no down while another variant has one "
            "(give every variant its down, or none: rollback then refuses the migration)"
        )
    description = str(markers.pop("description", "") or (comments[0] if comments else ""))
    return Loaded(
        version=first.version,
        name=first.name,
        description=description or first.name.replace("-", " ").capitalize(),
        path=first.path,
        checksum=_checksum(files, raw, checksum_of),
        source=_source(files, raw),
        up=SqlStep(label, "up", ups, variants),
        down=SqlStep(label, "down", downs, variants) if downs else None,
        atomic=atomic,
        options=markers,
    )


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        raise ScriptError(
            f"{_shown(path)}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None


def _sections(path: Path, text: str) -> tuple[Section, Section | None, dict[str, Any], list[str]]:
    """The ``-- migrate:up`` and ``-- migrate:down`` sections of a single file."""
    lines = text.splitlines()
    starts: dict[str, int] = {}
    found: dict[str, Any] = {}
    for number, line in enumerate(lines, 1):
        match = _SECTION.match(line.strip())
        if not match:
            continue
        role = match.group("role")
        if role in starts:
            raise ScriptError(f"{_shown(path)}, line {number}: a second `-- migrate:{role}`")
        starts[role] = number
        for option in match.group("options").split():
            if option in ("transaction:false", "transaction:true"):
                if option == "transaction:false":
                    found["atomic"] = False
            else:
                raise ScriptError(
                    f"{_shown(path)}, line {number}: unknown option '{option}' "
                    "(only transaction:false is known)"
                )
    if "up" not in starts:
        raise ScriptError(
            f"{_shown(path)}: has no `-- migrate:up` line (a single SQL file holds a "
            "`-- migrate:up` section and optionally a `-- migrate:down` one; or name it "
            "….up.sql)"
        )
    if "down" in starts and starts["down"] < starts["up"]:
        raise ScriptError(f"{_shown(path)}: `-- migrate:down` comes before `-- migrate:up`")
    markers, head = _header(path, lines[: starts["up"] - 1])
    if found.get("atomic") is False:
        markers["atomic"] = False
    end = starts.get("down", len(lines) + 1)
    up = Section("\n".join(lines[starts["up"] : end - 1]), path, starts["up"] + 1)
    down = None
    if "down" in starts:
        body = "\n".join(lines[starts["down"] :])
        from migrator.sqlsplit import split

        if split(body):
            down = Section(body, path, starts["down"] + 1)
    return up, down, markers, head


def _header(path: Path, lines: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """The ``-- tbmigrate:`` settings and plain comment lines before the first statement."""
    from migrator.scripts import parse_seconds

    markers: dict[str, Any] = {}
    comments: list[str] = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("--"):
            break
        match = _MARKER.match(line)
        if match is None:
            if not _SECTION.match(line):
                text = line.lstrip("-").strip()
                if text:
                    comments.append(text)
            continue
        where = f"{_shown(path)}, line {number}"
        try:
            pairs = shlex.split(match.group("options"))
        except ValueError as exc:
            raise ScriptError(f"{where}: {exc} in `-- tbmigrate:`") from None
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if sep and key.startswith(ACCEPT):
                if not value.strip():
                    raise ScriptError(
                        f'{where}: {key} needs its reason: {key}="why it is safe here"'
                    )
                markers.setdefault("hazards_accepted", {})[key[len(ACCEPT) :]] = value
                continue
            if not sep or key not in MARKER_KEYS:
                raise ScriptError(
                    f"{where}: '{pair}' is not a setting; write "
                    f"-- tbmigrate: KEY=VALUE with KEY one of {', '.join(MARKER_KEYS)}, "
                    f'or {ACCEPT}HAZARD="reason"'
                )
            try:
                markers[key] = _marker_value(key, value, parse_seconds)
            except ValueError as exc:
                raise ScriptError(f"{where}: {exc}") from None
    return markers, comments


def _marker_value(key: str, value: str, parse_seconds: Any) -> Any:
    if key == "atomic":
        if value.lower() not in ("true", "false"):
            raise ValueError(f"atomic must be true or false, not '{value}'")
        return value.lower() == "true"
    if key == "lock_timeout":
        return parse_seconds(value, "lock_timeout")
    if key == "lock_retries":
        if not value.isdigit():
            raise ValueError(f"lock_retries must be a whole number >= 0, not '{value}'")
        return int(value)
    if key == "phase" and value not in ("expand", "contract"):
        raise ValueError(f"phase must be expand or contract, not '{value}'")
    return value


def _merge(into: dict[str, Any], found: dict[str, Any], label: str) -> None:
    for key, value in found.items():
        if key in into and into[key] != value:
            raise ScriptError(
                f"{label}: its files disagree on {key} ({into[key]!r} and {value!r}); "
                "set it alike in every variant"
            )
        into[key] = value


def _checksum(files: Sequence[SqlFile], raw: dict[Path, bytes], checksum_of: Any) -> str:
    if len(files) == 1:
        return str(checksum_of(raw[files[0].path]))
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.ending):
        digest.update(f"{f.ending} {checksum_of(raw[f.path])}\n".encode())
    return digest.hexdigest()


def _source(files: Sequence[SqlFile], raw: dict[Path, bytes]) -> bytes:
    """The text kept in the history: the file, or each file after a line naming it."""
    if len(files) == 1:
        return raw[files[0].path]
    return b"".join(f"-- ==== {f.path.name}\n".encode() + raw[f.path] for f in files)


def _shown(path: Path) -> str:
    from migrator.scripts import shown

    return shown(path)
