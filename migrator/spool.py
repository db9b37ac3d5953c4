"""Audit events that could not reach the database, kept on disk until one can.

A step fails because the server restarted, the network went or the SQLite file was
removed: the failure's audit event is then the one record that matters most, and the
database is exactly what cannot take it.  The executor retries for a while; after that
the event (and, for a journaled step, the change of its history row) is appended to a
spool file as one JSON line, and the next command that takes the migration lock on that
database writes the spool into the audit log, saying so, then empties it.

Where: next to a SQLite file (``<db>.tbmigrate-spool.jsonl``); for PostgreSQL in the
``SPOOL_DIR`` folder, one file per server and database.  Files are ``0600``: an audit
event holds SQL and error texts (already scrubbed of passwords).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db import connections, transaction
from django.utils.dateparse import parse_datetime

from migrator import conf, history, targets

logger = logging.getLogger(__name__)


def path_for(alias: str) -> Path:
    sqlite = targets.sqlite_path(alias)
    if sqlite is not None:
        return sqlite.with_name(sqlite.name + ".tbmigrate-spool.jsonl")
    config = connections.settings[alias]
    who = f"{config.get('HOST') or 'localhost'}_{config.get('PORT') or 5432}_{config.get('NAME')}"
    return conf.project_path("SPOOL_DIR") / (re.sub(r"[^A-Za-z0-9_.-]", "_", who) + ".jsonl")


def keep(alias: str, *, event: dict[str, Any], record: dict[str, Any] | None) -> str:
    """Append one failure to the spool; return where (``""`` if even that failed)."""
    fields = history.event_fields(alias, **event)
    entry = {"event": _jsonable(fields), "record": record}
    path = path_for(alias)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
    except OSError as exc:
        logger.error("could not keep the failure in %s: %s", path, exc)
        return ""
    return str(path)


def waiting(alias: str) -> int:
    """How many events wait in the spool of ``alias`` (0 when there is none)."""
    path = path_for(alias)
    try:
        with open(path, encoding="utf-8") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return 0


def drain(alias: str) -> int:
    """Write the spooled events into the audit log (and put journaled rows right), then
    empty the spool; return how many were written.  tbmigrate's tables must exist.

    The spool is first renamed (atomically) to a name of this process's own, so two
    commands draining at once never write an event twice; if writing fails, the
    events go back into the spool.  Each event says it was spooled
    (``details.spooled``).  A history row is changed only if it is still the
    in-progress row of the process that spooled it.
    """
    path = path_for(alias)
    if not path.exists():
        return 0
    taken = path.with_name(f"{path.name}.{os.getpid()}.draining")
    try:
        os.rename(path, taken)
    except OSError:
        return 0  # another command took it first
    lines = [line for line in taken.read_text(encoding="utf-8").splitlines() if line.strip()]
    entries = []
    for line in lines:
        with contextlib.suppress(ValueError):
            entries.append(json.loads(line))
    try:
        with transaction.atomic(using=alias):
            for entry in entries:
                fields = dict(entry["event"])
                fields["timestamp"] = parse_datetime(fields["timestamp"])
                fields["details"] = {**(fields.get("details") or {}), "spooled": True}
                history.insert_event_fields(alias, fields)
                record = entry.get("record")
                if record:
                    history.journal_end(alias, **record)
    except Exception:
        with open(path, "a", encoding="utf-8") as back:
            back.write("".join(line + "\n" for line in lines))
        taken.unlink(missing_ok=True)
        raise
    taken.unlink(missing_ok=True)
    return len(entries)


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    found = {}
    for key, value in fields.items():
        found[key] = value.isoformat() if isinstance(value, datetime) else value
    return found
