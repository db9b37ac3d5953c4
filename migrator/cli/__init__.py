"""The subcommands of ``manage.py tbmigrate``, one module each.

Each module defines ``help``, ``add_arguments(parser)`` and ``handle(out, options)``;
``out`` is the ``Output`` of ``render.py``.  Handlers parse, call ``migrator.api``
and render; they never print from anywhere else and never call ``sys.exit``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

SUBCOMMANDS = ("status", "run", "rollback", "create", "validate", "repair", "backup", "diff")


def load(name: str) -> ModuleType:
    return importlib.import_module(f"migrator.cli.{name}")
