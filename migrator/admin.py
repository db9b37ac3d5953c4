"""Read-only review of tbmigrate's history in the Django admin.

Three pages answer a release manager's questions without a terminal:

- **Applied migrations** (``AppliedMigration``): what ran, when, for how long, by whom,
  whether the script on disk still matches, and a duration chart in which the slowest
  migration stands out.  Ordered by ``sort_key`` so 1.0.9 comes before 1.0.10.
- **Audit log** (``AuditEvent``): every run, revert and refusal, with the full error,
  traceback and SQL of a failure.
- **Pending migrations** (a custom view, linked from the admin index): what the next
  ``tbmigrate run`` would apply, and anything changed, missing or failed.

Which database: Django's own tables (users, sessions) live in ``default``, but the
history lives in the target database of each run, so the pages read the alias given as
``?database=<alias>`` (any configured alias, also kept across the admin's own links by
its preserved filters), else the ``TBMIGRATE_ADMIN_DATABASE`` setting (default
``default``).  This is Django's documented pattern for exposing several databases in
the admin: ``get_queryset().using(alias)``.

Nothing here writes: add, change and delete are refused to everyone, superusers
included (history changes only through the tool), and there are no actions.  Every
text shown passes through ``migrator.redact`` (known passwords, and the password of any
URL quoted in an error) although the stored texts were already scrubbed when written.
The querysets come from ``migrator.history`` (the one module that owns the models).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from migrator import chart, conf, history, planner, redact, targets
from migrator.api import MigrationSystem, Status
from migrator.cli.render import duration, when
from migrator.errors import MigratorError
from migrator.models import AppliedMigration, AuditEvent
from migrator.planner import MigrationState

PARAM = "database"
PRESERVED = "_changelist_filters"  # where the admin keeps a list's query on its detail pages
SESSION_KEY = "tbmigrate_database"
RECENT_FAILURES = 10

# How the script on disk compares with what ran (the list's "script" column).
UNCHANGED, CHANGED, MISSING = "unchanged", "changed", "missing"


def shown(text: Any) -> str:
    """Text safe to show: known passwords and every URL password masked."""
    return redact.scrub(text)


# -- which database ------------------------------------------------------------------------
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

    @property
    def ok(self) -> bool:
        return not self.problem

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
    review = review_for(request)
    return {
        "review": review,
        "database_choices": database_choices(review),
        "pending_url": review.link(reverse("admin:migrator_pending")),
        "history_url": review.link(reverse("admin:migrator_appliedmigration_changelist")),
        "audit_url": review.link(reverse("admin:migrator_auditevent_changelist")),
    }


# -- list filters ----------------------------------------------------------------------------
class DatabaseFilter(admin.SimpleListFilter):
    """Chooses the database alias; ``get_queryset`` has already switched to it."""

    title = "database"
    parameter_name = PARAM

    def __init__(self, request: HttpRequest, *args: Any) -> None:
        self.current = review_for(request).alias
        super().__init__(request, *args)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(alias, alias) for alias in available_aliases()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset

    def choices(self, changelist: Any):  # type: ignore[no-untyped-def]
        for alias, title in self.lookup_choices:
            yield {
                "selected": alias == self.current,
                # Another database: start from its whole list, keeping no other filter.
                "query_string": "?" + urlencode({PARAM: alias}),
                "display": title,
            }


class ScriptStateFilter(admin.SimpleListFilter):
    """unchanged / changed / missing, as ``MigrationSystem.status`` sees the files."""

    title = "script on disk"
    parameter_name = "script"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(UNCHANGED, UNCHANGED), (CHANGED, CHANGED), (MISSING, MISSING)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if not self.value():
            return None
        review = review_for(request)
        versions = [
            version
            for version, checksum in queryset.values_list("version", "checksum")
            if review.script_state(version, checksum) == self.value()
        ]
        return queryset.filter(version__in=versions)


class RecordedDatabaseFilter(admin.SimpleListFilter):
    """The database each event recorded (masked when written, and masked again here)."""

    title = "recorded database"
    parameter_name = "recorded_database"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        values = (
            model_admin.get_queryset(request)
            .order_by("database")
            .values_list("database", flat=True)
            .distinct()
        )
        return [(value, shown(value) or "(none)") for value in values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        return queryset.filter(database=value) if value is not None else None


# -- the model admins ------------------------------------------------------------------------
class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """No add, change, delete or action for anyone: history changes only through the tool."""

    actions = None
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 100

    def rows(self, alias: str) -> QuerySet[Any]:
        raise NotImplementedError

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        review = review_for(request)
        if not review.ok:
            # An unknown or unreachable alias cannot even compile a query: an empty list
            # on default (never queried) lets the page say what is wrong.
            return self.rows(DEFAULT_DB_ALIAS).none()
        queryset = self.rows(review.alias)
        if not review.has_history:
            return queryset.none()  # tbmigrate has not run there: no table to query
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**review_context(request), **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {**review_context(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context=context)

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj: Any) -> str:
        return duration(obj.duration_ms)


@admin.register(AppliedMigration)
class AppliedMigrationAdmin(ReadOnlyAdmin):
    list_display = (
        "version_label",
        "name",
        "status",
        "script",
        "applied",
        "duration",
        "applied_by",
        "host",
    )
    list_display_links = ("version_label", "name")
    list_filter = (DatabaseFilter, "status", ScriptStateFilter, "applied_at")
    search_fields = ("version", "name")
    date_hierarchy = "applied_at"
    ordering = ("sort_key",)

    def rows(self, alias: str) -> QuerySet[Any]:
        return history.applied_rows(alias)

    def get_urls(self) -> list[Any]:
        pending = path(
            "pending/", self.admin_site.admin_view(self.pending_view), name="migrator_pending"
        )
        return [pending, *super().get_urls()]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        fieldsets: list[Any] = [
            (None, {"fields": ("version", "name", "status", "script", "description_text")}),
            ("Run", {"fields": ("applied_at", "duration", "applied_by", "host")}),
        ]
        if obj is not None and (obj.error or obj.status == AppliedMigration.FAILED):
            fieldsets.append(("Why it failed", {"fields": ("error_text",)}))
        fieldsets += [
            (
                "Script on disk now",
                {"fields": ("script_path", "checksum", "current_checksum", "source")},
            ),
            ("Audit log", {"fields": ("audit_events",)}),
        ]
        return fieldsets

    readonly_fields = (
        "script",
        "description_text",
        "duration",
        "error_text",
        "script_path",
        "current_checksum",
        "source",
        "audit_events",
    )

    # -- columns and fields --
    @admin.display(description="version", ordering="sort_key")
    def version_label(self, obj: AppliedMigration) -> str:
        return obj.version

    @admin.display(description="applied at (UTC)", ordering="applied_at")
    def applied(self, obj: AppliedMigration) -> str:
        return when(obj.applied_at)

    @admin.display(description="script")
    def script(self, obj: AppliedMigration) -> SafeString:
        state = self._review.script_state(obj.version, obj.checksum)
        return format_html('<span class="tbm-state tbm-{}">{}</span>', state, state)

    @admin.display(description="description")
    def description_text(self, obj: AppliedMigration) -> str:
        return shown(obj.description) or "-"

    @admin.display(description="error")
    def error_text(self, obj: AppliedMigration) -> SafeString:
        return format_html('<pre class="tbm-pre">{}</pre>', shown(obj.error) or "-")

    @admin.display(description="file")
    def script_path(self, obj: AppliedMigration) -> str:
        state = self._review.by_version.get(obj.version)
        if state is None or state.script is None:
            return "missing: no script with this version in the scripts folder"
        return str(state.script.path)

    @admin.display(description="checksum of the file now")
    def current_checksum(self, obj: AppliedMigration) -> str:
        state = self._review.by_version.get(obj.version)
        if state is None or state.script is None:
            return "-"
        same = "same as when it ran" if state.script.checksum == obj.checksum else "CHANGED"
        return f"{state.script.checksum} ({same})"

    @admin.display(description="source")
    def source(self, obj: AppliedMigration) -> SafeString:
        state = self._review.by_version.get(obj.version)
        if state is None or state.script is None:
            return format_html("{}", self._review.status_error or "the file is gone")
        try:
            text = state.script.path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return format_html("cannot read {}: {}", state.script.path, exc.strerror)
        return format_html('<pre class="tbm-pre tbm-source">{}</pre>', shown(text))

    @admin.display(description="events")
    def audit_events(self, obj: AppliedMigration) -> SafeString:
        url = reverse("admin:migrator_auditevent_changelist")
        query = urlencode({"version": obj.version, PARAM: self._review.alias})
        return format_html('<a href="{}?{}">Every audit event of {}</a>', url, query, obj.version)

    @property
    def _review(self) -> Review:
        # Display methods get no request: the view sets the request's review (see _showing).
        return _showing.get(None) or Review(alias="")  # outside a view: states "unknown"

    # -- views --
    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        review = review_for(request)
        with _shown_for(review):
            response = super().changelist_view(
                request, extra_context={"chart": self._chart(request, review)}
            )
            return _rendered(response)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        with _shown_for(review_for(request)):
            return _rendered(super().change_view(request, object_id, form_url, extra_context))

    def _chart(self, request: HttpRequest, review: Review) -> chart.Chart | None:
        """Every history row of the database (whatever the list's filters), oldest first."""
        if review.status is None:
            return None
        ids = self._history_ids(review)
        points = [
            chart.Point(
                version=str(m.version),
                name=m.record.name,
                applied_at=m.record.applied_at,
                duration_ms=m.record.duration_ms,
                url=_change_url(AppliedMigration, ids.get(str(m.version)), review),
            )
            for m in review.status.migrations
            if m.record is not None
        ]
        return chart.duration_chart(points)

    def pending_view(self, request: HttpRequest) -> HttpResponse:
        """What the next ``tbmigrate run`` would do, and what needs a person first."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        review = review_for(request)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            **review_context(request),
            "title": "Pending migrations",
            "opts": self.model._meta,
            "plan": [],
            "refusal": "",
            "attention": [],
            "failures": [],
        }
        if review.status is not None:
            migrations = review.status.migrations
            # What `run` takes is every pending script in version order (planner.plan_run);
            # when it would refuse, say why, and still list what waits.
            context["plan"] = [_pending_row(s) for s in planner.pending(migrations)]
            refusal = planner.plan_run(migrations).refusal()
            if refusal is not None:
                context["refusal"] = shown(refusal)
            context["attention"] = [
                _attention_row(state, review, self._history_ids(review))
                for state in migrations
                if state.state.is_problem
            ]
            context["counts"] = [
                {"state": s, "count": review.status.count(s)} for s in planner.STATES
            ]
        if review.ok and review.has_history:
            failures = (
                history.audit_rows(review.alias)
                .filter(outcome=AuditEvent.FAILURE)
                .order_by("-timestamp", "-id")[:RECENT_FAILURES]
            )
            context["failures"] = [
                {
                    "event": event,
                    "error": shown(event.error).strip().splitlines()[0] if event.error else "",
                    "url": _change_url(AuditEvent, event.pk, review),
                }
                for event in failures
            ]
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/migrator/pending.html", context)

    def _history_ids(self, review: Review) -> dict[str, int]:
        if not review.ok or not review.has_history:
            return {}
        return dict(history.applied_rows(review.alias).values_list("version", "pk"))


def _pending_row(state: MigrationState) -> dict[str, Any]:
    script = state.script
    assert script is not None
    return {
        "version": str(state.version),
        "name": script.name,
        "description": shown(script.description),
        "path": str(script.path),
        "out_of_order": state.out_of_order,
        "reversible": script.reversible,
        "atomic": script.atomic,
    }


def _attention_row(state: MigrationState, review: Review, ids: dict[str, int]) -> dict[str, Any]:
    record = state.record
    if state.state == planner.CHANGED:
        why = "the file was edited after it was applied (its checksum differs)"
    elif state.state == planner.MISSING:
        why = "applied, but its script file is gone"
    elif state.state == planner.FAILED_STATE:
        why = (
            "failed part-way; clean up by hand, then `tbmigrate repair " + str(state.version) + "`"
        )
    else:
        why = planner.describe_problem(state) + "; " + state.state.fix
    return {
        "version": str(state.version),
        "name": state.name,
        "state": state.state,
        "why": why,
        "error": shown(record.error) if record else "",
        "path": str(state.script.path) if state.script else "",
        "url": _change_url(AppliedMigration, ids.get(str(state.version)), review),
    }


def _change_url(model: Any, pk: int | None, review: Review) -> str:
    """The admin detail page of one row of the review's database ("" when there is none)."""
    if pk is None:
        return ""
    return review.link(reverse(f"admin:migrator_{model._meta.model_name}_change", args=[pk]))


_showing: ContextVar[Review] = ContextVar("tbmigrate_admin_review")


@contextlib.contextmanager
def _shown_for(review: Review) -> Iterator[None]:
    token = _showing.set(review)
    try:
        yield
    finally:
        _showing.reset(token)


def _rendered(response: HttpResponse) -> HttpResponse:
    """Render now, while the display methods can still see the request's review."""
    render = getattr(response, "render", None)
    if callable(render) and not getattr(response, "is_rendered", True):
        render()
    return response


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = (
        "time",
        "action",
        "version",
        "name",
        "outcome_label",
        "duration",
        "who",
        "database_shown",
        "error_summary",
    )
    list_display_links = ("time", "action")
    list_filter = (DatabaseFilter, "action", "outcome", RecordedDatabaseFilter, "timestamp")
    search_fields = ("version", "name", "os_user")
    date_hierarchy = "timestamp"
    ordering = ("-timestamp", "-id")
    readonly_fields = (
        "outcome_label",
        "duration",
        "who",
        "database_shown",
        "error_text",
        "traceback_text",
        "statements_text",
        "details_text",
    )

    def rows(self, alias: str) -> QuerySet[Any]:
        return history.audit_rows(alias)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        fieldsets: list[Any] = [
            (
                None,
                {
                    "fields": (
                        "timestamp",
                        "action",
                        "version",
                        "name",
                        "outcome_label",
                        "duration",
                    )
                },
            )
        ]
        if obj is not None and (obj.error or obj.traceback):
            fieldsets.append(("What went wrong", {"fields": ("error_text", "traceback_text")}))
        fieldsets += [
            ("SQL executed", {"fields": ("statements_text",)}),
            ("Details", {"fields": ("details_text",)}),
            (
                "Who and where",
                {"fields": ("who", "host", "pid", "database_shown", "tool_version")},
            ),
        ]
        return fieldsets

    @admin.display(description="time (UTC)", ordering="timestamp")
    def time(self, obj: AuditEvent) -> str:
        return when(obj.timestamp)

    @admin.display(description="outcome", ordering="outcome")
    def outcome_label(self, obj: AuditEvent) -> SafeString:
        return format_html('<span class="tbm-outcome tbm-{}">{}</span>', obj.outcome, obj.outcome)

    @admin.display(description="who", ordering="os_user")
    def who(self, obj: AuditEvent) -> str:
        return obj.os_user

    @admin.display(description="database", ordering="database")
    def database_shown(self, obj: AuditEvent) -> str:
        return shown(obj.database)

    @admin.display(description="error")
    def error_summary(self, obj: AuditEvent) -> str:
        first = shown(obj.error).strip().splitlines()[0] if obj.error.strip() else ""
        return first if len(first) <= 120 else first[:119] + "…"

    @admin.display(description="error")
    def error_text(self, obj: AuditEvent) -> SafeString:
        return format_html('<pre class="tbm-pre tbm-error">{}</pre>', shown(obj.error) or "-")

    @admin.display(description="traceback")
    def traceback_text(self, obj: AuditEvent) -> SafeString:
        return format_html(
            '<pre class="tbm-pre tbm-traceback">{}</pre>', shown(obj.traceback) or "-"
        )

    @admin.display(description="statements")
    def statements_text(self, obj: AuditEvent) -> SafeString:
        statements = obj.statements or []
        if not statements:
            return format_html("{}", "none recorded")
        parts = []
        for number, statement in enumerate(statements, 1):
            if isinstance(statement, dict):
                sql, params = statement.get("sql", ""), statement.get("params")
            else:
                sql, params = statement, None
            text = f"-- {number}\n{sql}" + (f"\n-- params: {params!r}" if params else "")
            parts.append(shown(text))
        return format_html('<pre class="tbm-pre tbm-sql">{}</pre>', "\n\n".join(parts))

    @admin.display(description="details")
    def details_text(self, obj: AuditEvent) -> SafeString:
        import json

        text = json.dumps(obj.details or {}, indent=2, sort_keys=True, default=str)
        return format_html('<pre class="tbm-pre">{}</pre>', shown(text))


# The admin index links to the pending page (and the other two) from a box of its own.
if admin.site.index_template is None:
    admin.site.index_template = "admin/migrator/index.html"
