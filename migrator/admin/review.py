"""What one admin request looks at: the database alias, its status, and how to link within it.

Django's own tables (users, sessions) live in ``default``, but the history lives in
the target database of each run, so the pages read the alias given as
``?database=<alias>`` (any configured alias, also kept across the admin's own links
by its preserved filters), else the one chosen earlier in the session, else the
``TBMIGRATE_ADMIN_DATABASE`` setting (default ``default``).  This is Django's
documented pattern for exposing several databases in the admin:
``get_queryset().using(alias)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse, QueryDict
from django.urls import reverse

from migrator import conf, history, planner, redact, targets
from migrator.api import MigrationSystem, Status
from migrator.errors import MigratorError
from migrator.planner import MigrationState

PARAM = "database"
PRESERVED = "_changelist_filters"  # where the admin keeps a list's query on its detail pages
SESSION_KEY = "tbmigrate_database"

# How the script on disk compares with what ran (the list's "script" column).
UNCHANGED, CHANGED, MISSING = "unchanged", "changed", "missing"


def shown(text: Any) -> str:
    """Text safe to show: known passwords and every URL password masked."""
    return redact.scrub(text)


def available_aliases() -> list[str]:
    """Configured aliases tbmigrate can read (settings and ones added at run time)."""
    broken: dict[str, str] = getattr(settings, "TBMIGRATE_DATABASE_ERRORS", {})
    return [
        alias
        for alias in connections.settings
        if alias not in broken and connections[alias].vendor in targets.VENDORS
    ]


def requested_alias(request: HttpRequest) -> str:
    """``?database=``, else the list page's (preserved filters), else the last one chosen in
    this session (so the admin's own menu keeps it), else the setting."""
    session = getattr(request, "session", None)
    chosen = request.GET.get(PARAM)
    if chosen:
        if session is not None and chosen in available_aliases():
            session[SESSION_KEY] = chosen
        return chosen
    preserved = QueryDict(request.GET.get(PRESERVED, "")).get(PARAM)
    if preserved:
        return preserved
    remembered = session.get(SESSION_KEY) if session is not None else None
    if remembered in available_aliases():
        return str(remembered)
    return str(conf.get("ADMIN_DATABASE"))


@dataclass
class Review:
    """What one request looks at: the alias, and whatever stops us from showing it."""

    alias: str
    database: str = ""  # masked
    problem: str = ""  # why nothing can be shown (unknown alias, unreachable server)
    has_history: bool = False
    status: Status | None = None
    status_error: str = ""  # the scripts folder cannot be read (a script does not load)
    by_version: dict[str, MigrationState] = field(default_factory=dict)
    _history_ids: dict[str, int] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problem

    @property
    def readable(self) -> bool:
        """The history tables can be queried."""
        return self.ok and self.has_history

    @property
    def empty(self) -> bool:
        """Nothing recorded yet (no tables, or tables made by ``manage.py migrate`` alone)."""
        if not self.has_history:
            return True
        return self.status is not None and all(m.record is None for m in self.status.migrations)

    @property
    def query(self) -> str:
        return urlencode({PARAM: self.alias})

    def link(self, url: str) -> str:
        """``url`` on this review's database."""
        return f"{url}{'&' if '?' in url else '?'}{self.query}"

    def script_state(self, version: str, checksum: str) -> str:
        """unchanged / changed / missing for a history row, from ``MigrationSystem.status``."""
        if self.status is None:
            return "unknown"  # no database, or the scripts cannot be read
        state = self.by_version.get(version)
        if state is None or state.script is None:
            return MISSING
        if state.state == planner.CHANGED or state.script.checksum != checksum:
            return CHANGED
        return UNCHANGED

    @property
    def history_ids(self) -> dict[str, int]:
        """Each version's history row id, read once per request (for links to it)."""
        if self._history_ids is None:
            self._history_ids = (
                dict(history.applied_rows(self.alias).values_list("version", "pk"))
                if self.readable
                else {}
            )
        return self._history_ids

    @property
    def phases(self) -> dict[str, str]:
        """Each known script's phase (expand/contract), for ``migrator.running``."""
        return {v: m.script.phase for v, m in self.by_version.items() if m.script is not None}


def review_for(request: HttpRequest) -> Review:
    """The request's ``Review``, computed once (status reads every script file)."""
    cached = getattr(request, "_tbmigrate_review", None)
    if cached is None:
        cached = _review(requested_alias(request))
        request._tbmigrate_review = cached  # type: ignore[attr-defined]
    return cached


def _review(alias: str) -> Review:
    review = Review(alias)
    try:
        targets.require(alias)
        review.database = targets.describe(alias)
        targets.connect(alias)
        review.has_history = history.tables_exist(alias)
    except MigratorError as exc:
        review.problem = shown(exc)
        return review
    except DatabaseError as exc:
        review.problem = targets.connection_error_message(alias, exc)
        return review
    try:
        review.status = MigrationSystem(alias).status()
    except MigratorError as exc:
        review.status_error = shown(exc)
    else:
        review.by_version = {str(m.version): m for m in review.status.migrations}
    return review


def database_choices(review: Review) -> list[dict[str, Any]]:
    return [
        {
            "alias": alias,
            "database": shown(targets.describe(alias)),
            "selected": alias == review.alias,
            "query": urlencode({PARAM: alias}),
        }
        for alias in available_aliases()
    ]


def review_context(request: HttpRequest) -> dict[str, Any]:
    """What every page's header needs: the database, its choices and the pages' links."""
    review = review_for(request)
    return {
        "review": review,
        "database_choices": database_choices(review),
        "pending_url": review.link(reverse("admin:migrator_pending")),
        "running_url": review.link(reverse("admin:migrator_running")),
        "runs_url": review.link(reverse("admin:migrator_runs")),
        "history_url": review.link(reverse("admin:migrator_appliedmigration_changelist")),
        "audit_url": review.link(reverse("admin:migrator_auditevent_changelist")),
    }


def change_url(model: Any, pk: int | None, review: Review) -> str:
    """The admin detail page of one row of the review's database ("" when there is none)."""
    if pk is None:
        return ""
    return review.link(reverse(f"admin:migrator_{model._meta.model_name}_change", args=[pk]))


def run_url(run_id: str, review: Review) -> str:
    """The page of one command's run ("" without a run id)."""
    if not run_id:
        return ""
    return review.link(reverse("admin:migrator_run", args=[run_id]))


# Display methods get no request: the view sets the request's review for them.
_showing: ContextVar[Review] = ContextVar("tbmigrate_admin_review")


def current() -> Review:
    """The review of the request being rendered (outside a view: states "unknown")."""
    return _showing.get(None) or Review(alias="")


@contextlib.contextmanager
def shown_for(review: Review) -> Iterator[None]:
    token = _showing.set(review)
    try:
        yield
    finally:
        _showing.reset(token)


def rendered(response: HttpResponse) -> HttpResponse:
    """Render now, while the display methods can still see the request's review."""
    render = getattr(response, "render", None)
    if callable(render) and not getattr(response, "is_rendered", True):
        render()
    return response
