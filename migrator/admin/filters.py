"""The list filters of the history and the audit log."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from migrator.admin.review import (
    CHANGED,
    MISSING,
    PARAM,
    UNCHANGED,
    available_aliases,
    review_for,
    shown,
)


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

    def choices(self, changelist: Any):
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


class RunFilter(admin.SimpleListFilter):
    """The events of one command (``?run=<run id>``), as linked from a run's page."""

    title = "run"
    parameter_name = "run"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, value)] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        return queryset.filter(run_id=value) if value else None
