"""Validation: read-only checks of the live database, the scripts, and a planned rollback.

Each check returns ``CheckResult``s (``base.py``); a validation gathers them into a
``Report`` that the command renders as lines or JSON.  Modules, one per concern:

- ``schema.py``     ``validate schema``: history, drift (scripts replayed on a scratch
                    database, compared by introspection), data integrity;
- ``preflight.py``  ``validate migration VERSION``: before ``run``;
- ``rollback.py``   ``validate rollback VERSION``: before ``rollback`` (which runs it too);
- ``roundtrip.py``  ``validate scripts``: every down undoes its up, on scratch databases;
- ``guards.py``     built-in rollback guards (``ROLLBACK_GUARDS``);
- ``hazards.py``    the lock-hazard gate of ``run`` (and ``validate migration``'s
                    ``hazards`` check): statements that would stall traffic on a large table;
- ``phases.py``     expand/contract: a drop or rename in the run of its replacement;
- ``introspect.py`` schemas as comparable data; ``scratch.py`` throw-away databases;
  ``dryrun.py`` steps run in an always-rolled-back transaction; ``lint.py`` squawk;
  ``rehearsal.py`` pending steps applied on a scratch database, PostgreSQL asked at each
  statement; ``statements.py`` what a statement does to which table.
"""

from __future__ import annotations

from migrator.validation.base import FAIL, PASS, WARN, CheckResult, Report

__all__ = ["FAIL", "PASS", "WARN", "CheckResult", "Report"]
