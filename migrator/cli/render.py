"""Rendering helpers shared by the subcommands: output, JSON, prompts.

Times, durations and tables come from ``migrator.formatting`` (shared with the admin)
and are re-exported here for the subcommands.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.core.management.base import OutputWrapper
from django.core.management.color import Style

from migrator.errors import Aborted
from migrator.formatting import duration, table, when

__all__ = ["Output", "duration", "error_document", "progress", "table", "when"]


class Output:
    """What a handler writes to: stdout/stderr with Django's styles and verbosity."""

    def __init__(
        self, stdout: OutputWrapper, stderr: OutputWrapper, style: Style, options: dict[str, Any]
    ):
        self.stdout = stdout
        self.stderr = stderr
        self.style = style
        self.options = options
        self.verbosity = int(options.get("verbosity", 1))
        self.json = bool(options.get("json"))
        self.emitted = False  # a JSON document was written (there must be exactly one)

    @property
    def script_output(self) -> Any:
        """Where the migration scripts' own print() goes: stderr under --json."""
        return getattr(self.stderr, "_out", sys.stderr) if self.json else None

    def line(self, text: str = "", level: int = 1) -> None:
        """A human line; suppressed under --json (stdout is then one JSON document)."""
        if self.verbosity >= level and not self.json:
            self.stdout.write(text)

    def partial(self, text: str) -> None:
        if self.verbosity >= 1 and not self.json:
            self.stdout.write(text, ending="")
            self.stdout.flush()

    def note(self, text: str) -> None:
        """A message for the human even under --json (it goes to stderr there); shown at
        once, also in a CI log (a pipe, which Python buffers): waiting for the lock, a
        retry, a resume."""
        if self.json:
            self.stderr.write(text)
            self.stderr.flush()
        elif self.verbosity >= 1:
            self.stdout.write(text)
            self.stdout.flush()

    def summary(self, text: str) -> None:
        """The last stdout line of a command in text mode: what happened, in one line."""
        self.line(text)

    def emit_json(self, data: Any) -> None:
        """Write the command's one JSON document (see ``migrator/schemas/``)."""
        if self.emitted:
            raise RuntimeError("a command writes at most one JSON document")
        self.emitted = True
        self.stdout.write(json.dumps(data, indent=2, default=_json_default))

    def confirm(self, question: str, items: Iterable[str]) -> bool:
        """Ask to go on unless --no-input; refuse rather than hang when there is no terminal."""
        if not self.options.get("interactive", True):
            return True
        if not sys.stdin.isatty():
            raise Aborted(
                "confirmation needed but there is no terminal to ask on; "
                "add --no-input to go on without asking"
            )
        out = self.stderr if self.json else self.stdout
        for item in items:
            out.write(f"  {item}")
        prompt = f"{question} Type 'yes' to continue: "
        if self.json:  # stdout is reserved for the one JSON document
            self.stderr.write(prompt, ending="")
            self.stderr.flush()
            prompt = ""
        answer = input(prompt)
        return answer.strip().lower() == "yes"


def error_document(
    command: str | None, alias: str | None, message: str, exit_code: int
) -> dict[str, Any]:
    """What ``--json`` prints when an error stops a command before it has a result.

    Every schema in ``migrator/schemas/`` accepts this shape besides the command's own
    result, so a program reading stdout always gets one document with ``ok``.
    """
    return {
        "command": command,
        "database": _described(alias),
        "ok": False,
        "error": message,
        "exit_code": exit_code,
    }


def _described(alias: str | None) -> str | None:
    """The alias's masked URL, or None when it is not a usable alias."""
    from migrator import targets

    if not alias:
        return None
    try:
        targets.require(alias)
        return targets.describe(alias)
    except Exception:  # unknown or misconfigured: the error says so
        return None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def progress(out: Output):
    """Executor callbacks that print Django-style step lines: ``Applying 1.0.3 x... OK (12 ms)``."""
    from migrator.executor import Progress

    verbs = {"apply": "Applying", "revert": "Reverting", "fake": "Faking"}

    def on_start(action: str, script: Any) -> None:
        out.partial(f"  {verbs.get(action, action)} {script.label}...")

    def on_done(result: Any) -> None:
        # The whole wall time; lock waits that timed out, and retries, are said, not hidden.
        cost = duration(result.duration_ms)
        if result.attempts > 1 or result.lock_wait_ms:
            cost += (
                f", {result.attempts} attempts, {duration(result.lock_wait_ms)} of it "
                "waiting for locks"
            )
        if result.outcome == "success":
            out.line(out.style.SUCCESS(" OK") + f" ({cost})")
            if result.statements:
                out.line(f"    {result.statements} statement(s)", level=2)
        else:
            out.line(out.style.ERROR(" FAILED") + f" ({cost})")

    return Progress(on_start=on_start, on_done=on_done, on_message=out.note)
