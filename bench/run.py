"""tbmigrate's benchmark: every command against the bare-driver floor, on both databases.

    python bench/run.py                 # N = 100, 1,000 and 10,000, backfill of 1,000,000 rows
    python bench/run.py --n 1000        # one size only
    python bench/run.py --peers         # also Alembic, yoyo-migrations, Django migrate

For each N it generates N trivial migrations (each creates a table; down drops it) and
times, each as a whole process and several times: the floor (``bench/floor.py``: the
same DDL plus one history row per migration, each in its own transaction, with the bare
driver), ``tbmigrate run``, ``status`` with all applied, ``rollback --to 0``, and the
tool's start-up (``tbmigrate --help``).  Ratios are taken against numbers measured in
the same run, never against constants, so the table means the same on any machine.
Peak memory is each child's own ``ru_maxrss`` (``os.wait4``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import backfill  # noqa: E402
import peers  # noqa: E402

SCRIPT = """version = "{version}"
name = "t{i}"
description = "benchmark table {i}"


def up(db):
    db.execute("CREATE TABLE bench_t{i} (id INTEGER PRIMARY KEY, label VARCHAR(40))")


def down(db):
    db.execute("DROP TABLE bench_t{i}")
"""


def generate(folder: Path, n: int) -> None:
    """N scripts, versions 0.0.1 .. 0.0.N (so 0.0.10 must sort after 0.0.9)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        version = f"0.0.{i}"
        path = folder / f"2026-01-01T00-00-00-{version}-t{i}.py"
        path.write_text(SCRIPT.format(version=version, i=i))


# -- databases -------------------------------------------------------------------------
@dataclass
class Target:
    """One fresh database: a SQLite file or a PostgreSQL database of this run's own."""

    vendor: str
    url: str  # postgresql://... or sqlite:////abs/path
    path: str = ""  # SQLite file

    def env(self) -> dict[str, str]:
        if self.vendor == "sqlite":
            return {"SQLITE_DB_PATH": self.path}
        return {"DATABASE_URL": self.url}

    def floor_target(self) -> str:
        return self.path if self.vendor == "sqlite" else self.url


class Databases:
    def __init__(self, vendor: str, workdir: Path, pg_url: str) -> None:
        self.vendor = vendor
        self.workdir = workdir
        self.pg_url = pg_url
        self.count = 0
        self.made: list[str] = []

    def fresh(self) -> Target:
        self.count += 1
        name = f"tbbench_{os.getpid()}_{self.count}"
        if self.vendor == "sqlite":
            path = str(self.workdir / f"{name}.sqlite3")
            return Target("sqlite", f"sqlite:///{path}", path)
        import psycopg

        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        base = self.pg_url.rsplit("/", 1)[0]
        return Target("postgresql", f"{base}/{name}")

    def drop(self, target: Target) -> None:
        if self.vendor == "sqlite":
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(target.path + suffix).unlink(missing_ok=True)
            return
        import psycopg

        name = target.url.rsplit("/", 1)[1]
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.made.remove(name)

    def drop_all(self) -> None:
        for name in list(self.made):
            self.drop(Target("postgresql", f"x/{name}"))


# -- measuring -------------------------------------------------------------------------
@dataclass
class Sample:
    seconds: float
    rss_mib: float


@dataclass
class Measure:
    samples: list[Sample] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def low(self) -> float:
        return min(s.seconds for s in self.samples)

    @property
    def high(self) -> float:
        return max(s.seconds for s in self.samples)

    @property
    def rss(self) -> float:
        return max(s.rss_mib for s in self.samples)

    def as_dict(self) -> dict[str, Any]:
        return {
            "median_s": round(self.median, 4),
            "min_s": round(self.low, 4),
            "max_s": round(self.high, 4),
            "runs": len(self.samples),
            "peak_rss_mib": round(self.rss, 1),
        }


