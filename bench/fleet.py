"""What `tbmigrate fleet` costs next to migrating each database on its own.

    python bench/fleet.py                        # 50 databases: 25 PostgreSQL, 25 SQLite
    python bench/fleet.py --databases 10 --max-parallel 1 --max-parallel 4

It makes a fleet of ``--databases`` fresh databases (half PostgreSQL databases on
``--pg-url``, half SQLite files), a fleet file naming each by its own variable, and
``--scripts`` trivial migrations (each creates a table), then times, each as a whole
process of the installed ``tbmigrate`` command:

- the reference: ``tbmigrate run --database NAME`` once per database, one after
  another, summed (what a shell loop over the fleet costs); then ``tbmigrate status
  --database NAME`` the same way;
- ``tbmigrate fleet run --max-parallel K`` for each K (default 1, 2 and 4), on fresh
  databases each time, and ``tbmigrate fleet status`` over the migrated fleet.

and prints each as a ratio to its reference measured in the same run (the machine's
load hits both alike).  ``fleet run`` starts one ``tbmigrate run`` process per
database, so ``--max-parallel 1`` costs about the sum; more processes at a time help
as far as the machine's cores and the servers allow.  ``fleet status`` reads every
database in one process, so it pays Django's start-up once instead of once per
database.  Every fleet run must end with the whole fleet at head (checked).  Nothing is
kept but ``--json`` if given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from run import machine, versions  # noqa: E402

TBMIGRATE = Path(sys.executable).parent / "tbmigrate"
SCRIPT = """version = "0.0.{i}"
name = "t{i}"


def up(db):
    db.execute("CREATE TABLE fleet_t{i} (id INTEGER PRIMARY KEY, label VARCHAR(40))")


def down(db):
    db.execute("DROP TABLE fleet_t{i}")
"""


class Fleet:
    """The databases, their variables, the fleet file and the scripts, in a work folder."""

    def __init__(self, work: Path, count: int, scripts: int, pg_url: str) -> None:
        self.work = work
        self.pg_url = pg_url
        self.tag = f"tbfleet_{os.getpid()}"
        self.names = [f"db-{i:02d}" for i in range(count)]
        self.vendors = {
            name: ("postgresql" if i % 2 == 0 else "sqlite") for i, name in enumerate(self.names)
        }
        self.env = {
            key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ
        }
        folder = work / "migration_scripts"
        folder.mkdir()
        for i in range(1, scripts + 1):
            (folder / f"2026-01-01T00-00-00-0.0.{i}-t{i}.py").write_text(SCRIPT.format(i=i))
        text = ""
        for name in self.names:
            variable = name.upper().replace("-", "_") + "_URL"
            self.env[variable] = self.url(name)
            text += f'[[database]]\nname = "{name}"\nurl_env = "{variable}"\n\n'
        (work / "tbmigrate.fleet.toml").write_text(text)

    def url(self, name: str) -> str:
        if self.vendors[name] == "sqlite":
            return f"sqlite:///{self.work / name}.sqlite3"
        return f"{self.pg_url.rsplit('/', 1)[0]}/{self.tag}_{name.replace('-', '_')}"

    def fresh(self) -> None:
        """Every database empty again (PostgreSQL: dropped and made anew)."""
        import psycopg

        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            for name in self.names:
                if self.vendors[name] == "postgresql":
                    database = f"{self.tag}_{name.replace('-', '_')}"
                    conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                    conn.execute(f'CREATE DATABASE "{database}"')
                else:
                    for suffix in ("", "-journal", ".tbmigrate.lock"):
                        Path(f"{self.work / name}.sqlite3{suffix}").unlink(missing_ok=True)

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            for name in self.names:
                if self.vendors[name] == "postgresql":
                    database = f"{self.tag}_{name.replace('-', '_')}"
                    conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def tbmigrate(self, *args: str, ok: tuple[int, ...] = (0,)) -> float:
        """Run the command to completion; its wall time in seconds."""
        started = time.perf_counter()
        done = subprocess.run(
            [str(TBMIGRATE), *args], cwd=self.work, env=self.env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - started
        if done.returncode not in ok:
            raise SystemExit(
                f"tbmigrate {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return seconds

    def at_head(self) -> None:
        """The whole fleet migrated (exit 0 of fleet status), or the benchmark stops."""
        self.tbmigrate("fleet", "status")


def measure(fleet: Fleet, parallels: list[int], rounds: int) -> list[dict[str, Any]]:
    """Each command ``rounds`` times, interleaved (a slow moment of a shared machine then
    hits them alike); the median of each."""
    n = len(fleet.names)
    samples: dict[str, list[float]] = {}

    def add(key: str, seconds: float) -> None:
        samples.setdefault(key, []).append(seconds)

    runs, statuses = (
        f"{n} x `tbmigrate run --database NAME` (sum)",
        f"{n} x `tbmigrate status --database NAME` (sum)",
    )
    for _ in range(rounds):
        fleet.fresh()
        add(
            runs,
            sum(fleet.tbmigrate("run", "--database", name, "--no-input") for name in fleet.names),
        )
        fleet.at_head()
        add(statuses, sum(fleet.tbmigrate("status", "--database", name) for name in fleet.names))
        add("`tbmigrate fleet status`", fleet.tbmigrate("fleet", "status"))
        for k in parallels:
            fleet.fresh()
            seconds = fleet.tbmigrate("fleet", "run", "--max-parallel", str(k), "--no-input")
            add(f"`tbmigrate fleet run --max-parallel {k}`", seconds)
            fleet.at_head()
    fleet_runs = [f"`tbmigrate fleet run --max-parallel {k}`" for k in parallels]
    order = [(runs, runs), *((key, runs) for key in fleet_runs), (statuses, statuses)]
    order.append(("`tbmigrate fleet status`", statuses))
    rows = []
    for key, reference in order:
        seconds, base = statistics.median(samples[key]), statistics.median(samples[reference])
        rows.append(
            {"what": key, "seconds": seconds, "ratio": seconds / base, "samples": samples[key]}
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| Command | Wall time | x its reference |", "|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['what']} | {row['seconds']:.1f} s | {row['ratio']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--databases", type=int, default=50, help="how many (default 50; half of each vendor)"
    )
    parser.add_argument(
        "--scripts", type=int, default=5, help="migrations each database gets (default 5)"
    )
    parser.add_argument(
        "--max-parallel", type=int, action="append", help="repeatable; default 1 2 4"
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server to create throwaway databases on (env BENCH_PG_URL)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="repetitions, interleaved; medians (default 1)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results there")
    args = parser.parse_args(argv)
    if not TBMIGRATE.exists():
        raise SystemExit(
            f"{TBMIGRATE} not found: run with the virtualenv's python (pip install -e .)"
        )
    parallels = args.max_parallel or [1, 2, 4]
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"{date} | {machine()} | {args.databases} databases, {args.scripts} migrations each, "
        f"{args.rounds} round(s)"
    )
    work = Path(tempfile.mkdtemp(prefix="tbfleet-"))
    fleet = Fleet(work, args.databases, args.scripts, args.pg_url)
    try:
        rows = measure(fleet, parallels, args.rounds)
    finally:
        fleet.drop()
        shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    if args.json:
        report = {
            "date": date,
            "machine": machine(),
            "versions": versions(),
            "databases": args.databases,
            "scripts": args.scripts,
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
