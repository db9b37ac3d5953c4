"""How much validation costs next to the run it validates, on a history like a real one.

    python bench/validation.py                    # both databases, 3 runs each
    python bench/validation.py --vendor sqlite --runs 1

It generates a history of ``--migrations`` (default 250) scripts building 150 tables
with foreign keys and indexes, views over them, and on PostgreSQL PL/pgSQL functions
(``$$`` bodies) with the triggers that call them (on SQLite, triggers with their own
bodies), some columns added later and a few objects dropped again: the shape of a
real history rather than N copies of one ``CREATE TABLE``.  Then, each as a whole
process, on a fresh database:

- ``tbmigrate run`` of the whole history (the reference);
- ``tbmigrate validate schema`` on the database the run built;
- ``tbmigrate validate scripts``, replayed on the vendor of that database only (the
  default ``VALIDATE_VENDORS`` of a project configured with that database alone).

and prints each validation's time as a ratio to ``run`` measured in the same run
(targets: ``validate schema`` <= 2x, ``validate scripts`` <= 4x).  Nothing is kept but
``--json`` (default ``bench/validation-results.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from run import ROOT, Databases, machine, tbmigrate, timed, versions  # noqa: E402

TABLES = 150
TARGETS = {"validate schema": 2.0, "validate scripts": 4.0}

HEADER = '''"""{description}."""

version = "{version}"
name = "{name}"
description = "{description}"


'''


def _table_sql(vendor: str, i: int) -> str:
    pk = "BIGSERIAL PRIMARY KEY" if vendor == "postgresql" else "INTEGER PRIMARY KEY AUTOINCREMENT"
    parent = (
        f"\n            parent_id BIGINT REFERENCES acct_{i - 1} (id) ON DELETE CASCADE,"
        if i > 1
        else ""
    )
    other = (
        f"\n            peer_id BIGINT REFERENCES acct_{i // 2} (id),"
        if i > 2 and i % 3 == 0
        else ""
    )
    return f"""CREATE TABLE acct_{i} (
            id {pk},{parent}{other}
            code VARCHAR(32) NOT NULL UNIQUE,
            amount NUMERIC(20, 8) NOT NULL DEFAULT 0 CHECK (amount >= 0),
            status VARCHAR(16) NOT NULL DEFAULT 'open',
            updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
        )"""


def _create_table(vendor: str, i: int) -> tuple[str, str]:
    up = [f'db.execute("""{_table_sql(vendor, i)}""")']
    if i > 1:
        up.append(f'db.create_index("acct_{i}", ["parent_id"])')
    up.append(f'db.create_index("acct_{i}", ["status", "updated_at"])')
    return "\n    ".join(up), f'db.execute("DROP TABLE acct_{i}")'


def _function_and_trigger(vendor: str, t: int) -> tuple[str, str]:
    if vendor == "postgresql":
        up = f'''db.execute("""
        CREATE OR REPLACE FUNCTION touch_acct_{t}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.updated_at := now();
            IF NEW.amount < 0 THEN
                RAISE EXCEPTION 'negative amount on acct_{t}: %', NEW.amount;
            END IF;
            RETURN NEW;
        END;
        $$""")
    db.execute(
        "CREATE TRIGGER acct_{t}_touch BEFORE UPDATE ON acct_{t} "
        "FOR EACH ROW EXECUTE FUNCTION touch_acct_{t}()"
    )'''
        down = f"""db.execute("DROP TRIGGER acct_{t}_touch ON acct_{t}")
    db.execute("DROP FUNCTION touch_acct_{t}()")"""
        return up, down
    up = f'''db.execute("""
        CREATE TRIGGER acct_{t}_touch AFTER UPDATE OF amount ON acct_{t}
        FOR EACH ROW WHEN NEW.amount <> OLD.amount
        BEGIN
            UPDATE acct_{t} SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
        END""")'''
    return up, f'db.execute("DROP TRIGGER acct_{t}_touch")'


def _view(t: int) -> tuple[str, str]:
    up = f"""db.execute(
        "CREATE VIEW acct_{t}_open AS SELECT c.id, c.code, c.amount, p.code AS parent_code "
        "FROM acct_{t} c LEFT JOIN acct_{t - 1} p ON p.id = c.parent_id WHERE c.status = 'open'"
    )"""
    return up, f'db.execute("DROP VIEW acct_{t}_open")'


def _add_column(t: int) -> tuple[str, str]:
    up = f"""db.add_column("acct_{t}", "note", "VARCHAR(200)")
    db.create_index("acct_{t}", ["note"], name="acct_{t}_note_idx")"""
    down = f"""db.drop_index("acct_{t}_note_idx")
    db.drop_column("acct_{t}", "note")"""
    return up, down


def generate(folder: Path, vendor: str, migrations: int) -> dict[str, int]:
    """Write the history: 150 tables first interleaved with the rest, in version order."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds = {"tables": 0, "triggers": 0, "views": 0, "columns": 0, "functions": 0}
    tables = 0
    extras = migrations - TABLES
    cycle = ["trigger", "view", "column"]
    plan: list[tuple[str, int]] = []
    # spread the other migrations evenly between the tables
    for n in range(migrations):
        due_tables = max(round((n + 1) * TABLES / migrations), min(n + 1, 2))
        if tables < due_tables:
            tables += 1
            plan.append(("table", tables))
        else:
            plan.append((cycle[len(plan) % 3], tables))
    assert len([p for p in plan if p[0] == "table"]) == TABLES and extras >= 0
    for n, (kind, t) in enumerate(plan, start=1):
        version = f"1.{n // 100}.{n % 100}"
        if kind == "table":
            up, down = _create_table(vendor, t)
            label, what = f"acct-{t}", f"create acct_{t}"
            kinds["tables"] += 1
        elif kind == "trigger":
            up, down = _function_and_trigger(vendor, t)
            label, what = f"touch-{t}-{n}", f"trigger on acct_{t}"
            kinds["triggers"] += 1
            kinds["functions"] += vendor == "postgresql"
        elif kind == "view":
            up, down = _view(t)
            label, what = f"view-{t}-{n}", f"view over acct_{t}"
            kinds["views"] += 1
        else:
            up, down = _add_column(t)
            label, what = f"note-{t}-{n}", f"note column on acct_{t}"
            kinds["columns"] += 1
        text = HEADER.format(version=version, name=label, description=what)
        text += f"def up(db):\n    {up}\n\n\ndef down(db):\n    {down}\n"
        (folder / f"2026-01-01T00-00-00-{version}-{label}.py").write_text(text)
    # the same object made twice would fail the run: one trigger, view and column each per table
    return kinds


