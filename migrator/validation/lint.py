"""Safety lint for PostgreSQL: the dry run's statements through squawk.

squawk (https://squawkhq.com, the ``squawk-cli`` package) knows which DDL takes which
lock and rewrites what: a ``NOT NULL`` column without a default, an index built
without ``CONCURRENTLY``, a column type change that rewrites the table.  We feed it
the SQL the dry run really issued (parameters bound), one script at a time, and turn
each rule it reports into a WARN naming the rule, the script and the statement.

The statements of an atomic script run in a transaction, which squawk is told
(``--assume-in-transaction``), and the ``lock_timeout``/``statement_timeout`` the
executor sets from ``PG_LOCK_TIMEOUT``/``PG_STATEMENT_TIMEOUT`` are prepended, so
squawk judges what will actually run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from migrator.timeouts import StepTimeouts
from migrator.validation.base import CheckResult, passed, warned

TIMEOUT_SECONDS = 60
# Where tbmigrate itself has the fix, say so instead of squawk's generic advice.
TIPS = {
    "require-lock-timeout": "set TBMIGRATE_PG_LOCK_TIMEOUT (seconds) and tbmigrate sets "
    "lock_timeout for every step",
    "require-statement-timeout": "set TBMIGRATE_PG_STATEMENT_TIMEOUT (seconds) and tbmigrate "
    "sets statement_timeout for every step",
}


def squawk_command() -> str | None:
    """The squawk binary: on PATH, or beside this Python (an unactivated virtualenv)."""
    found = shutil.which("squawk")
    if found:
        return found
    beside = Path(sys.executable).parent / "squawk"
    return str(beside) if beside.is_file() else None


def lint(
    steps: Sequence[tuple[str, bool, list[str]]], server_version: str | None = None
) -> list[CheckResult]:
    """``steps``: (label, atomic, statements) per script, statements with parameters bound."""
    command = squawk_command()
    if command is None:
        return [
            warned(
                "lint",
                "squawk is not installed, so the statements were not linted "
                "(pip install squawk-cli, or reinstall tbmigrate)",
            )
        ]
    results: list[CheckResult] = []
    linted = 0
    for label, atomic, statements in steps:
        if not statements:
            continue
        linted += len(statements)
        findings = _run(command, label, atomic, statements, server_version)
        if isinstance(findings, str):
            results.append(warned("lint", f"squawk could not lint {label}: {findings}"))
            continue
        results.extend(_group(label, findings))
    if not results:
        results.append(
            passed("lint", f"squawk found nothing to warn about in {linted} statement(s)")
        )
    return results


def _prelude() -> list[str]:
    """The timeouts the executor sets before each step (the same ``migrator.timeouts``)."""
    return [f"{statement};" for statement in StepTimeouts.resolve().statements(local=False)]


def _run(
    command: str,
    label: str,
    atomic: bool,
    statements: list[str],
    server_version: str | None,
) -> list[dict[str, Any]] | str:
    """squawk's findings, each with ``statement`` (index into ``statements``); or an error."""
    lines = _prelude()
    starts = []
    for sql in statements:
        starts.append(len(lines))
        text = sql.strip().rstrip(";")
        lines.extend((text + ";").splitlines())
    argv = [command, "--reporter", "json", "--stdin-filepath", f"{label.replace(' ', '-')}.sql"]
    if atomic:
        argv.append("--assume-in-transaction")
    if server_version:
        argv += ["--pg-version", server_version]
    try:
        done = subprocess.run(
            argv,
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{exc.__class__.__name__}: {exc}"
    if done.returncode not in (0, 1):
        return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0]
    try:
        findings = json.loads(done.stdout or "[]")
    except ValueError:
        return "its output was not JSON"
    for finding in findings:
        line = int(finding.get("line", 0))
        finding["statement"] = max(
            (i for i, start in enumerate(starts) if start <= line), default=0
        )
    return list(findings)


def _group(label: str, findings: list[dict[str, Any]]) -> list[CheckResult]:
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for finding in findings:
        by_rule.setdefault(str(finding.get("rule_name") or "squawk"), []).append(finding)
    results = []
    for rule, items in by_rule.items():
        first = items[0]
        numbers = sorted({item["statement"] + 1 for item in items})
        message = str(first.get("message") or "").strip()
        help_text = str(first.get("help") or "").strip()
        tip = TIPS.get(rule) or help_text
        results.append(
            warned(
                "lint",
                f"{rule} in {label} (statement {', '.join(map(str, numbers))}): "
                + message.rstrip(".")
                + (f". Fix: {tip}" if tip else ""),
                {
                    "rule": rule,
                    "script": label,
                    "statements": numbers,
                    "message": message,
                    "help": help_text or None,
                },
            )
        )
    return results