# A small launcher between this process and the measured one.  A child's ru_maxrss
# counts the memory of the process it was forked from (even with posix_spawn), so
# children forked from this benchmark (Django and psycopg loaded) would all show at
# least its size; forked from this launcher they show at least ~9 MiB, less than any
# Python program measured.  The launcher also times the child itself.
LAUNCHER = """
import os, sys, time
report, folder, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
os.chdir(folder)
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(argv[0], argv)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
with open(report, "w") as out:
    out.write(f"{os.waitstatus_to_exitcode(status)} {seconds} {usage.ru_maxrss}")
"""


def timed(argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> Sample:
    """Run one child to completion; its wall time and its own peak memory."""
    full_env = {**os.environ, **env}
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as report:
        subprocess.run(
            [sys.executable, "-I", "-S", "-c", LAUNCHER, report.name, str(cwd), *argv],
            env=full_env,
            stdout=out,
            stderr=out,
            check=True,
        )
        code, seconds, maxrss = report.read().split()
        if int(code) != 0:
            out.seek(0)
            tail = out.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"{' '.join(argv)} failed (exit {code}):\n{tail}")
    return Sample(float(seconds), int(maxrss) / 1024)


def tbmigrate(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), "tbmigrate", *args]


def floor(action: str, target: Target, n: int) -> list[str]:
    return [
        sys.executable,
        str(BENCH / "floor.py"),
        action,
        target.vendor,
        target.floor_target(),
        str(n),
    ]


def bench_size(
    vendor: str, n: int, reps: int, workdir: Path, pg_url: str, with_peers: list[str]
) -> dict[str, Measure]:
    scripts = workdir / f"scripts_{n}"
    if not scripts.exists():
        generate(scripts, n)
    dbs = Databases(vendor, workdir, pg_url)
    results: dict[str, Measure] = {}

    def add(key: str, sample: Sample) -> None:
        results.setdefault(key, Measure()).samples.append(sample)

    tb_env = {"TBMIGRATE_SCRIPTS_DIR": str(scripts)}
    try:
        for _ in range(reps):
            # Interleaved, so that a slow moment of the machine hits every command alike.
            target = dbs.fresh()
            add("floor up", timed(floor("up", target, n), {}))
            add("floor down", timed(floor("down", target, n), {}))
            dbs.drop(target)

            add("startup", timed(tbmigrate("--help"), {**tb_env, **target.env()}))

            target = dbs.fresh()
            env = {**tb_env, **target.env()}
            add("run", timed(tbmigrate("run"), env))
            add("status", timed(tbmigrate("status"), env))
            add("rollback --to 0", timed(tbmigrate("rollback", "--to", "0", "--no-input"), env))
            dbs.drop(target)

            for name in with_peers:
                peer = peers.PEERS[name]
                folder = workdir / f"{name}_{n}"
                if not folder.exists():
                    peer.prepare(folder, n)
                target = dbs.fresh()
                for action in ("up", "status", "down"):
                    argv, env, cwd = peer.command(action, folder, target)
                    add(f"{name} {action}", timed(argv, env, cwd))
                dbs.drop(target)
    finally:
        dbs.drop_all()
    return results


# -- reporting -------------------------------------------------------------------------
TARGETS = {
    "run": ("floor up", 1.3),
    "rollback --to 0": ("floor down", 1.5),
    "status": ("startup", 1.5),
}


def ratio_rows(results: dict[str, Measure]) -> list[dict[str, Any]]:
    rows = []
    for key, measure in results.items():
        base = None
        if key in TARGETS:
            base = TARGETS[key][0]
        elif key.endswith(" up"):
            base = "floor up"
        elif key.endswith(" down"):
            base = "floor down"
        elif key.endswith(" status"):
            base = "startup"
        if key.startswith("floor") or key == "startup":
            base = None
        row = {"command": key, **measure.as_dict()}
        if base and base in results:
            row["vs"] = base
            row["ratio"] = round(measure.median / results[base].median, 2)
            if key in TARGETS:
                row["target"] = TARGETS[key][1]
                row["met"] = row["ratio"] <= TARGETS[key][1]
        rows.append(row)
    return rows


