"""Log records CI can read: one JSON object a line, and the step fields every record has.

The executor logs each step it starts, finishes or fails with ``extra={"step": {...}}``
(see ``step_fields``).  ``JsonFormatter`` turns every record into one line of the shape
``migrator/schemas/log-record.schema.json`` documents, the step fields null on records
that are not about a step, so a log shipper needs one parser for all of them.

Nothing here configures logging: ``tradingbot_site/settings.py`` does (``LOGGING``),
choosing this formatter when ``TBMIGRATE_LOG_FORMAT=json``.  A library that configured
logging itself would take over its host's (alembic#714).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from migrator import redact

STEP_FIELDS = ("action", "version", "name", "outcome", "duration_ms", "error", "database")


def step_fields(
    action: str,
    version: object,
    name: str,
    outcome: str,
    *,
    database: str,
    duration_ms: float | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """The ``extra`` of a step record: ``logger.info(msg, extra=step_fields(...))``.

    They travel as one ``step`` attribute because a LogRecord already has a ``name``
    (the logger's), which ``extra`` may not overwrite.
    """
    return {
        "step": {
            "action": action,
            "version": str(version),
            "name": name,
            "outcome": outcome,
            "duration_ms": duration_ms,
            "error": error or None,
            "database": database,
        }
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, with a fixed set of keys.

    Hand-written rather than python-json-logger: the keys are fixed and few, missing
    ones must be null (a stable schema), and every free text is scrubbed of passwords
    again here, so the formatter is safe even on a handler without the redact filter.
    """

    def format(self, record: logging.LogRecord) -> str:
        step = getattr(record, "step", None) or {}
        data: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in STEP_FIELDS:
            data[key] = step.get(key)
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
        for key in ("message", "name", "error", "database", "exception"):
            if isinstance(data.get(key), str):
                data[key] = redact.scrub(data[key])
        return json.dumps(data, default=str)


class HideStepRecords(logging.Filter):
    """Text mode: drop step records, which the command already shows as progress lines.

    Without it a failed step would print a log line *and* the command's one-line error.
    Settings install it only while ``TBMIGRATE_LOG_LEVEL`` is unset: asking for a level
    means asking for the records.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "step", None) is None
