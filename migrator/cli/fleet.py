"""``tbmigrate fleet status | run | validate | names``: the databases of the fleet file."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import CommandError

from migrator import conf, fleet
from migrator.cli.options import seconds
from migrator.cli.render import Output, duration, table
from migrator.errors import Aborted, UsageError

help = (
    "Work on every database of the fleet file (tbmigrate.fleet.toml): status, run "
    "(canaries, parallel processes), validate, names."
)

ACTIONS = {
    "status": "Every database's state: head, pending, problems, reachable. Exit 1 unless "
    "every database is at head and clean.",
    "run": "Migrate every database, each by a `tbmigrate run --database NAME` process of its "
    "own (canaries first). Exit 1 if any database did not end well.",
    "validate": "`validate schema` on every database, summarised. Exit 1 on any FAIL or "
    "unreachable database.",
    "names": "The fleet's names, one a line (for CI matrices and cluster jobs).",
}

EXAMPLES = {
    "status": """\
examples:
  tbmigrate fleet status
  tbmigrate fleet status --group eu --json > fleet-status.json
  tbmigrate fleet status --fleet deploy/tbmigrate.fleet.toml""",
    "run": """\
examples:
  tbmigrate fleet run --canary 1 --max-parallel 4      one first, then four at a time
  tbmigrate fleet run --group exchanges --continue-on-error
  tbmigrate fleet run --only exchange-a,exchange-b --json""",
    "validate": """\
examples:
  tbmigrate fleet validate
  tbmigrate fleet validate --group eu --json""",
    "names": """\