def measure(vendor: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    scripts = workdir / f"scripts-{vendor}"
    kinds = generate(scripts, vendor, args.migrations)
    dbs = Databases(vendor, workdir, args.pg_url)
    samples: dict[str, list[float]] = {"run": [], "validate schema": [], "validate scripts": []}
    try:
        for _ in range(args.runs):
            target = dbs.fresh()
            env = {**target.env(), "TBMIGRATE_SCRIPTS_DIR": str(scripts)}
            samples["run"].append(timed(tbmigrate("run", "--no-input"), env).seconds)
            samples["validate schema"].append(timed(tbmigrate("validate", "schema"), env).seconds)
            scratch = dbs.fresh()  # validate scripts needs a configured database of the vendor
            env_scripts = {**scratch.env(), "TBMIGRATE_SCRIPTS_DIR": str(scripts)}
            samples["validate scripts"].append(
                timed(tbmigrate("validate", "scripts"), env_scripts).seconds
            )
            dbs.drop(target)
            dbs.drop(scratch)
    finally:
        dbs.drop_all()
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "history": {"migrations": args.migrations, **kinds},
        "runs": args.runs,
        "seconds": {k: round(v, 3) for k, v in medians.items()},
        "all_seconds": {k: [round(x, 3) for x in v] for k, v in samples.items()},
        "ratio_to_run": {
            k: round(medians[k] / medians["run"], 2)
            for k in ("validate schema", "validate scripts")
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vendor", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--migrations", type=int, default=250)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--json", default=str(BENCH / "validation-results.json"))
    parser.add_argument("--keep", help="write the generated histories to this folder too")
    args = parser.parse_args(argv)
    if args.migrations < TABLES + 3:
        parser.error(f"--migrations must be at least {TABLES + 3}")
    return args


def main() -> None:
    args = parse_args()
    vendors = args.vendor or ["sqlite", "postgresql"]
    workdir = Path(tempfile.mkdtemp(prefix="tbbench-validation-"))
    report: dict[str, Any] = {"machine": machine(), "versions": versions(), "results": {}}
    try:
        for vendor in vendors:
            result = measure(vendor, args, workdir)
            report["results"][vendor] = result
            history = result["history"]
            print(
                f"{vendor}: {history['migrations']} migrations ({history['tables']} tables, "
                f"{history['views']} views, {history['triggers']} triggers, "
                f"{history['functions']} functions, {history['columns']} columns added), "
                f"median of {result['runs']}"
            )
            for command, seconds in result["seconds"].items():
                ratio = result["ratio_to_run"].get(command)
                shown = ""
                if ratio is not None:
                    mark = "✓" if ratio <= TARGETS[command] else "✗"
                    shown = f"  {ratio:.2f}x run (target <= {TARGETS[command]:g}x) {mark}"
                print(f"  {command:<17} {seconds:7.2f} s{shown}")
        if args.keep:
            shutil.copytree(workdir, args.keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {args.json}")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
