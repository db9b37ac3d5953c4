"""Keep database passwords out of every string tbmigrate shows or stores.

Two tools: ``mask_url`` for a URL we are about to show, and ``scrub`` for any other
text (exception messages, tracebacks, captured SQL) which replaces every password
tbmigrate knows of.  ``RedactingFilter`` applies ``scrub`` to log records;
``migrator.error_pages.SafeReporterFilter`` keeps database URLs off Django's error pages
(apart, because Django's error-page code is heavy to import and every command imports
this module while the settings load).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

MASK = "***"
URL_VARIABLES = ("DATABASE_URL", "QA_DATABASE_URL", "PROD_DATABASE_URL")
_QUERY_SECRET = re.compile(r"(?i)((?:password|passwd|pwd|sslpassword)=)([^&\s]*)")
# user:password@ inside any URL in free text (an error quoting another database's URL)
_SECRET_WORDS = re.compile(r"(?i)password|passwd|secret|token|api_?key|credential")
_extra_secrets: set[str] = set()


def mask_url(url: str) -> str:
    """``postgres://bob:s3cret@host/db`` -> ``postgres://bob:***@host/db``; never raises."""
    if not url:
        return url
    masked = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, url)
    scheme, sep, rest = masked.partition("://")
    if not sep:
        return masked
    # The password may itself hold '@' or '/'; the host part starts after the last '@'
    # that comes before any path.
    at = rest.rfind("@")
    if at == -1:
        return masked
    userinfo, hostpart = rest[:at], rest[at:]
    if ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        userinfo = f"{user}:{MASK}"
    return f"{scheme}://{userinfo}{hostpart}"


_URL_IN_TEXT = re.compile(r"(?i)\b[a-z][a-z0-9+.\-]*://[^\s'\"<>`]+")


def mask_urls(text: str) -> str:
    """Mask the password of every URL inside free text, known password or not.

    Each whole URL goes through ``mask_url``, which finds the host after the *last*
    ``@``, so a password holding ``@`` or ``/`` is masked whole too.  ``scrub`` applies
    it after replacing the passwords tbmigrate knows of.
    """
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text) if text else text


def password_in_url(url: str) -> str | None:
    _scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at == -1 or ":" not in rest[:at]:
        return None
    return rest[:at].split(":", 1)[1] or None


def register_secret(secret: str | None) -> None:
    """Make ``scrub`` hide a secret that is not in settings (e.g. a URL given at run time)."""
    if secret:
        _extra_secrets.add(secret)


def known_secrets() -> list[str]:
    """Every database password tbmigrate could know of, longest first."""
    found: set[str] = set(_extra_secrets)
    for variable in URL_VARIABLES:
        password = password_in_url(os.environ.get(variable, ""))
        if password:
            found.update({password, unquote(password)})
        for match in _QUERY_SECRET.finditer(os.environ.get(variable, "")):
            found.add(match.group(2))
    try:
        from django.conf import settings

        databases = settings.DATABASES if settings.configured else {}
    except Exception:  # settings that cannot load: nothing more to know
        databases = {}
    for config in databases.values():
        for value in (config.get("PASSWORD"), (config.get("OPTIONS") or {}).get("password")):
            if value:
                found.add(str(value))
    # One or two characters would mask innocent text everywhere.
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


def scrub(text: Any, secrets: Iterable[str] | None = None) -> str:
    """Return ``str(text)`` with every known password replaced by ``***``."""
    if text is None:
        return ""
    result = str(text)
    for secret in known_secrets() if secrets is None else secrets:
        if secret and secret in result:
            result = result.replace(secret, MASK)
    result = mask_urls(result)  # any other URL: the whole password, even one holding @
    return _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, result)


def looks_secret(sql: str) -> bool:
    """Whether a statement's parameters should be masked before they are stored."""
    return bool(_SECRET_WORDS.search(sql))


class RedactingFilter(logging.Filter):
    """Logging filter that scrubs passwords from the message and its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True
