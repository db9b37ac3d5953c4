"""What the lock-hazard gate costs a run when a table is large (PostgreSQL).

    python bench/gate.py                  # 250-migration history, 3 runs each
    python bench/gate.py --migrations 160 --runs 1

The history is ``bench/validation.py``'s (150 tables with foreign keys, indexes, views,
PL/pgSQL functions and triggers), run on a fresh database; then one table is filled
past ``HAZARD_TABLE_ROWS`` and one pending non-atomic step (``CREATE INDEX
CONCURRENTLY`` on it) is written.  Each as a whole process, ``tbmigrate run --dry-run``:

- ``gate off`` (``HAZARD_TABLE_ROWS=0``): the floor, measured in the same run;
- ``schema copy``: the gate as it runs by default, the live schema copied into a
  scratch database (``pg_dump --schema-only | pg_restore``) and the step rehearsed;
- ``replay``: the fallback without ``pg_dump`` (the applied scripts replayed on the
  scratch database instead).

and prints each one's seconds and its extra cost over the floor.  Nothing is kept but
``--json`` (default ``bench/gate-results.json``).
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
from validation import TABLES, generate  # noqa: E402

ROWS = 20_000
THRESHOLD = 10_000
MODES = {
    "gate off": {"TBMIGRATE_HAZARD_TABLE_ROWS": "0"},
    "schema copy": {"TBMIGRATE_HAZARD_TABLE_ROWS": str(THRESHOLD)},
    "replay": {
        "TBMIGRATE_HAZARD_TABLE_ROWS": str(THRESHOLD),
        "TBMIGRATE_PG_DUMP": "/nonexistent/pg_dump",
    },
}

PENDING = '''"""An index on the large table, built without blocking it."""

version = "9.0.0"
name = "code-index"
description = "index acct_1 (code, status) concurrently"
atomic = False


def up(db):
    db.execute("CREATE INDEX CONCURRENTLY acct_1_code_status ON acct_1 (code, status)")


def down(db):
    db.execute("DROP INDEX CONCURRENTLY acct_1_code_status")
'''


def fill(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO acct_1 (code, amount) SELECT 'c' || i, i FROM generate_series(1, %s) i",
            [ROWS],
        )
        conn.execute("ANALYZE acct_1")


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    scripts = workdir / "scripts"
    kinds = generate(scripts, "postgresql", args.migrations)
    dbs = Databases("postgresql", workdir, args.pg_url)
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        target = dbs.fresh()
        env = {**target.env(), "TBMIGRATE_SCRIPTS_DIR": str(scripts)}
        timed(tbmigrate("run", "--no-input"), env)
        fill(target.url)
        (scripts / "2026-12-01T00-00-00-9.0.0-code-index.py").write_text(PENDING)
        for _ in range(args.runs):
            for mode, extra in MODES.items():
                sample = timed(tbmigrate("run", "--dry-run", "--no-input"), {**env, **extra})
                samples[mode].append(sample.seconds)
    finally:
        dbs.drop_all()
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "history": {"migrations": args.migrations, **kinds},
        "large_table_rows": ROWS,
        "runs": args.runs,
        "seconds": {k: round(v, 3) for k, v in medians.items()},
        "all_seconds": {k: [round(x, 3) for x in v] for k, v in samples.items()},
        "extra_over_gate_off_s": {
            k: round(medians[k] - medians["gate off"], 3) for k in MODES if k != "gate off"
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--migrations", type=int, default=250)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--json", default=str(BENCH / "gate-results.json"))
    args = parser.parse_args(argv)
    if args.migrations < TABLES + 3:
        parser.error(f"--migrations must be at least {TABLES + 3}")
    return args


def main() -> None:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tbbench-gate-"))
    try:
        result = measure(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = {"machine": machine(), "versions": versions(), "result": result}
    print(
        f"postgresql: {args.migrations} migrations applied, one pending step on a table of "
        f"{ROWS:,} rows; run --dry-run, median of {args.runs}"
    )
    floor = result["seconds"]["gate off"]
    for mode, seconds in result["seconds"].items():
        extra = "" if mode == "gate off" else f"  +{seconds - floor:.2f} s ({seconds / floor:.2f}x)"
        print(f"  {mode:<12} {seconds:7.2f} s{extra}")
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {args.json}")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
