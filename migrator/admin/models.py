"""The two model admins: the applied-migration history and the audit log, read-only.

Every time is shown as ``formatting.when`` writes it (``2026-12-01 19:46:17 UTC``), not
by Django's ``DATE_FORMAT``; every text passes through ``redact`` again although it was
scrubbed when stored.  An event links to its version's history row and to its run;
a history row lists its events; a failure names the later event that resolved it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.db import DEFAULT_DB_ALIAS
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from migrator import chart, diffs, formatting, history
from migrator.admin import views
from migrator.admin.filters import (
    DatabaseFilter,
    RecordedDatabaseFilter,
    RunFilter,
    ScriptStateFilter,
)
from migrator.admin.review import (
    PARAM,
    Review,
    change_url,
    current,
    rendered,
    review_context,
    review_for,
    run_url,
    shown,
    shown_for,
)
from migrator.models import AppliedMigration, AuditEvent

EVENTS_ON_A_ROW = 50  # a history row's page lists its newest events, then links to the rest
LIST_ERROR_CHARS = 240  # the audit list's error column; the detail page has the full text
FAILED_LEVELS = ("FAIL", "WARN")


class ReadOnlyAdmin(admin.ModelAdmin):
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
        with shown_for(review_for(request)):
            return rendered(super().changelist_view(request, extra_context=context))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {**review_context(request), **(extra_context or {})}
        with shown_for(review_for(request)):
            return rendered(super().change_view(request, object_id, form_url, context))

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj: Any) -> str:
        return formatting.duration(obj.duration_ms)

    @property
    def _review(self) -> Review:
        return current()


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
    readonly_fields = (
        "script",
        "description_text",
        "applied",
        "duration",
        "run_link",
        "journal",
        "error_text",
        "what_ran",
        "script_path",
        "current_checksum",
        "source",
        "audit_events",
    )

    def rows(self, alias: str) -> QuerySet[Any]:
        return history.applied_rows(alias)

    def get_urls(self) -> list[Any]:
        site = self.admin_site
        return [
            path(
                "pending/",
                site.admin_view(lambda r: views.pending(self, r)),
                name="migrator_pending",
            ),
            path(
                "running/",
                site.admin_view(lambda r: views.running(self, r)),
                name="migrator_running",
            ),
            *super().get_urls(),
        ]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        fieldsets: list[Any] = [
            (None, {"fields": ("version", "name", "status", "script", "description_text")}),
            ("Run", {"fields": ("applied", "duration", "applied_by", "host", "run_link")}),
        ]
        if obj is not None and obj.status == AppliedMigration.IN_PROGRESS:
            fieldsets.append(("In progress", {"fields": ("journal",)}))
        if obj is not None and (obj.error or obj.status == AppliedMigration.FAILED):
            fieldsets.append(("Why it failed", {"fields": ("error_text",)}))
        fieldsets += [
            ("What ran, and what changed since", {"fields": ("what_ran",)}),
            (
                "Script on disk now",
                {"fields": ("script_path", "checksum", "current_checksum", "source")},
            ),
            ("Audit log", {"fields": ("audit_events",)}),
        ]
        return fieldsets

    # -- columns and fields --
    @admin.display(description="version", ordering="sort_key")
    def version_label(self, obj: AppliedMigration) -> str:
        return obj.version

    @admin.display(description="applied at", ordering="applied_at")
    def applied(self, obj: AppliedMigration) -> str:
        return formatting.when(obj.applied_at)

    @admin.display(description="script")
    def script(self, obj: AppliedMigration) -> SafeString:
        state = self._review.script_state(obj.version, obj.checksum)
        return format_html('<span class="tbm-state tbm-{}">{}</span>', state, state)

    @admin.display(description="description")
    def description_text(self, obj: AppliedMigration) -> str:
        return shown(obj.description) or "-"

    @admin.display(description="run")
    def run_link(self, obj: AppliedMigration) -> SafeString:
        url = run_url(obj.run_id, self._review)
        if not url:
            return format_html("{}", "not recorded (applied before runs had ids)")
        return format_html(
            '<a href="{}">run {}</a> (its events, and what else it did)', url, obj.run_id
        )

    @admin.display(description="journal")
    def journal(self, obj: AppliedMigration) -> SafeString:
        direction = (
            "reverting (down)" if obj.direction == AppliedMigration.DOWN else "applying (up)"
        )
        facts = [
            ("step", direction),
            ("started at", formatting.when(obj.started_at)),
            ("process", f"pid {obj.pid}" if obj.pid else "-"),
        ]
        for update in (obj.progress or {}).get("updates") or []:
            if isinstance(update, dict):
                done = formatting.count(update.get("rows_done"))
                total = update.get("rows_total")
                facts.append(
                    (
                        f"rows of {update.get('table', '?')}",
                        f"{done} of {formatting.count(total)}" if total else done,
                    )
                )
        url = self._review.link(reverse("admin:migrator_running"))
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", facts)
        return format_html(
            '<table class="tbm-facts">{}</table><p><a href="{}">Now running</a> shows whether it '
            "is still being carried out, and how far it is.</p>",
            rows,
            url,
        )

    @admin.display(description="error")
    def error_text(self, obj: AppliedMigration) -> SafeString:
        return format_html('<pre class="tbm-pre tbm-error">{}</pre>', shown(obj.error) or "-")

    @admin.display(description="the script as it ran")
    def what_ran(self, obj: AppliedMigration) -> SafeString:
        ran = history.decompress(obj.script_text)
        if ran is None:
            return format_html(
                '<p class="tbm-not-kept" id="tbm-not-kept">{}</p>',
                "The text that ran was not kept: this version was applied before tbmigrate kept "
                "each script's text. Its checksum is the only record of what ran.",
            )
        review = self._review
        state = review.by_version.get(obj.version)
        script = state.script if state is not None else None
        if review.status is None:
            note = "The scripts cannot be read, so this is not compared with the file."
        elif script is None:
            return _diff_html(diffs.unified(ran, None, obj.version), gone=True)
        elif script.checksum != obj.checksum:
            now = script.source.decode("utf-8", errors="replace")
            return _diff_html(diffs.unified(ran, now, obj.version, str(script.path)), gone=False)
        else:
            note = "The file on disk is the script that ran."
        return format_html(
            '<p id="tbm-same">{}</p><pre class="tbm-pre tbm-source tbm-ran">{}</pre>',
            note,
            shown(ran),
        )

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
        review = self._review
        url = reverse("admin:migrator_auditevent_changelist")
        query = urlencode({"version": obj.version, PARAM: review.alias})
        every = format_html('<a href="{}?{}">Every audit event of {}</a>', url, query, obj.version)
        if not review.readable:
            return every
        events = list(
            history.audit_rows(review.alias)
            .filter(version=obj.version)
            .order_by("-timestamp", "-id")[:EVENTS_ON_A_ROW]
        )
        rows = format_html_join(
            "",
            '<tr class="tbm-event-row"><td><a href="{}">{}</a></td><td>{}</td>'
            '<td><span class="tbm-{}">{}</span></td><td>{}</td><td>{}</td></tr>',
            (
                (
                    change_url(AuditEvent, e.pk, review),
                    formatting.when(e.timestamp),
                    e.action,
                    e.outcome,
                    e.outcome,
                    formatting.duration(e.duration_ms),
                    _run_cell(e.run_id, review),
                )
                for e in events
            ),
        )
        return format_html(
            '<table class="tbm-table tbm-events" id="tbm-row-events"><thead><tr>'
            "<th>Time</th><th>Action</th><th>Outcome</th><th>Duration</th><th>Run</th>"
            "</tr></thead><tbody>{}</tbody></table>{}",
            rows,
            every,
        )

    # -- views --
    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        review = review_for(request)
        return super().changelist_view(
            request, extra_context={"chart": self._chart(review), **(extra_context or {})}
        )

    def _chart(self, review: Review) -> chart.Chart | None:
        """Every history row of the database (whatever the list's filters), oldest first."""
        if review.status is None:
            return None
        ids = review.history_ids
        points = [
            chart.Point(
                version=str(m.version),
                name=m.record.name,
                applied_at=m.record.applied_at,
                duration_ms=m.record.duration_ms,
                url=change_url(AppliedMigration, ids.get(str(m.version)), review),
            )
            for m in review.status.migrations
            if m.record is not None
        ]
        return chart.duration_chart(points)


def _diff_html(lines: list[str], gone: bool) -> SafeString:
    """A unified diff, one ``<span>`` a line, classed by what the line is."""
    spans = format_html_join(
        "",
        '<span class="{}">{}</span>',
        ((_diff_class(line), line.rstrip("\n")) for line in lines),
    )
    said = (
        "The file is gone; this is what ran."
        if gone
        else "The file was edited after it ran: what ran (-) against the file now (+)."
    )
    return format_html(
        '<p id="tbm-diff-note" class="tbm-changed">{}</p>'
        '<pre class="tbm-pre tbm-diff" id="tbm-diff">{}</pre>',
        said,
        spans,
    )


def _diff_class(line: str) -> str:
    if line.startswith(("---", "+++")):
        return "tbm-diff-file"
    if line.startswith("@@"):
        return "tbm-diff-hunk"
    if line.startswith("+"):
        return "tbm-diff-add"
    if line.startswith("-"):
        return "tbm-diff-del"
    return "tbm-diff-same"


def _run_cell(run_id: str, review: Review) -> SafeString:
    url = run_url(run_id, review)
    return format_html('<a href="{}">{}</a>', url, run_id[:8]) if url else format_html("{}", "-")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = (
        "time",
        "action",
        "version_link",
        "name",
        "outcome_label",
        "duration",
        "who",
        "run",
        "error_summary",
    )
    list_display_links = ("time", "action")
    list_filter = (
        DatabaseFilter,
        "action",
        "outcome",
        RecordedDatabaseFilter,
        RunFilter,
        "timestamp",
    )
    search_fields = ("version", "name", "os_user", "run_id")
    date_hierarchy = "timestamp"
    ordering = ("-timestamp", "-id")
    readonly_fields = (
        "time",
        "version_link",
        "outcome_label",
        "duration",
        "run",
        "resolution",
        "who",
        "database_shown",
        "checks_table",
        "error_text",
        "traceback_text",
        "statements_text",
        "details_text",
    )

    def rows(self, alias: str) -> QuerySet[Any]:
        return history.audit_rows(alias)

    def get_urls(self) -> list[Any]:
        site = self.admin_site
        return [
            path("runs/", site.admin_view(lambda r: views.runs(self, r)), name="migrator_runs"),
            path(
                "runs/<str:run_id>/",
                site.admin_view(lambda r, run_id: views.run(self, r, run_id)),
                name="migrator_run",
            ),
            *super().get_urls(),
        ]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        first = ["time", "action", "version_link", "name", "outcome_label", "duration", "run"]
        if obj is not None and obj.outcome in (
            AuditEvent.FAILURE,
            AuditEvent.REFUSED,
            AuditEvent.INTERRUPTED,
        ):
            first.append("resolution")
        fieldsets: list[Any] = [(None, {"fields": first})]
        if obj is not None and _checks(obj):
            fieldsets.append(("Checks that did not pass", {"fields": ("checks_table",)}))
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

    @admin.display(description="time", ordering="timestamp")
    def time(self, obj: AuditEvent) -> str:
        return formatting.when(obj.timestamp)

    @admin.display(description="version", ordering="version")
    def version_link(self, obj: AuditEvent) -> SafeString:
        if not obj.version:
            return format_html("{}", "-")
        review = self._review
        pk = review.history_ids.get(obj.version)
        if pk is None:
            return format_html(
                '{} <span class="tbm-quiet" title="no history row for this version now '
                '(reverted, cleared by repair, or never applied)">(no row)</span>',
                obj.version,
            )
        return format_html(
            '<a class="tbm-history-link" href="{}" title="its history row">{}</a>',
            change_url(AppliedMigration, pk, review),
            obj.version,
        )

    @admin.display(description="outcome", ordering="outcome")
    def outcome_label(self, obj: AuditEvent) -> SafeString:
        return format_html('<span class="tbm-outcome tbm-{}">{}</span>', obj.outcome, obj.outcome)

    @admin.display(description="run", ordering="run_id")
    def run(self, obj: AuditEvent) -> SafeString:
        return _run_cell(obj.run_id, self._review)

    @admin.display(description="resolved by")
    def resolution(self, obj: AuditEvent) -> SafeString:
        review = self._review
        if not review.readable:
            return format_html("{}", "-")
        later = history.resolving_event(review.alias, obj)
        if later is None:
            return format_html(
                '<span class="tbm-unresolved" id="tbm-unresolved">{}</span>', "unresolved"
            )
        return format_html(
            '<a id="tbm-resolved-by" href="{}">{} {} {}: {}</a> at {}',
            change_url(AuditEvent, later.pk, review),
            later.action,
            later.version,
            later.name,
            later.outcome,
            formatting.when(later.timestamp),
        )

    @admin.display(description="who", ordering="os_user")
    def who(self, obj: AuditEvent) -> str:
        return obj.os_user

    @admin.display(description="database", ordering="database")
    def database_shown(self, obj: AuditEvent) -> str:
        return shown(obj.database)

    @admin.display(description="error")
    def error_summary(self, obj: AuditEvent) -> str:
        text = formatting.first_line(shown(obj.error))
        if not text:
            failing = [c for c in _checks(obj) if c["level"] == "FAIL"]
            if failing:
                named = "; ".join(f"{c['name']}: {c['message']}" for c in failing)
                text = f"{len(failing)} failing check(s): {named}"
        return formatting.first_line(text, LIST_ERROR_CHARS)

    @admin.display(description="checks")
    def checks_table(self, obj: AuditEvent) -> SafeString:
        rows = format_html_join(
            "",
            '<tr class="tbm-check-row"><td>{}</td><td><span class="tbm-level-{}">{}</span></td>'
            '<td class="tbm-wrap">{}</td></tr>',
            (
                (c["name"], c["level"].lower(), c["level"], shown(c["message"]))
                for c in _checks(obj)
            ),
        )
        return format_html(
            '<table class="tbm-table" id="tbm-checks"><thead><tr><th>Check</th><th>Level</th>'
            "<th>Message</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

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
        text = json.dumps(obj.details or {}, indent=2, sort_keys=True, default=str)
        return format_html('<pre class="tbm-pre">{}</pre>', shown(text))


def _checks(event: AuditEvent) -> list[dict[str, str]]:
    """A validation event's checks that did not pass (``details["checks"]`` holds the
    validate report), failures first."""
    checks = (event.details or {}).get("checks") if isinstance(event.details, dict) else None
    if not isinstance(checks, list):
        return []
    found = [
        {
            "name": str(c.get("name", "")),
            "level": str(c.get("level", "")),
            "message": str(c.get("message", "")),
        }
        for c in checks
        if isinstance(c, dict) and c.get("level") in FAILED_LEVELS
    ]
    return sorted(found, key=lambda c: FAILED_LEVELS.index(c["level"]))