examples:
  tbmigrate fleet names                                   every name, in the file's order
  tbmigrate fleet names --group eu
  tbmigrate fleet names --index "$JOB_COMPLETION_INDEX"   one name (Kubernetes Indexed Job)""",
}


def add_arguments(parser: Any) -> None:
    from migrator.management.commands.tbmigrate import HelpFormatter, add_common_options

    actions = parser.add_subparsers(
        dest="fleet_action", metavar="ACTION", required=True, parser_class=type(parser)
    )
    for name, text in ACTIONS.items():
        sub = actions.add_parser(
            name,
            help=text,
            description=text,
            formatter_class=HelpFormatter,
            epilog=EXAMPLES[name],
            called_from_command_line=parser.called_from_command_line,
        )
        add_common_options(sub, database=False)
        sub.add_argument(
            "--fleet",
            metavar="FILE",
            help="The fleet file (default: setting FLEET_FILE, tbmigrate.fleet.toml in the "
            "working directory).",
        )
        sub.add_argument(
            "--only",
            action="append",
            default=[],
            metavar="NAME[,NAME]",
            help="Only these databases (repeatable).",
        )
        sub.add_argument(
            "--group",
            action="append",
            default=[],
            metavar="GROUP",
            help="Only the databases in this group (repeatable; with --only: either).",
        )
        if name != "names":
            sub.add_argument("--json", action="store_true", help="Print the result as JSON.")
        if name == "run":
            _run_arguments(sub)
        if name == "names":
            sub.add_argument(
                "--index",
                type=int,
                metavar="N",
                help="Print only the Nth name, from 0 (e.g. $JOB_COMPLETION_INDEX).",
            )


def _run_arguments(parser: Any) -> None:
    parser.add_argument(
        "--canary",
        type=int,
        default=0,
        metavar="N",
        help="Migrate the first N databases one at a time first; stop there if any does "
        "not end well.",
    )
    parser.add_argument(
        "--max-parallel",
        type=int,
        default=1,
        metavar="K",
        help="Then migrate K databases at a time, each by its own process (default 1).",
    )
    parser.add_argument(
        "--continue-on-error",
        action="store_true",
        help="Go on starting databases after one fails (default: stop starting new ones; "
        "a failed canary always stops).",
    )
    parser.add_argument(
        "--to", metavar="VERSION", help="Apply migrations up to and including VERSION."
    )
    parser.add_argument(
        "--lock-timeout",
        type=seconds,
        metavar="SECONDS",
        help="How long each database's run waits for a migration lock taken after its turn "
        "came (default: setting LOCK_TIMEOUT); one already locked is reported at once.",
    )


def handle(out: Output, options: dict[str, Any]) -> None:
    if options.get("database", "default") != "default":
        raise UsageError(
            "tbmigrate fleet works on the fleet file's databases, not on --database; "
            "choose them with --only NAME or --group GROUP"
        )
    loaded = fleet.load(options.get("fleet"))
    entries = loaded.select(options.get("only") or (), options.get("group") or ())
    if options["fleet_action"] != "names":
        # Every selected variable set and URL usable, before anything is shown or asked.
        fleet.resolve(loaded, entries)
    {"status": _status, "run": _run, "validate": _validate, "names": _names}[
        options["fleet_action"]
    ](out, options, loaded, entries)


# -- names ---------------------------------------------------------------------------------
def _names(out: Output, options: dict[str, Any], loaded: Any, entries: list[Any]) -> None:
    index = options.get("index")
    if index is not None:
        if not 0 <= index < len(entries):
            raise UsageError(
                f"--index {index}: the fleet file {loaded.shown} has {len(entries)} selected "
                f"database(s), so the index is 0 to {len(entries) - 1}"
            )
        entries = [entries[index]]
    for entry in entries:
        out.stdout.write(entry.name)


# -- status --------------------------------------------------------------------------------
def _status(out: Output, options: dict[str, Any], loaded: Any, entries: list[Any]) -> None:
    result = fleet.status(loaded, entries)
    if out.json:
        out.emit_json(status_json(result))
    else:
        out.line(f"Fleet:   {loaded.shown} ({len(entries)} database(s))")
        out.line(f"Scripts: {result.scripts_dir} (latest {result.latest or 'none'})")
        out.line()
        rows = [
            [
                d.name,
                ",".join(d.entry.groups),
                d.database,
                (d.head or "-") if d.reachable else "",
                str(len(d.versions("pending"))) if d.reachable else "",
                _styled_state(out, d),
            ]
            for d in result.databases
        ]
        for line in table(["Name", "Groups", "Database", "Head", "Pending", "State"], rows):
            out.line(line)
        notes = [(d.name, note) for d in result.databases for note in _status_notes(d)]
        if notes:
            out.line()
            for name, note in notes:
                out.line(f"  {name}: {note}")
        out.line()
        out.summary(result.summary + ".")
    if not result.ok:
        raise CommandError(
            f"fleet status: not every database is at head ({result.summary})", returncode=1
        )


def _styled_state(out: Output, d: Any) -> str:
    if not d.reachable:
        return str(out.style.ERROR("unreachable"))
    if d.state == "running":
        return str(out.style.NOTICE("being migrated"))
    if d.state == "problem":
        text = ", ".join(f"{m.version} {m.state}" for m in d.problems)
        return str(out.style.ERROR(text))
    if d.state == "behind":
        return str(out.style.WARNING("behind"))
    return str(out.style.SUCCESS("at head"))


def _status_notes(d: Any) -> list[str]:
    from migrator import locking

    if not d.reachable:
        return [d.error or "unreachable"]
    notes = []
    if d.status.lock_holder is not None:
        notes.append(f"being migrated by {locking.holder_description(d.status.lock_holder)}")
    for m in d.problems:
        notes.append(f"{m.label} is {m.state}: {m.state.fix}")
    return notes


def status_json(result: Any) -> dict[str, Any]:
    """The ``fleet status --json`` document (``migrator/schemas/fleet-status.schema.json``)."""
    databases = []
    for d in result.databases:
        databases.append(
            {
                "name": d.name,
                "groups": list(d.entry.groups),
                "url_env": d.entry.url_env,
                "database": d.database,
                "vendor": d.vendor,
                "reachable": d.reachable,
                "ok": d.ok,
                "state": d.state,
                "head": d.head,
                "pending": d.versions("pending"),
                "changed": d.versions("changed"),
                "missing": d.versions("missing"),
                "failed": d.versions("failed"),
                "interrupted": d.versions("interrupted"),
                "running": d.status.lock_holder if d.status is not None else None,
                "summary": d.status.summary if d.status is not None else None,
                "error": d.error,
            }
        )
    return {
        "fleet": str(result.fleet.path),
        "scripts_dir": str(result.scripts_dir),
        "latest": result.latest,
        "ok": result.ok,
        "counts": {
            state: result.count(state)
            for state in ("at-head", "behind", "running", "problem", "unreachable")
        },
        "summary": result.summary,
        "databases": databases,
    }


# -- run -----------------------------------------------------------------------------------
def _run(out: Output, options: dict[str, Any], loaded: Any, entries: list[Any]) -> None:
    protected = [e.name for e in entries if e.name in conf.get("PROTECTED_DATABASES")]
    if protected and not out.confirm(
        f"{', '.join(protected)} {'is' if len(protected) == 1 else 'are'} protected: "
        f"migrate {len(entries)} database(s) of {loaded.shown}?",
        [entry.name for entry in entries],
    ):
        raise Aborted("fleet run cancelled; nothing was changed")
    canary = options["canary"]
    out.line(
        f"Fleet: {loaded.shown}: {len(entries)} database(s)"
        + (f", canary {', '.join(e.name for e in entries[:canary])}" if canary else "")
        + f", up to {options['max_parallel']} at a time"
        + (", continuing after failures" if options["continue_on_error"] else "")
        + "."
    )

    def on_done(d: Any) -> None:
        out.line(f"  {d.name}: {_outcome_text(out, d)}")

    result = fleet.run(
        loaded,
        entries,
        command=child_command(),
        canary=canary,
        max_parallel=options["max_parallel"],
        continue_on_error=options["continue_on_error"],
        lock_timeout=options.get("lock_timeout"),
        to=options.get("to"),
        on_done=on_done,
    )
    if out.json:
        out.emit_json(run_json(result))
    else:
        out.line()
        rows = [
            [
                d.name + (" (canary)" if d.canary else ""),
                _styled_outcome(out, d.outcome),
                ", ".join(d.applied) or "-",
                duration(d.duration_ms) if d.duration_ms is not None else "",
                d.error or (d.summary if d.outcome == fleet.SKIPPED else ""),
            ]
            for d in result.databases
        ]
        for line in table(["Name", "Outcome", "Applied", "Duration", "Error"], rows):
            out.line(line)
        out.line()
        out.summary(result.summary)
    if result.interrupted is not None:
        raise CommandError(result.summary, returncode=128 + result.interrupted)
    if not result.ok:
        raise CommandError(result.summary, returncode=1)


def _outcome_text(out: Output, d: Any) -> str:
    if d.outcome == fleet.SUCCESS:
        what = f"applied {len(d.applied)}" if d.applied else "up to date"
        return f"{_styled_outcome(out, d.outcome)} ({what}, {duration(d.duration_ms or 0)})"
    return f"{_styled_outcome(out, d.outcome)}: {d.error or d.summary}"


def _styled_outcome(out: Output, outcome: str) -> str:
    style = {
        fleet.SUCCESS: out.style.SUCCESS,
        fleet.SKIPPED: out.style.NOTICE,
        fleet.LOCKED: out.style.WARNING,
    }.get(outcome, out.style.ERROR)
    return str(style(outcome))


def child_command() -> list[str]:
    """The entry point this command was started by, for the children of ``fleet run``:
    ``manage.py tbmigrate`` when it was, else the ``tbmigrate`` console command with this
    process's settings module (``fleet.child_environment``)."""
    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(script) == "manage.py" and os.path.isfile(script):
        return [sys.executable, os.path.abspath(script), "tbmigrate"]
    return fleet.console_command()


