"""What every check returns, and the report a validation hands back.

A check is any callable returning one ``CheckResult`` or several; rendering them is
the command's job.  Keeping results plain frozen data is what lets the same report
become text lines, ``--json``, an audit event's details and a refused rollback's
reason without any of those knowing about the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["PASS", "WARN", "FAIL"]
PASS: Level = "PASS"
WARN: Level = "WARN"
FAIL: Level = "FAIL"
LEVELS: tuple[Level, ...] = (PASS, WARN, FAIL)
KINDS = ("schema", "migration", "rollback", "scripts")
Details = dict[str, Any] | list[Any]


@dataclass(frozen=True)
class CheckResult:
    """One finding: ``name`` says which check, ``message`` what it found (with numbers)."""

    name: str
    level: Level
    message: str
    details: Details = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "level": self.level,
            "message": self.message,
            "details": plain(self.details),
        }


def plain(value: Any) -> Any:
    """``value`` as JSON data: a key sampled from the database may be a Decimal, a UUID, a date.

    Anything else than JSON's own types becomes its text, which loses nothing a reader
    needs and keeps the audit event's JSON column and ``--json`` output valid.
    """
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def passed(name: str, message: str, details: Details | None = None) -> CheckResult:
    return CheckResult(name, PASS, message, {} if details is None else details)


def warned(name: str, message: str, details: Details | None = None) -> CheckResult:
    return CheckResult(name, WARN, message, {} if details is None else details)


def failed(name: str, message: str, details: Details | None = None) -> CheckResult:
    return CheckResult(name, FAIL, message, {} if details is None else details)


@dataclass
class Report:
    """The results of one validation of one database."""

    kind: str  # schema | migration | rollback | scripts
    database: str  # masked URL
    vendor: str
    target: str | None = None
    results: list[CheckResult] = field(default_factory=list)

    def add(self, found: CheckResult | Iterable[CheckResult] | None) -> None:
        if found is None:
            return
        if isinstance(found, CheckResult):
            self.results.append(found)
        else:
            self.results.extend(found)

    @property
    def ok(self) -> bool:
        return not any(r.level == FAIL for r in self.results)

    @property
    def counts(self) -> dict[str, int]:
        return {level: sum(1 for r in self.results if r.level == level) for level in LEVELS}

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.level == FAIL]

    @property
    def title(self) -> str:
        return f"validate {self.kind}" + (f" {self.target}" if self.target else "")

    @property
    def summary(self) -> str:
        counts = self.counts
        verdict = "failed" if counts[FAIL] else "passed"
        return (
            f"{self.title} {verdict}: {counts[FAIL]} failed, {counts[WARN]} warning(s), "
            f"{counts[PASS]} passed"
        )

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` document (its shape is a public contract: see the README)."""
        return {
            "validation": self.kind,
            "database": self.database,
            "vendor": self.vendor,
            "target": self.target,
            "ok": self.ok,
            "counts": self.counts,
            "checks": [r.as_dict() for r in self.results],
            "summary": self.summary,
        }
