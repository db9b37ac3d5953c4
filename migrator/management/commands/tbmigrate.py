"""``tbmigrate <subcommand>`` and ``python manage.py tbmigrate <subcommand>``: a thin
layer over ``migrator.api``.

Parsing and rendering live in ``migrator/cli/``; this module wires the subcommands
and turns every error into one line and an exit code (0 success, 1 failure,
2 bad usage), with a traceback only under ``--traceback``.

Start-up matters (``bench/startup.py``): the subcommands are listed from
``cli.SUMMARIES``, and only the one being run has its module imported and its
arguments added (``_LazyParsers``), so ``tbmigrate --help`` sets up nothing.  The
``tbmigrate`` command (``migrator/console.py``) sets Django up at that moment.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback
from typing import Any

from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    DjangoHelpFormatter,
)

import migrator
from migrator import cli, redact, signals
from migrator.cli.render import Output, error_document
from migrator.errors import MigratorError


class Command(BaseCommand):
    help = (
        "Versioned database migrations for PostgreSQL and SQLite: status, run, rollback, "
        "create, validate, repair, backup, sql, import, diff, fleet."
    )
    # The subcommands do their own checks; Django's would only slow every call down.
    requires_system_checks: list[str] = []

    def __init__(self, *args: Any, standalone: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.standalone = standalone  # the `tbmigrate` command rather than manage.py

    def get_version(self) -> str:
        return f"tbmigrate {migrator.__version__}"

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("epilog", cli.EXAMPLES[None])
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        if self.standalone:
            parser.prog = "tbmigrate"
        _add_common(parser, before_subcommand=True)
        subparsers = parser.add_subparsers(
            dest="subcommand", metavar="SUBCOMMAND", required=True, parser_class=_SubParser
        )
        parsers = _LazyParsers()
        subparsers._name_parser_map = parsers
        subparsers.choices = parsers
        for name in cli.SUBCOMMANDS:
            summary = cli.SUMMARIES.get(name)
            module = None if summary else cli.load(name)
            subparsers.add_parser(
                name,
                help=summary or module.help,  # type: ignore[union-attr]
                formatter_class=HelpFormatter,
                epilog=cli.EXAMPLES.get(name),
                called_from_command_line=parser.called_from_command_line,
            )
            if module is not None:
                parsers.build(name)

    def execute(self, *args: Any, **options: Any) -> Any:
        ensure_django()
        return super().execute(*args, **options)

    def run_from_argv(self, argv: list[str]) -> None:
        """As Django's, but a ``--traceback`` traceback is scrubbed of passwords (its chained
        exceptions may quote a URL) and keeps the exit code (2 for bad usage)."""
        signals.as_container_init()
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
        from django.db import DatabaseError

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


def ensure_django() -> None:
    """Set Django up if nobody has (the ``tbmigrate`` command; manage.py already did)."""
    from django.apps import apps

    if not apps.ready:
        import django

        django.setup()


class HelpFormatter(DjangoHelpFormatter):
    """Django's, keeping the line breaks of texts written with them (the examples)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class _LazyParsers(dict):
    """The subcommand parsers by name; each gets its module's arguments when first used.

    argparse looks a subcommand's parser up here when it meets its name, so a command
    line sets up (and imports) only its own subcommand.  ``values()`` builds them all
    (``call_command`` walks every parser's options).
    """

    def __init__(self) -> None:
        super().__init__()
        self._built: set[str] = set()

    def build(self, name: str) -> CommandParser:
        parser: CommandParser = super().__getitem__(name)
        if name not in self._built:
            self._built.add(name)
            ensure_django()
            module = cli.load(name)
            parser.description = module.help
            _add_common(parser)
            module.add_arguments(parser)
        return parser

    def __getitem__(self, name: str) -> CommandParser:
        return self.build(name)

    def get(self, name: str, default: Any = None) -> Any:
        return self.build(name) if name in self else default

    def values(self) -> Any:
        return [self.build(name) for name in self]

    def items(self) -> Any:
        return [(name, self.build(name)) for name in self]


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


def add_common_options(parser: argparse.ArgumentParser, *, database: bool = True) -> None:
    """The options every subcommand takes after its name, for a subcommand's own
    subcommands (``tbmigrate fleet run --no-input``); ``database=False`` leaves out
    ``--database`` (the fleet's commands choose databases their own way)."""
    _add_common(parser, database=database)


def _add_common(
    parser: argparse.ArgumentParser, before_subcommand: bool = False, *, database: bool = True
) -> None:
    """Options every subcommand takes, before its name (``tbmigrate --database qa run``)
    or after it (``tbmigrate rollback 1.0.8 --no-input``).

    After the subcommand they default to SUPPRESS, so that a value given before it is
    kept (argparse copies a subcommand's defaults over the values parsed before it).
    """
    default = argparse.SUPPRESS
    if database:
        parser.add_argument(
            "--database",
            default="default" if before_subcommand else default,
            help="Database alias: default, qa (QA_DATABASE_URL) or prod (PROD_DATABASE_URL).",
        )
    parser.add_argument(
        "--no-input",
        "--noinput",
        action="store_false",
        dest="interactive",
        default=True if before_subcommand else default,
        help="Never prompt; confirm destructive steps non-interactively.",
    )
    if before_subcommand:
        return  # Django adds its own options (--traceback, -v, --no-color) to this parser
    # Django's own options, accepted after the subcommand too.
    parser.add_argument(
        "--traceback",
        action="store_true",
        default=default,
        help="Show the traceback of an error.",
    )
    parser.add_argument(
        "-v",
        "--verbosity",
        type=int,
        choices=[0, 1, 2, 3],
        default=default,
        help="0 quiet, 1 normal, 2 verbose.",
    )
    parser.add_argument(
        "--no-color",
        action="store_true",
        default=default,
        help="Don't colorize the output.",
    )
