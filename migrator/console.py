"""The ``tbmigrate`` command (``[project.scripts]``): ``manage.py tbmigrate`` without a project.

In any folder, with ``DATABASE_URL`` (or ``SQLITE_DB_PATH``) and a
``migration_scripts/`` folder there (or ``TBMIGRATE_SCRIPTS_DIR``), every subcommand
works as ``manage.py tbmigrate`` does, on the built-in settings of
``migrator/console_settings.py``.  ``DJANGO_SETTINGS_MODULE`` (or ``--settings``)
chooses a project's settings instead, as with ``django-admin``.

Django is set up only once the subcommand is known, so ``tbmigrate --help`` and
``tbmigrate --version`` answer without setting anything up (``bench/startup.py``).
"""

from __future__ import annotations

import argparse
import os
import sys

SETTINGS = "migrator.console_settings"


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    _apply_settings_options(args)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    if os.environ["DJANGO_SETTINGS_MODULE"] != SETTINGS and os.getcwd() not in sys.path:
        # A project's settings, named from its folder, as manage.py would find them.
        sys.path.insert(0, os.getcwd())
    _require_settings(os.environ["DJANGO_SETTINGS_MODULE"])
    from migrator.management.commands.tbmigrate import Command

    Command(standalone=True).run_from_argv(["tbmigrate", "tbmigrate", *args])


def _require_settings(module: str) -> None:
    """A settings module that cannot be found is one line and exit 2, not a traceback
    from inside Django's set-up (found, not imported: --help stays cheap)."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError) as exc:
        found, reason = False, str(exc)
    else:
        reason = "no such module"
    if not found:
        sys.stderr.write(
            f"tbmigrate: cannot import the settings module '{module}' ({reason}); fix "
            "DJANGO_SETTINGS_MODULE or --settings (or unset it for the built-in settings)\n"
        )
        sys.exit(2)


def _apply_settings_options(args: list[str]) -> None:
    """``--settings`` and ``--pythonpath`` take effect before Django is set up, as
    ``django-admin`` does it (``ManagementUtility.execute``)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--settings")
    parser.add_argument("--pythonpath")
    known, _ = parser.parse_known_args(args)
    if known.settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = known.settings
    if known.pythonpath:
        sys.path.insert(0, known.pythonpath)


if __name__ == "__main__":
    main()
