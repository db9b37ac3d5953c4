"""What changed in an applied script since it ran: the text kept in the history against the file.

Every applied row keeps the script's bytes as they ran (zlib-compressed, see
``history.compress``), so a ``changed`` script can be shown as a unified diff, as
``git diff`` would show it: ``--- applied`` is what ran, ``+++`` is the file now.
Rows applied before the text was kept say so; their
checksum still tells whether the file differs.  ``tbmigrate diff VERSION`` prints it;
the admin's page of an applied migration shows it.

Only the one file named by the version is read (not every script), so a diff still
works while another script, or the edited one itself, no longer loads.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from migrator import history, redact, scripts
from migrator.errors import ScriptError, UsageError
from migrator.versions import Version


@dataclass(frozen=True)
class ScriptDiff:
    """One applied version's script as it ran against the file now."""

    version: str
    name: str
    applied_checksum: str
    path: Path | None  # None: no file with this version in the scripts folder
    current_checksum: str | None  # None when the file is gone
    kept: bool  # the text as applied is in the history
    lines: tuple[str, ...]  # the unified diff (empty when the same, or when not kept)

    @property
    def same(self) -> bool:
        """The file is the one that ran (by checksum, so known even when the text was not kept)."""
        return self.current_checksum == self.applied_checksum

    @property
    def text(self) -> str:
        return "".join(self.lines)


def unified(applied: str, now: str | None, version: str, path: str = "") -> list[str]:
    """The unified diff of ``applied`` (what ran) against ``now`` (``None``: the file is gone),
    every line ending in a newline, passwords scrubbed; empty when they are the same."""
    before = _lines(applied)
    after = _lines(now) if now is not None else []
    label = path or version
    diff = difflib.unified_diff(
        before,
        after,
        fromfile=f"{version} as applied",
        tofile=f"{label} now" if now is not None else f"{label} (file gone)",
    )
    return [redact.scrub(line.rstrip("\n")) + "\n" for line in diff]


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").splitlines(keepends=True)


def script_file(folder: Path, version: Version) -> Path | None:
    """The file of ``version`` in ``folder``, by its name alone (the file need not load)."""
    for path in scripts.script_files(folder):
        try:
            found, _ = scripts.parse_file_name(path)
        except ScriptError:  # a badly named file is `status`'s to report, not ours
            continue
        if found == version:
            return path
    return None


def script_diff(alias: str, version: str, folder: Path) -> ScriptDiff:
    """``version`` as it ran on ``alias`` against its file in ``folder`` now.

    Raises ``UsageError`` when ``version`` is not a version or has no history row
    (nothing ran, so there is nothing to compare).
    """
    try:
        parsed = Version.parse(version)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    applied = history.script_as_applied(alias, parsed)
    if applied is None:
        raise UsageError(
            f"{parsed} has no history row on this database: nothing of it ran, so there is "
            "nothing to compare (`tbmigrate status` lists what is applied)"
        )
    path = script_file(folder, parsed)
    data = path.read_bytes() if path is not None else None
    current = scripts.checksum(data) if data is not None else None
    now = data.decode("utf-8", errors="replace") if data is not None else None
    lines: tuple[str, ...] = ()
    if applied.text is not None and current != applied.checksum:
        lines = tuple(unified(applied.text, now, str(parsed), scripts.shown(path) if path else ""))
    return ScriptDiff(
        version=str(parsed),
        name=applied.name,
        applied_checksum=applied.checksum,
        path=path,
        current_checksum=current,
        kept=applied.text is not None,
        lines=lines,
    )
