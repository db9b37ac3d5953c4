"""The admin's own pages besides the two model lists: pending, runs, one run, now running.

Each view reads through ``migrator.history`` (or ``migrator.running``) on the request's
database and hands the template plain rows with every time already written by
``formatting.when`` and every text already scrubbed; nothing here writes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from migrator import formatting, history, locking, planner
from migrator import running as live
from migrator.admin import runs as run_summaries
from migrator.admin.review import (
    Review,
    change_url,
    review_context,
    review_for,
    run_url,
    shown,
)
from migrator.errors import MigratorError
from migrator.models import AppliedMigration, AuditEvent
from migrator.planner import MigrationState

RECENT_FAILURES = 10
RUNS_LISTED = 100
LATEST_EVENTS = 8
ERROR_CHARS = 240  # of an error in a table; the event's own page has the full text
REFRESH_RUNNING, REFRESH_IDLE = 5, 15  # seconds between reloads of the now-running page


def _page(model_admin: Any, request: HttpRequest, title: str) -> dict[str, Any]:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    request.current_app = model_admin.admin_site.name
    return {
        **model_admin.admin_site.each_context(request),
        **review_context(request),
        "title": title,
        "opts": model_admin.model._meta,
    }


# -- pending ---------------------------------------------------------------------------------
def pending(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """What the next ``tbmigrate run`` would do, and what needs a person first."""
    context = _page(model_admin, request, "Pending migrations")
    review = review_for(request)
    context.update(plan=[], refusal="", attention=[], failures=[])
    if review.status is not None:
        migrations = review.status.migrations
        # What `run` takes is every pending script in version order (planner.plan_run);
        # when it would refuse, say why, and still list what waits.
        context["plan"] = [_pending_row(s) for s in planner.pending(migrations)]
        refusal = planner.plan_run(migrations).refusal()
        if refusal is not None:
            context["refusal"] = shown(refusal)
        context["attention"] = [
            _attention_row(state, review) for state in migrations if state.state.is_problem
        ]
        context["counts"] = [{"state": s, "count": review.status.count(s)} for s in planner.STATES]
    if review.readable:
        failures = (
            history.audit_rows(review.alias)
            .filter(outcome__in=(AuditEvent.FAILURE, AuditEvent.INTERRUPTED))
            .order_by("-timestamp", "-id")[:RECENT_FAILURES]
        )
        context["failures"] = [_event_row(event, review, resolve=True) for event in failures]
    return TemplateResponse(request, "admin/migrator/pending.html", context)


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
        "phase": script.phase,
    }


def _attention_row(state: MigrationState, review: Review) -> dict[str, Any]:
    record = state.record
    why = planner.describe_problem(state)
    if state.state.fix:
        why += "; " + state.state.fix.replace("VERSION", str(state.version))
    return {
        "version": str(state.version),
        "name": state.name,
        "state": state.state,
        "why": shown(why),
        "error": shown(record.error) if record else "",
        "path": str(state.script.path) if state.script else "",
        "url": change_url(AppliedMigration, review.history_ids.get(str(state.version)), review),
    }


def _event_row(event: AuditEvent, review: Review, resolve: bool = False) -> dict[str, Any]:
    """One audit event as a table row: linked to its page, its run and its history row."""
    row: dict[str, Any] = {
        "event": event,
        "time": formatting.when(event.timestamp),
        "url": change_url(AuditEvent, event.pk, review),
        "run_url": run_url(event.run_id, review),
        "run": event.run_id[:8],
        "history_url": change_url(AppliedMigration, review.history_ids.get(event.version), review),
        "duration": formatting.duration(event.duration_ms),
        "error": formatting.first_line(shown(event.error), ERROR_CHARS),
        "resolved": None,
    }
    if resolve and event.outcome in (
        AuditEvent.FAILURE,
        AuditEvent.REFUSED,
        AuditEvent.INTERRUPTED,
    ):
        later = history.resolving_event(review.alias, event)
        row["resolvable"] = True
        if later is not None:
            row["resolved"] = {
                "event": later,
                "time": formatting.when(later.timestamp),
                "url": change_url(AuditEvent, later.pk, review),
            }
    return row


# -- runs ------------------------------------------------------------------------------------
def runs(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """The latest commands, newest first: what each did and how it ended."""
    context = _page(model_admin, request, "Runs")
    review = review_for(request)
    rows = []
    if review.readable:
        ids = history.recent_run_ids(review.alias, RUNS_LISTED)
        grouped: dict[str, list[AuditEvent]] = {run_id: [] for run_id in ids}
        for event in history.audit_rows(review.alias).filter(run_id__in=ids):
            grouped[event.run_id].append(event)
        live = _running_run_ids(review)
        for run_id in ids:
            summary = run_summaries.summarize(run_id, grouped[run_id], running=run_id in live)
            if summary is not None:
                rows.append(_run_row(summary, review))
    context["runs"] = rows
    context["listed"] = RUNS_LISTED
    return TemplateResponse(request, "admin/migrator/runs.html", context)


def run(model_admin: Any, request: HttpRequest, run_id: str) -> HttpResponse:
    """One command's run: its events, what it applied or reverted, how long, how it ended."""
    context = _page(model_admin, request, f"Run {run_id[:8]}")
    review = review_for(request)
    summary = None
    if review.readable:
        events = list(history.audit_rows(review.alias).filter(run_id=run_id))
        summary = run_summaries.summarize(
            run_id, events, running=run_id in _running_run_ids(review)
        )
        if summary is None:
            raise Http404(f"no run {run_id} on {review.database}")
    context["run"] = _run_row(summary, review) if summary else None
    context["events"] = (
        [_event_row(e, review, resolve=True) for e in summary.events] if summary else []
    )
    return TemplateResponse(request, "admin/migrator/run.html", context)


