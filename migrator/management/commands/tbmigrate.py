"""``python manage.py tbmigrate <subcommand>``: a thin layer over ``migrator.api``.

Parsing and rendering live in ``migrator/cli/``; this module wires the subcommands
and turns every error into one line and an exit code (0 success, 1 failure,
2 bad usage), with a traceback only under ``--traceback``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from migrator import cli, redact
from migrator.cli.render import Output, error_document
from migrator.errors import MigratorError


class Command(BaseCommand):
    help = "TradingBot database migrations: status, run, rollback, create, validate."
    # The subcommands do their own checks; Django's would only slow every call down.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        subparsers = parser.add_subparsers(
            dest="subcommand", metavar="SUBCOMMAND", required=True, parser_class=_SubParser
        )
        for name in cli.SUBCOMMANDS:
            module = cli.load(name)
            sub = subparsers.add_parser(
                name,
                help=module.help,
                description=module.help,
                called_from_command_line=parser.called_from_command_line,
            )
            _add_common(sub)
            module.add_arguments(sub)

    def run_from_argv(self, argv: list[str]) -> None:
        """As Django's, but a ``--traceback`` traceback is scrubbed of passwords (its chained
        exceptions may quote a URL) and keeps the exit code (2 for bad usage)."""
        try:
            super().run_from_argv(argv)
        except Exception as exc:  # only with --traceback: Django exits itself otherwise
            sys.stderr.write(redact.scrub("".join(traceback.format_exception(exc))))
            sys.exit(exc.returncode if isinstance(exc, CommandError) else 1)

    def handle(self, *args: Any, **options: Any) -> None:
        out = Output(self.stdout, self.stderr, self.style, options)
        try:
            self._handle(out, options)
        except CommandError as exc:
            # Under --json stdout is always one document, even when no result exists.
            if out.json and not out.emitted:
                out.emit_json(
                    error_document(
                        options["subcommand"], options.get("database"), str(exc), exc.returncode
                    )
                )
            raise

    def _handle(self, out: Output, options: dict[str, Any]) -> None:
        try:
            cli.load(options["subcommand"]).handle(out, options)
        except CommandError as exc:
            raise CommandError(redact.scrub(str(exc)), returncode=exc.returncode) from exc
        except MigratorError as exc:
            raise CommandError(redact.scrub(str(exc)), returncode=exc.exit_code) from exc
        except DatabaseError as exc:
            first = (redact.scrub(str(exc)).strip().splitlines() or [exc.__class__.__name__])[0]
            raise CommandError(f"database error: {first}", returncode=1) from exc
        except KeyboardInterrupt as exc:
            # Outside a step (a step's interruption is an ``Interrupted`` error, above):
            # nothing was in progress.
            signum = getattr(exc, "signum", signal.SIGINT)
            raise CommandError(
                f"interrupted by {signal.Signals(signum).name} before any step ran or between "
                "steps; nothing is half-applied (see `tbmigrate status`)",
                returncode=128 + signum,
            ) from exc
        except Exception as exc:
            if options.get("traceback"):
                raise
            raise CommandError(
                f"unexpected error: {exc.__class__.__name__}: {redact.scrub(str(exc))} "
                "(run again with --traceback to see where)",
                returncode=1,
            ) from exc


class _SubParser(CommandParser):
    """Subcommand parser; usage errors exit 2 as argparse does, from the command line.

    With ``--json`` among its arguments a usage error also prints the error document on
    stdout, so a program reading it gets one JSON document whatever went wrong.
    """

    _json_requested = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._json_requested = "--json" in (args or ()) and "--json" in self._option_string_actions
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:  # the parent would refuse them anyway; here the error knows the subcommand
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def error(self, message: str) -> Any:
        if self.called_from_command_line and self._json_requested:
            command = self.prog.rsplit(" ", 1)[-1]
            document = error_document(command, None, f"{self.prog}: error: {message}", 2)
            sys.stdout.write(json.dumps(document, indent=2) + "\n")
            sys.stdout.flush()
        return super().error(message)


def _add_common(parser: argparse.ArgumentParser) -> None:
    """Options every subcommand takes after its name (``tbmigrate rollback 1.0.8 --no-input``)."""
    parser.add_argument(
        "--database",
        default="default",
        help="Database alias: default, qa (QA_DATABASE_URL) or prod (PROD_DATABASE_URL).",
    )
    parser.add_argument(
        "--no-input",
        "--noinput",
        action="store_false",
        dest="interactive",
        help="Never prompt; confirm destructive steps non-interactively.",
    )
    # Django's own options, accepted after the subcommand too; SUPPRESS keeps a value
    # given before the subcommand (`tbmigrate --traceback run`).
    parser.add_argument(
        "--traceback",
        action="store_true",
        default=argparse.SUPPRESS,
        help="Show the traceback of an error.",
    )
    parser.add_argument(
        "-v",
        "--verbosity",
        type=int,
        choices=[0, 1, 2, 3],
        default=argparse.SUPPRESS,
        help="0 quiet, 1 normal, 2 verbose.",
    )
    parser.add_argument(
        "--no-color",
        action="store_true",
        default=argparse.SUPPRESS,
        help="Don't colorize the output.",
    )
