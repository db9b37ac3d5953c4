"""How tbmigrate writes times, durations, rates and tables, on the command line and in the admin.

One module so that a time reads the same everywhere: ``2026-12-01 19:46:17 UTC``, always
in UTC and to the second, whatever the server's or the browser's time zone (Django's
own admin formats times by ``DATE_FORMAT``: "Dec. 1, 2026, 7:46 p.m.", which an engineer
comparing a log line with a page at 3 a.m. cannot use).  Everything here is pure: values
in, text out; no Django, no database.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def when(value: datetime | str | None) -> str:
    """``2026-12-01 19:46:17 UTC``; "" for ``None``.

    An aware time is converted to UTC; a naive one is taken as UTC already (Django
    stores UTC, and SQLite hands naive UTC back when ``USE_TZ`` is off).  An ISO-8601
    text (the progress of an in-progress step is JSON) is parsed first; any other text
    is returned as it is.
    """
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        parsed = parse_time(value)
        if parsed is None:
            return value
        value = parsed
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime | None:
    """An ISO-8601 time (``Z`` accepted) or one already in ``TIME_FORMAT``, as an aware UTC
    datetime; ``None`` when the text is neither."""
    text = text.strip()
    for candidate in (text.replace("Z", "+00:00"), text.replace(" UTC", "+00:00")):
        try:
            parsed = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return None


def duration(ms: float | None) -> str:
    """A step's duration: ``4.2 ms``, ``812 ms``, ``12.5 s``; "" for ``None``."""
    if ms is None:
        return ""
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 10_000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.1f} s"


def span(seconds: float | None) -> str:
    """A longer stretch of time, for elapsed and remaining: ``45 s``, ``12 min 5 s``,
    ``3 h 20 min``; "" for ``None``."""
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def count(value: float | None) -> str:
    """A row count with thousands separators: ``120,000``; "" for ``None``."""
    return "" if value is None else f"{round(value):,}"


def size(n: float) -> str:
    """Bytes as people read them: ``512 B``, ``1.5 KB``, ``3.2 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def rate(rows_per_second: float | None) -> str:
    """``8,500 rows/s``; "" for ``None``."""
    return "" if rows_per_second is None else f"{count(rows_per_second)} rows/s"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns; cells may carry colour codes, which take no width."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, _width(cell)) for w, cell in zip(widths, row, strict=True)]

    def fmt(cells: Sequence[str]) -> str:
        padded = (
            cell + " " * (width - _width(cell)) for cell, width in zip(cells, widths, strict=True)
        )
        return "  ".join(padded).rstrip()

    return [fmt(headers)] + [fmt(row) for row in rows]


def _width(cell: str) -> int:
    return len(_ANSI.sub("", cell))


def first_line(text: str | None, limit: int | None = None) -> str:
    """The first non-empty line of ``text``, cut to ``limit`` characters with "…"."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if limit is not None and len(first) > limit:
        return first[: limit - 1] + "…"
    return first
