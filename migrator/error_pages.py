"""Django's error pages without database URLs or known passwords.

Named in ``DEFAULT_EXCEPTION_REPORTER_FILTER``; Django imports it only when it renders
an error report, so commands never pay for ``django.views.debug``.
"""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter

from migrator.redact import scrub


class SafeReporterFilter(SafeExceptionReporterFilter):
    """Django's reporter filter, also hiding *DATABASE_URL values and known passwords."""

    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DATABASE_URL", flags=re.I
    )

    def get_safe_request_meta(self, request):
        meta = super().get_safe_request_meta(request)
        return {
            key: scrub(value) if isinstance(value, str) else value for key, value in meta.items()
        }