def print_table(vendor: str, n: int, rows: list[dict[str, Any]]) -> None:
    print(f"\n{vendor}, N = {n:,}")
    print(f"  {'command':<22} {'median s':>9} {'min-max s':>15} {'ratio':>14} {'peak MiB':>9}")
    for row in rows:
        ratio = ""
        if "ratio" in row:
            ratio = f"{row['ratio']:.2f}x {row['vs'].split()[-1]}"
            if "target" in row:
                ratio += " ok" if row["met"] else " MISS"
        spread = f"{row['min_s']:.3f}-{row['max_s']:.3f}"
        print(
            f"  {row['command']:<22} {row['median_s']:>9.3f} {spread:>15} {ratio:>14} "
            f"{row['peak_rss_mib']:>9.1f}"
        )


def growth(report: dict[str, Any], small: int, large: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for vendor, sizes in report["results"].items():
        if str(small) not in sizes or str(large) not in sizes:
            continue
        a = {r["command"]: r["median_s"] for r in sizes[str(small)]}
        b = {r["command"]: r["median_s"] for r in sizes[str(large)]}
        out[vendor] = {k: round(b[k] / a[k], 2) for k in a if k in b and a[k] > 0}
    return out


def versions() -> dict[str, str]:
    import django
    import psycopg

    found = {
        "python": platform.python_version(),
        "django": django.__version__,
        "psycopg": psycopg.__version__,
        "sqlite": __import__("sqlite3").sqlite_version,
    }
    try:
        import psycopg as pg

        with pg.connect(ARGS.pg_url) as conn:
            found["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    except Exception as exc:  # the benchmark fails later with a clear message anyway
        found["postgresql"] = f"unreachable ({exc.__class__.__name__})"
    return found


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {cpu}"


def markdown(report: dict[str, Any]) -> str:
    """The results as the README's tables: one per N, both databases side by side."""
    lines = [
        f"Measured {report['date']} on {report['machine']}; "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
        + "."
    ]
    sizes = sorted({int(n) for by_n in report["results"].values() for n in by_n})
    vendors = list(report["results"])
    for n in sizes:
        lines += [
            "",
            f"**N = {n:,}** (median of {_runs(report, n)} run(s); ratio to the floor, "
            "or to tbmigrate's start-up for status; peak memory)",
            "",
        ]
        head = "| command | " + " | ".join(f"{v} s | ratio | MiB" for v in vendors) + " |"
        lines += [head, "|---|" + "---:|---:|---:|" * len(vendors)]
        rows: dict[str, dict[str, dict[str, Any]]] = {}
        for vendor in vendors:
            for row in report["results"][vendor].get(str(n), []):
                rows.setdefault(row["command"], {})[vendor] = row
        for command, by_vendor in rows.items():
            cells = []
            for vendor in vendors:
                row = by_vendor.get(vendor)
                if row is None:
                    cells.append("| | ")
                    continue
                ratio = f"{row['ratio']:.2f}x" if "ratio" in row else ""
                if "met" in row:
                    ratio += " ✓" if row["met"] else " ✗"
                cells.append(f"{row['median_s']:.3f} | {ratio} | {row['peak_rss_mib']:.0f}")
            name = f"**{command}**" if command in TARGETS else command
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    growth = report.get("growth_1000_to_10000")
    if growth:
        lines += ["", "**Growth from N = 1,000 to 10,000** (time ratio; linear is 10x)", ""]
        commands = list(next(iter(growth.values())))
        lines += ["| command | " + " | ".join(growth) + " |", "|---|" + "---:|" * len(growth)]
        for command in commands:
            values = " | ".join(f"{growth[v].get(command, 0):.1f}x" for v in growth)
            lines.append(f"| {command} | {values} |")
    backfill = report.get("backfill")
    if backfill:
        lines += ["", "**Backfill** (rows per second, whole process)", ""]
        lines += ["| | " + " | ".join(backfill) + " |", "|---|" + "---:|" * len(backfill)]
        for label in next(iter(backfill.values())):
            cells = []
            for v in backfill:
                got = backfill[v][label]
                batches = f", {got['batches']:,} batches" if "batches" in got else ""
                cells.append(f"{got['rows_per_s']:,} ({got['seconds']:.1f} s{batches})")
            lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _runs(report: dict[str, Any], n: int) -> int:
    return max(row["runs"] for by_n in report["results"].values() for row in by_n.get(str(n), []))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--n", type=int, action="append", help="migrations (repeatable; default 100 1000 10000)")
    add("--reps", type=int, default=5, help="repetitions for N <= 1000 (default 5)")
    add("--large-reps", type=int, default=1, help="repetitions for N > 1000 (default 1)")
    add("--vendor", choices=["sqlite", "postgresql"], action="append", help="default: both")
    add(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server to create throwaway databases on (env BENCH_PG_URL)",
    )
    add("--peers", action="store_true", help="also run the installed peers ('.[bench]')")
    add("--backfill-rows", type=int, default=1_000_000, help="backfill rows (0: skip)")
    add("--json", default=str(BENCH / "results.json"), help="results file (bench/results.json)")
    add("--markdown", metavar="FILE", help="print the tables of a results file; run nothing")
    return parser.parse_args(argv)


def main() -> None:
    sizes = sorted(set(ARGS.n or [100, 1000, 10000]))
    vendors = ARGS.vendor or ["sqlite", "postgresql"]
    with_peers = peers.available() if ARGS.peers else []
    if ARGS.peers:
        missing = sorted(set(peers.PEERS) - set(with_peers))
        print(
            f"peers: {', '.join(with_peers) or 'none installed'}"
            + (f" (not installed: {', '.join(missing)})" if missing else "")
        )
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
        "results": {},
    }
    print(f"{report['date']} | {report['machine']}")
    print(" | ".join(f"{k} {v}" for k, v in report["versions"].items()))
    workdir = Path(tempfile.mkdtemp(prefix="tbbench-"))
    try:
        for n in sizes:
            for vendor in vendors:
                reps = ARGS.reps if n <= 1000 else ARGS.large_reps
                results = bench_size(vendor, n, reps, workdir, ARGS.pg_url, with_peers)
                rows = ratio_rows(results)
                report["results"].setdefault(vendor, {})[str(n)] = rows
                print_table(vendor, n, rows)
        if 1000 in sizes and 10000 in sizes:
            report["growth_1000_to_10000"] = growth(report, 1000, 10000)
            print("\ngrowth from N = 1,000 to 10,000 (time ratio; linear is 10x, target <= 11x):")
            for vendor, ratios in report["growth_1000_to_10000"].items():
                print(f"  {vendor}: " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()))
        if ARGS.backfill_rows:
            report["backfill"] = {}
            for vendor in vendors:
                dbs = Databases(vendor, workdir, ARGS.pg_url)
                try:
                    result = backfill.measure(dbs, ARGS.backfill_rows, workdir, timed, tbmigrate)
                finally:
                    dbs.drop_all()
                report["backfill"][vendor] = result
                print(
                    f"\nbackfill {ARGS.backfill_rows:,} rows, {vendor}: "
                    + ", ".join(
                        f"{k} {v['rows_per_s']:,.0f} rows/s ({v['seconds']:.2f} s)"
                        for k, v in result.items()
                    )
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    Path(ARGS.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {ARGS.json}")


ARGS = parse_args([]) if __name__ != "__main__" else None
if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.markdown:
        print(markdown(json.loads(Path(ARGS.markdown).read_text())))
    else:
        main()
