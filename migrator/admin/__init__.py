"""Read-only review of tbmigrate's history in the Django admin: the incident room.

The pages answer, without a terminal and without reading JSON:

- **Applied migrations** (``models.AppliedMigrationAdmin``): what ran, when (UTC, to the
  second), for how long, by whom, whether the script on disk still matches, and for a
  ``changed`` script a unified diff of what ran against the file now; a duration chart
  in which the slowest migration stands out.
- **Audit log** (``models.AuditEventAdmin``): every run, revert, validation and refusal,
  linked to its history row and its run; a failure names the later event that
  resolved it (or says "unresolved"); a failed validation lists its failing checks.
- **Runs** and **a run** (``views.runs``, ``views.run``): one command with its events,
  the versions it applied or reverted, its duration and outcome.
- **Pending migrations** (``views.pending``): what the next ``tbmigrate run`` would do,
  and anything changed, missing, failed or interrupted.
- **Now running** (``views.running``, from ``migrator.running.now_running``): the lock
  holder, the step in progress and how far its backfill got; it reloads itself.

Which database each page shows is the request's ``Review`` (``review.py``).  Nothing
here writes: add, change and delete are refused to everyone, superusers included, and
there are no actions.  Every text shown passes through ``migrator.redact``.  The
querysets come from ``migrator.history`` (the one module that owns the models); times
and durations from ``migrator.formatting``, as on the command line.
"""

from __future__ import annotations

from django.contrib import admin

from migrator.admin import models  # noqa: F401  (registers the two model admins)

# The admin index links to the review pages from a box of its own.
if admin.site.index_template is None:
    admin.site.index_template = "admin/migrator/index.html"
