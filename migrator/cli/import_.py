"""``tbmigrate import golang-migrate|dbmate|flyway|diesel FOLDER [--adopt]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from migrator import conf, importers
from migrator.cli.options import add_lock_timeout
from migrator.cli.render import Output
from migrator.errors import UsageError
from migrator.scripts import shown
from migrator.versions import Version

help = (
    "Write another tool's migrations (golang-migrate, dbmate, Flyway, Diesel) into the "
    "scripts folder as .up.sql/.down.sql pairs, versions mapped in order (the mapping is "
    "printed and kept in _imported-TOOL.json); --adopt also records as applied what that "
    "tool's history table says is applied (audited as adopt)."
)


def add_arguments(parser: Any) -> None:
    parser.add_argument("tool", choices=importers.TOOLS, help="The tool the folder is for.")
    parser.add_argument("folder", metavar="FOLDER", help="The tool's migrations folder.")
    parser.add_argument(
        "--start",
        default="1.0.0",
        metavar="VERSION",
        help="Our version for the first migration (default 1.0.0); the next ones follow.",
    )
    parser.add_argument(
        "--adopt",
        action="store_true",
        help="Record as applied on --database what the tool's history table says is applied "
        "(schema_migrations, flyway_schema_history, __diesel_schema_migrations).",
    )
    add_lock_timeout(parser)


def handle(out: Output, options: dict[str, Any]) -> None:
    tool = options["tool"]
    module = importers.tool_module(tool)
    folder = Path(options["folder"]).expanduser()
    if not folder.is_dir():
        raise UsageError(f"import: {options['folder']} is not a folder")
    try:
        start = Version.parse(options["start"])
    except ValueError as exc:
        raise UsageError(f"--start: {exc}") from None
    migrations, skipped = module.read(folder)
    if not migrations:
        raise UsageError(f"import: {shown(folder)} holds no {tool} migrations")
    result = importers.write(tool, folder, migrations, conf.scripts_dir(), start, skipped)
    written = sum(1 for m in result.migrations if m.written)
    out.line(f"{tool} {shown(folder)} -> {shown(result.scripts_dir)}:")
    for imported in result.migrations:
        state = "" if imported.written else "  (already there)"
        source, name = imported.source.version, imported.source.name
        out.line(f"  {source:>16}  ->  {imported.version}  {name}{state}")
        for note in imported.source.notes:
            out.line(f"{'':>22}note: {note}")
    for line in skipped:
        out.note(f"  skipped {line}")
    out.line(f"Mapping kept in {shown(result.mapping_file)}")
    adopted_text = ""
    if options["adopt"]:
        from migrator.importers.adopt import adopt

        adopted = adopt(options["database"], tool, module, result, options["lock_timeout"])
        new = [a for a in adopted if not a.already]
        adopted_text = f"; {len(new)} recorded as applied ({tool}'s {module.TABLE} says so)" + (
            f", {len(adopted) - len(new)} already were" if len(new) < len(adopted) else ""
        )
    out.summary(
        f"Imported {len(result.migrations)} {tool} migration(s), {written} written"
        + (f", {len(skipped)} skipped" if skipped else "")
        + adopted_text
        + "."
    )