def _run_row(summary: run_summaries.RunSummary, review: Review) -> dict[str, Any]:
    ids = review.history_ids

    def linked(versions: tuple[str, ...]) -> list[dict[str, str]]:
        return [
            {"version": v, "url": change_url(AppliedMigration, ids.get(v), review)}
            for v in versions
        ]

    return {
        "summary": summary,
        "url": run_url(summary.run_id, review),
        "started": formatting.when(summary.started_at),
        "ended": formatting.when(summary.ended_at),
        "duration": formatting.duration(summary.duration_ms),
        "applied": linked(summary.applied),
        "reverted": linked(summary.reverted),
        "failed": linked(summary.failed),
        "database": shown(summary.database),
    }


def _running_run_ids(review: Review) -> set[str]:
    """Run ids of journaled steps being carried out now (only asks for the lock when some
    step is journaled)."""
    try:
        records = history.in_progress_records(review.alias)
        if not records or locking.is_locked(review.alias) is None:
            return set()
    except (DatabaseError, MigratorError):
        return set()
    return {r.run_id for r in records if r.run_id}


# -- now running -----------------------------------------------------------------------------
def running(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """Who holds the migration lock, which step runs, how far it got; reloads itself."""
    context = _page(model_admin, request, "Now running")
    review = review_for(request)
    now: live.Running | None = None
    problem = ""
    if review.ok:
        try:
            now = live.now_running(review.alias, review.phases)
        except (DatabaseError, MigratorError) as exc:
            problem = shown(exc)
    latest: list[dict[str, Any]] = []
    if review.readable:
        latest = [
            _event_row(e, review)
            for e in history.audit_rows(review.alias).order_by("-timestamp", "-id")[:LATEST_EVENTS]
        ]
    context.update(
        now=_running_context(now, review) if now is not None else None,
        problem=problem,
        latest=latest,
        checked=formatting.when(now.checked_at if now else datetime.now(UTC)),
        refresh=REFRESH_RUNNING if now is not None and now.running else REFRESH_IDLE,
    )
    return TemplateResponse(request, "admin/migrator/running.html", context)


def _running_context(now: live.Running, review: Review) -> dict[str, Any]:
    holder = now.holder or {}
    steps = []
    for step in now.steps:
        elapsed = now.seconds_since_start(step)
        steps.append(
            {
                "step": step,
                "action": step.action,
                "started": formatting.when(step.started_at),
                "elapsed": formatting.span(elapsed),
                "run_url": run_url(step.run_id, review),
                "history_url": change_url(
                    AppliedMigration, review.history_ids.get(step.version), review
                ),
                "updates": [
                    {
                        "table": u.table,
                        "key": u.key,
                        "done": formatting.count(u.rows_done),
                        "total": formatting.count(u.rows_total) if u.rows_total else "unknown",
                        "percent": f"{u.percent:.1f} %" if u.percent is not None else "",
                        "percent_value": u.percent,
                        "rate": formatting.rate(u.rate),
                        "left": formatting.span(u.seconds_left)
                        if u.seconds_left is not None
                        else "",
                        "batch": formatting.count(u.batch_size),
                        "last_key": "" if u.last_key is None else str(u.last_key),
                        "updated": formatting.when(u.updated_at),
                        "finished": u.finished,
                    }
                    for u in step.updates
                ],
                "waits": (
                    {
                        "count": step.lock_waits.count,
                        "total": formatting.duration(step.lock_waits.total_ms),
                        "longest": formatting.duration(step.lock_waits.longest_ms),
                    }
                    if step.lock_waits
                    else None
                ),
                "blocked_by": [_session_row(s) for s in step.blocked_by],
            }
        )
    return {
        "running": now.running,
        "interrupted": now.interrupted,
        "step_label": shown(_with_name(now.step_label, review)),
        "action": now.action,
        "holder": {
            "pid": now.holder_pid,
            "host": now.holder_host,
            "address": now.holder_address,
            "user": shown(holder.get("user") or ""),
            "since": formatting.when(holder.get("since")),
            "backend_pid": holder.get("backend_pid"),
            "application_name": shown(holder.get("application_name") or ""),
        }
        if now.holder is not None
        else None,
        "steps": steps,
        "session": _session_row(now.session) if now.session else None,
        "blocked_by": [_session_row(s) for s in now.blocked_by],
    }


def _with_name(label: str, review: Review) -> str:
    """``1.0.3`` (a lock holder names the version alone) as ``1.0.3 add-index``."""
    known = review.by_version.get(label)
    return known.label if known is not None else label


def _session_row(session: Any) -> dict[str, Any]:
    return {
        "pid": session.pid,
        "application_name": session.application_name,
        "user": session.user,
        "state": session.state,
        "since": formatting.when(session.xact_start) if session.xact_start else "",
        "query_start": formatting.when(session.query_start) if session.query_start else "",
        "query": session.query,
        "wait": session.wait,
    }