def run_json(result: Any) -> dict[str, Any]:
    """The ``fleet run --json`` document (``migrator/schemas/fleet-run.schema.json``)."""
    return {
        "fleet": str(result.fleet.path),
        "ok": result.ok,
        "canary": result.canary,
        "max_parallel": result.max_parallel,
        "continue_on_error": result.continue_on_error,
        "interrupted": result.interrupted,
        "counts": {outcome: len(result.named(outcome)) for outcome in fleet.OUTCOMES},
        "summary": result.summary,
        "databases": [
            {
                "name": d.name,
                "groups": list(d.entry.groups),
                "database": d.database,
                "vendor": d.vendor,
                "canary": d.canary,
                "outcome": d.outcome,
                "applied": d.applied,
                "planned": d.planned,
                "duration_ms": d.duration_ms,
                "exit_code": d.exit_code,
                "error": d.error,
                "summary": d.summary,
            }
            for d in result.databases
        ],
    }


# -- validate ------------------------------------------------------------------------------
def _validate(out: Output, options: dict[str, Any], loaded: Any, entries: list[Any]) -> None:
    result = fleet.validate(loaded, entries)
    if out.json:
        out.emit_json(validate_json(result))
    else:
        out.line(f"Fleet: {loaded.shown} ({len(entries)} database(s))")
        out.line()
        rows = []
        for d in result.databases:
            if not d.reachable:
                rows.append([d.name, str(out.style.ERROR("unreachable")), d.error or ""])
                continue
            style = out.style.SUCCESS if d.ok else out.style.ERROR
            failing = [r for r in d.report.results if r.level == "FAIL"]
            rows.append(
                [
                    d.name,
                    str(style("ok" if d.ok else "FAIL")),
                    d.report.summary + "".join(f"; {r.name}: {r.message}" for r in failing[:3]),
                ]
            )
        for line in table(["Name", "Result", "Checks"], rows):
            out.line(line)
        out.line()
        out.summary(result.summary + ".")
    if not result.ok:
        raise CommandError(result.summary, returncode=1)


def validate_json(result: Any) -> dict[str, Any]:
    """The ``fleet validate --json`` document (``fleet-validate.schema.json``)."""
    databases = []
    for d in result.databases:
        report = d.report.as_dict() if d.report is not None else None
        databases.append(
            {
                "name": d.name,
                "groups": list(d.entry.groups),
                "database": d.database,
                "vendor": d.vendor,
                "reachable": d.reachable,
                "ok": d.ok,
                "counts": report["counts"] if report else None,
                "summary": report["summary"] if report else None,
                "checks": [c for c in report["checks"] if c["level"] != "PASS"] if report else [],
                "error": d.error,
            }
        )
    return {
        "fleet": str(result.fleet.path),
        "validation": "schema",
        "ok": result.ok,
        "summary": result.summary,
        "databases": databases,
    }
