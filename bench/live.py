"""tbmigrate under live trading traffic: what a migration does to the trading it runs beside.

    .venv/bin/python bench/live.py                  # every scenario, about 10 minutes
    .venv/bin/python bench/live.py --quick          # small and short, about 2 minutes
    .venv/bin/python bench/live.py --scenario blocker --tb-args "--pg-lock-timeout 0.2"
    .venv/bin/python bench/live.py --markdown bench/results/live.json   # the README tables

A PostgreSQL database is seeded once with ``generate_series`` (users, >= 500k trades,
>= 1.5M orders, the indexes a trading app has: orders by user and status, trades by
user and time); every scenario gets a copy of it (``CREATE DATABASE x TEMPLATE seed``),
so every scenario starts from the same data.  In each one, ``--clients`` processes
(``bench/live_workload.py``) trade on loopback at ``--rate`` transactions per second in
total (insert an order, update an order or a trade by id, read a user's latest trades,
read a user's open orders), recording every transaction; after ``--warmup`` seconds the
migration starts as a real ``tbmigrate run`` process of this checkout, on scripts
generated into a temporary folder (``bench/live_scripts.py``), and the workload goes on
``--tail`` seconds after it ends.  Scenarios:

- ``baseline``: no migration, ``--baseline-seconds`` of trading: what the others are
  compared with, measured in the same run;
- ``naive``: the series a hurried author writes (one atomic ADD COLUMN + UPDATE of every
  order, a plain CREATE INDEX, SET NOT NULL, a foreign key validated at once);
  ``naive-accepted``: the same declaring ``hazards_accepted`` (the gate's opt-out);
- ``safe``: the same end state written safely by hand; ``blocker``: ``safe`` while a
  long reader holds ``orders`` (8 s, then again), so lock waits time out and retry;
- ``helpers`` and ``blocker-helpers``: the same through the ``db`` helpers of issue 12
  and tbmigrate's default lock timeouts, when this checkout has them.

Measured, for the migration as a whole and for each step (its window taken from
tbmigrate's audit log): the workload's p50/p99/p99.9/max latency, the longest stall
(the longest time in which no transaction completed, across all clients), failed
transactions and transactions per second, with ratios to the baseline; the
migration's wall time, exit code and error, and whether anything INVALID was left.
Databases are named ``tblive_<pid>_...`` and dropped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(1, str(ROOT))

import live_scripts  # noqa: E402
from live_workload import Blocker  # noqa: E402
from run import machine  # noqa: E402

from migrator.redact import mask_url, mask_urls  # noqa: E402

SCENARIOS = ["baseline", "naive", "naive-accepted", "safe", "blocker", "helpers", "blocker-helpers"]
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_P99_RATIO = 1.5
TARGET_STALL_S = 1.0


# -- databases -------------------------------------------------------------------------
class Server:
    """The PostgreSQL server: this run's databases, ``tblive_<pid>_<name>``, all dropped
    by ``drop_all`` (called from ``finally``, so also on Ctrl-C or an error)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"tblive_{os.getpid()}"
        self.made: list[str] = []
        self.version_num = int(self.scalar("SHOW server_version_num"))
        self.version = str(self.scalar("SHOW server_version"))

    def connect(self, database: str | None = None, **kwargs: Any) -> Any:
        import psycopg

        url = self.url_of(database) if database else self.url
        return psycopg.connect(url, connect_timeout=10, **kwargs)

    def scalar(self, sql: str) -> Any:
        with self.connect(autocommit=True) as conn:
            return conn.execute(sql).fetchone()[0]

    def url_of(self, name: str) -> str:
        base, _, rest = self.url.partition("?")
        head = base.rsplit("/", 1)[0]
        return f"{head}/{name}" + (f"?{rest}" if rest else "")

    def create(self, suffix: str, template: str | None = None) -> str:
        name = f"{self.prefix}_{suffix}"
        sql = f'CREATE DATABASE "{name}"'
        if template:
            sql += f' TEMPLATE "{template}"'
            if self.version_num >= 150000:
                sql += " STRATEGY = FILE_COPY"  # WAL_LOG copies a big database block by block
        self.made.append(name)
        with self.connect(autocommit=True) as conn:
            conn.execute(sql)
        return name

    def checkpoint(self) -> None:
        """``CHECKPOINT`` when this role may (a superuser or pg_checkpoint); else nothing."""
        try:
            with self.connect(autocommit=True) as conn:
                conn.execute("CHECKPOINT")
        except Exception:  # a server where this role may not: go on without
            pass

    def drop(self, name: str) -> None:
        with self.connect(autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.made:
            self.made.remove(name)

    def drop_all(self) -> list[str]:
        failed = []
        for name in list(self.made):
            try:
                self.drop(name)
            except Exception as exc:
                failed.append(f"{name}: {exc.__class__.__name__}")
        return failed


SCHEMA = """
CREATE TABLE users (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    balance_cents BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE orders (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    qty NUMERIC(18, 8) NOT NULL,
    price NUMERIC(18, 2) NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE trades (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    order_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id),
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    qty NUMERIC(18, 8) NOT NULL,
    price NUMERIC(18, 2) NOT NULL,
    executed_at TIMESTAMPTZ NOT NULL,
    settled_at TIMESTAMPTZ
)
"""


def seed(server: Server, users: int, orders: int, trades: int) -> tuple[str, float]:
    """The template every scenario is copied from; returns its name and the seconds taken."""
    from live_workload import SYMBOLS

    started = time.monotonic()
    name = server.create("seed")
    symbols = "ARRAY[" + ", ".join(f"'{s}'" for s in SYMBOLS) + "]"
    n = len(SYMBOLS)
    step = max(orders // trades, 1)
    with server.connect(name, autocommit=True) as conn:
        for statement in SCHEMA.split(";"):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO users (id, name, created_at) "
            "SELECT i, 'user ' || i, now() - i * interval '1 minute' "
            f"FROM generate_series(1::bigint, {users}) AS i"
        )
        conn.execute(
            "INSERT INTO orders (id, user_id, symbol, side, qty, price, status, created_at, "
            "updated_at) "
            f"SELECT i, 1 + (i * 7919) % {users}, ({symbols})[1 + i % {n}], "
            "CASE WHEN i % 2 = 0 THEN 'buy' ELSE 'sell' END, (1 + i % 500) / 100.0, "
            "10 + i % 60000, "
            "CASE WHEN i % 10 = 0 THEN 'open' WHEN i % 10 < 8 THEN 'filled' "
            "ELSE 'cancelled' END, "
            f"now() - ({orders} - i) * interval '1 second', "
            f"now() - ({orders} - i) * interval '1 second' "
            f"FROM generate_series(1::bigint, {orders}) AS i"
        )
        conn.execute(
            "INSERT INTO trades (id, order_id, user_id, symbol, side, qty, price, executed_at, "
            "settled_at) "
            f"SELECT i, o, 1 + (o * 7919) % {users}, ({symbols})[1 + o % {n}], "
            "CASE WHEN o % 2 = 0 THEN 'buy' ELSE 'sell' END, (1 + o % 500) / 100.0, "
            f"10 + o % 60000, now() - ({trades} - i) * interval '3 seconds', NULL "
            f"FROM generate_series(1::bigint, {trades}) AS i, "
            f"LATERAL (SELECT 1 + ((i::bigint - 1) * {step}) % {orders} AS o) AS pick"
        )
        for table, rows in (("users", users), ("orders", orders), ("trades", trades)):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {rows})")
        conn.execute("CREATE INDEX orders_user_status ON orders (user_id, status)")
        conn.execute("CREATE INDEX trades_user_time ON trades (user_id, executed_at DESC)")
        conn.execute("VACUUM ANALYZE users")
        conn.execute("VACUUM ANALYZE orders")
        conn.execute("VACUUM ANALYZE trades")
    return name, time.monotonic() - started


# -- processes ---------------------------------------------------------------------------
_children: list[subprocess.Popen[Any]] = []


def spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    proc = subprocess.Popen(argv, **kwargs)
    _children.append(proc)
    return proc


def end_children() -> None:
    """Stop every process this run started (by its own pid), politely first."""
    for proc in _children:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
    deadline = time.monotonic() + 5
    for proc in _children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    _children.clear()


def tbmigrate_env(database_url: str, scripts: Path) -> dict[str, str]:
    """The environment of ``tbmigrate run``: this checkout first on the path, its
    built-in settings (not a caller's DJANGO_SETTINGS_MODULE, e.g. pytest's)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    for name in ("QA_DATABASE_URL", "PROD_DATABASE_URL", "SQLITE_DB_PATH"):
        env.pop(name, None)
    env["PYTHONPATH"] = str(ROOT) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    env["DATABASE_URL"] = database_url
    env["TBMIGRATE_SCRIPTS_DIR"] = str(scripts)
    return env


TBMIGRATE = [sys.executable, "-c", "from migrator.console import main; main()"]


# -- one scenario ------------------------------------------------------------------------
@dataclass
class Migration:
    scripts: int = 0
    argv: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    exit_code: int | None = None
    outcome: str = ""
    error: str = ""
    timed_out: bool = False
    steps: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    not_validated: list[str] = field(default_factory=list)
    end_state_missing: list[str] = field(default_factory=list)
    other_events: list[dict[str, Any]] = field(default_factory=list)  # run, validate, ...
    output_tail: str = ""

    @property
    def seconds(self) -> float:
        return round(self.ended - self.started, 3) if self.ended else 0.0


@dataclass
class Run:
    """What one scenario recorded: the workload's transactions and the migration."""

    scenario: str
    records: list[tuple[float, float, float, str, str]]  # sched, start, end, kind, error
    workload_start: float
    measure_start: float  # after the warm-up
    workload_end: float
    series: tuple[float, float]  # the migration's process (baseline: the same length)
    migration: Migration | None
    skipped: int = 0
    blocker_holds: list[tuple[float, float]] = field(default_factory=list)
    blocker_error: str = ""
    unavailable: str = ""


def write_scripts(scenario: str, folder: Path, args: argparse.Namespace) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if scenario == "naive":
        live_scripts.naive(folder)
    elif scenario == "naive-accepted":
        live_scripts.naive(folder, args.naive_hazards)
    elif scenario in ("safe", "blocker"):
        live_scripts.safe(folder, args.script_lock_timeout, args.batch_size, args.batch_pause)
    elif scenario in ("helpers", "blocker-helpers"):
        live_scripts.helpers(
            folder, args.target_batch_seconds, args.batch_size, args.max_rows_per_second
        )


def run_scenario(
    scenario: str, server: Server, template: str, workdir: Path, args: argparse.Namespace
) -> Run:
    if scenario in ("helpers", "blocker-helpers"):
        ok, why = live_scripts.available_helpers()
        if not ok:
            return Run(scenario, [], 0, 0, 0, (0, 0), None, unavailable=why)
    database = server.create(scenario.replace("-", "_"), template=template)
    # Each scenario starts with no dirty buffers of the one before (its 1.5M-row update
    # would otherwise be flushed by a checkpoint during this one's window).
    server.checkpoint()
    url = server.url_of(database)
    folder = workdir / scenario
    scripts = folder / "scripts"
    write_scripts(scenario if scenario != "baseline" else "", scripts, args)
    folder.mkdir(parents=True, exist_ok=True)

    start = time.time() + args.client_start
    hard_end = start + args.warmup + args.max_migration_seconds + args.baseline_seconds + 60
    outs = [folder / f"client{i}.tsv" for i in range(args.clients)]
    clients = [
        spawn(
            [
                sys.executable,
                str(BENCH / "live_workload.py"),
                "--url",
                url,
                "--out",
                str(out),
                "--seed",
                str(i + 1),
                "--rate",
                str(args.rate / args.clients),
                "--start",
                str(start),
                "--deadline",
                str(hard_end),
                "--timeout",
                str(args.client_timeout),
                "--users",
                str(args.users),
                "--orders",
                str(args.orders),
                "--trades",
                str(args.trades),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(folder / f"client{i}.err", "w"),  # noqa: SIM115
        )
        for i, out in enumerate(outs)
    ]
    blocker = None
    measure_start = start + args.warmup
    migration = None
    try:
        if scenario.startswith("blocker"):
            # Its first read begins a second before the migration does, so the
            # migration's first lock request always waits; then every hold + gap seconds.
            blocker = Blocker(url, args.blocker_hold, args.blocker_gap)
            _sleep_until(max(start, measure_start - 1.0))
            blocker.start()
        _sleep_until(measure_start)
        if scenario == "baseline":
            series = (measure_start, measure_start + args.baseline_seconds)
            _sleep_until(series[1])
        else:
            migration = migrate(url, scripts, folder, args)
            series = (migration.started, migration.ended)
        _sleep_until(series[1] + args.tail)
    except BaseException:
        end_children()  # Ctrl-C or an error: stop now, without waiting for anyone
        if blocker is not None:
            blocker.stop()
        raise
    workload_end = time.time()
    for proc in clients:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGUSR1)
    if blocker is not None:
        blocker.stop()
    for proc in clients:
        try:
            proc.wait(timeout=args.client_timeout + 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if migration is not None:
        inspect_database(server, database, migration)
    server.drop(database)
    records, skipped = read_records(outs, folder)
    return Run(
        scenario,
        records,
        start,
        measure_start,
        workload_end,
        series,
        migration,
        skipped,
        blocker.holds if blocker else [],
        blocker.error if blocker else "",
    )


def _sleep_until(when: float) -> None:
    while (left := when - time.time()) > 0:
        time.sleep(min(left, 0.5))


def migrate(url: str, scripts: Path, folder: Path, args: argparse.Namespace) -> Migration:
    """``tbmigrate run`` as a real process; stopped (SIGTERM) past --max-migration-seconds."""
    argv = [*TBMIGRATE, "run", "--no-input", *shlex.split(args.tb_args)]
    migration = Migration(scripts=len(list(scripts.glob("*.py"))), argv=argv[3:])
    log = folder / "tbmigrate.out"
    with open(log, "w") as out:
        migration.started = time.time()
        proc = spawn(
            argv, cwd=folder, env=tbmigrate_env(url, scripts), stdout=out, stderr=subprocess.STDOUT
        )
        try:
            migration.exit_code = proc.wait(timeout=args.max_migration_seconds)
        except subprocess.TimeoutExpired:
            migration.timed_out = True
            proc.terminate()
            try:
                migration.exit_code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                migration.exit_code = proc.wait()
        migration.ended = time.time()
    text = log.read_text(errors="replace")
    migration.output_tail = mask_urls(text[-3000:])
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    failing = [line for line in lines if "failed" in line or "rror" in line or "refus" in line]
    if migration.exit_code:
        migration.error = mask_urls((failing or lines or [""])[-1])[:400]
    return migration


def inspect_database(server: Server, database: str, migration: Migration) -> None:
    """The steps' windows from the audit log, INVALID leftovers, the end state."""
    with server.connect(database, autocommit=True) as conn:
        has_audit = conn.execute("SELECT to_regclass('tbmigrate_audit_event')").fetchone()[0]
        events = []
        if has_audit:
            rows = conn.execute(
                "SELECT action, version, name, outcome, timestamp, duration_ms, error, details "
                "FROM tbmigrate_audit_event ORDER BY timestamp, id"
            ).fetchall()
            events = [row[1:] for row in rows if row[0] == "apply"]
            migration.other_events = [
                {"action": row[0], "outcome": row[3], "error": mask_urls(row[6] or "")[:400]}
                for row in rows
                if row[0] != "apply"
            ]
        migration.invalid = [
            row[0]
            for row in conn.execute(
                "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid"
            ).fetchall()
        ]
        migration.not_validated = [
            row[0]
            for row in conn.execute(
                "SELECT conrelid::regclass::text || '.' || conname FROM pg_constraint "
                "WHERE NOT convalidated"
            ).fetchall()
        ]
        migration.end_state_missing = live_scripts.end_state(conn)
    steps: dict[str, dict[str, Any]] = {}
    for version, name, outcome, stamp, duration_ms, error, details in events:
        step = steps.setdefault(version, {"version": version, "name": name})
        when = stamp.timestamp()
        if outcome == "started":
            step["started_event"] = when
            continue
        step["outcome"] = outcome
        step["ended"] = when
        step["duration_ms"] = duration_ms
        step["error"] = mask_urls(error or "")[:400]
        details = details or {}
        step["attempts"] = details.get("attempts", 1)
        if details.get("lock_waits"):
            step["lock_waits"] = details["lock_waits"]
    for step in steps.values():
        ended = step.get("ended", migration.ended)
        begun = [step["started_event"]] if "started_event" in step else []
        if step.get("duration_ms") is not None:
            begun.append(ended - step["duration_ms"] / 1000)
        step["started"] = max(min(begun or [migration.started]), migration.started)
        step["ended"] = ended
        step.setdefault("outcome", "interrupted (no end event)")
        step.pop("started_event", None)
    migration.steps = sorted(steps.values(), key=lambda s: s["started"])
    applied = [s for s in migration.steps if s["outcome"] == "success"]
    began = [s for s in migration.steps if s["outcome"] != "refused"]
    untouched = set(live_scripts.PARTS) <= set(migration.end_state_missing)
    if migration.timed_out:
        migration.outcome = "timed out: stopped by the benchmark"
    elif migration.exit_code == 0 and len(applied) == migration.scripts:
        migration.outcome = "success"
    elif migration.exit_code and not began and untouched:
        # No step started (no apply event but a refusal) and the schema is as seeded.
        migration.outcome = "refused before its first statement"
    elif migration.exit_code:
        failed = next((s for s in migration.steps if s["outcome"] != "success"), None)
        where = f" at {failed['version']} {failed['name']}" if failed else ""
        migration.outcome = f"failed{where}"
    else:
        migration.outcome = f"exit 0 with {len(applied)} of {migration.scripts} steps applied"


def read_records(
    outs: list[Path], folder: Path
) -> tuple[list[tuple[float, float, float, str, str]], int]:
    records = []
    skipped = 0
    for out in outs:
        if not out.exists():
            err = (folder / (out.stem + ".err")).read_text(errors="replace")[-500:]
            raise SystemExit(f"a workload client wrote nothing: {mask_urls(err)}")
        for line in out.read_text().splitlines():
            if line.startswith("#skipped "):
                skipped += int(line.split()[1])
                continue
            sched, start, end, kind, error = line.split("\t", 4)
            records.append((float(sched), float(start), float(end), kind, error))
    records.sort(key=lambda r: r[2])
    return records, skipped


# -- metrics -----------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Nearest rank on sorted ``values``."""
    if not values:
        return 0.0
    rank = max(int(-(-q * len(values) // 1)), 1)  # ceil(q * n)
    return values[min(rank, len(values)) - 1]


def window_metrics(run: Run, a: float, b: float) -> dict[str, Any]:
    """The workload in [a, b]: the transactions that started in it (one that waited on a
    step's lock belongs to that step), the completions in it, and its longest stall."""
    inside = [r for r in run.records if a <= r[1] < b]
    latencies = sorted((r[2] - r[1]) * 1000 for r in inside)
    done = sum(1 for r in run.records if not r[4] and a <= r[2] <= b)
    failed = [r for r in inside if r[4]]
    stall, at = longest_stall(run, a, b)
    errors: dict[str, int] = {}
    for r in failed:
        errors[r[4][:120]] = errors.get(r[4][:120], 0) + 1
    return {
        "seconds": round(b - a, 3),
        "transactions": len(inside),
        "tps": round(done / max(b - a, 1e-9), 1),
        "failed": len(failed),
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5]),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "p999_ms": round(percentile(latencies, 0.999), 2),
        "max_ms": round(latencies[-1], 2) if latencies else 0.0,
        "stall_s": round(stall, 3),
        "stall_at": round(at - run.workload_start, 3),
    }


def longest_stall(run: Run, a: float, b: float) -> tuple[float, float]:
    """The longest part of [a, b] in which no transaction completed successfully, on any
    client, and where it began.  [a, b] cuts the intervals between completions, so a
    stall is the step's own: the one that goes on after its commit is not counted again
    in the next step."""
    points = sorted(r[2] for r in run.records if not r[4] and a < r[2] < b)
    best, at = 0.0, a
    for left, right in itertools.pairwise([a, *points, b]):
        if right - left > best:
            best, at = right - left, left
    return best, at


def summarize(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {"scenario": run.scenario}
    if run.unavailable:
        out["unavailable"] = run.unavailable
        return out
    out["series"] = window_metrics(run, *run.series)
    out["after_warmup"] = window_metrics(run, run.measure_start, run.workload_end)
    out["workload"] = {
        "transactions": len(run.records),
        "skipped_slots": run.skipped,
        "by_kind": _by_kind(run.records),
    }
    if run.migration is not None:
        m = run.migration
        out["migration"] = {
            **{k: v for k, v in asdict(m).items() if k not in ("steps", "started", "ended")},
            "seconds": m.seconds,
            "started_at": round(m.started - run.workload_start, 3),
        }
        out["steps"] = [
            {
                **{k: v for k, v in step.items() if k not in ("started", "ended")},
                "window_s": round(step["ended"] - step["started"], 3),
                "started_at": round(step["started"] - run.workload_start, 3),
                **window_metrics(run, step["started"], step["ended"]),
            }
            for step in m.steps
        ]
    if run.blocker_holds or run.blocker_error:
        out["blocker"] = {
            "holds": [
                [round(a - run.workload_start, 2), round(b - run.workload_start, 2)]
                for a, b in run.blocker_holds
            ],
            "error": run.blocker_error,
        }
    return out


def _by_kind(records: list[tuple[float, float, float, str, str]]) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for r in records:
        counts = found.setdefault(r[3], {"ok": 0, "failed": 0})
        counts["failed" if r[4] else "ok"] += 1
    return found


def add_ratios(report: dict[str, Any]) -> None:
    base = report["scenarios"].get("baseline", {}).get("series")
    if not base:
        return
    for result in report["scenarios"].values():
        rows = [result.get("series"), result.get("after_warmup"), *result.get("steps", [])]
        for row in rows:
            if not row:
                continue
            row["p99_x"] = round(row["p99_ms"] / base["p99_ms"], 2) if base["p99_ms"] else None
            row["stall_x"] = round(row["stall_s"] / base["stall_s"], 2) if base["stall_s"] else None


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, met or missed, from this run's numbers."""
    scenarios = report["scenarios"]
    rows: list[dict[str, Any]] = []

    def latency(name: str, note: str = "") -> None:
        result = scenarios.get(name)
        if result is None:
            return
        label = f"{name}{note}"
        if "unavailable" in result:
            for what in ("p99", "stall"):
                rows.append({"target": f"{label}: {what}", "status": "not measured",
                             "value": result["unavailable"]})  # fmt: skip
            return
        series = result["series"]
        ratio = series.get("p99_x")
        rows.append(
            {
                "target": f"{label}: p99 <= {TARGET_P99_RATIO:g}x baseline",
                "status": "met" if ratio is not None and ratio <= TARGET_P99_RATIO else "missed",
                "value": f"{ratio}x ({series['p99_ms']} ms)" if ratio is not None else "none",
            }
        )
        rows.append(
            {
                "target": f"{label}: longest stall <= {TARGET_STALL_S:g} s",
                "status": "met" if series["stall_s"] <= TARGET_STALL_S else "missed",
                "value": f"{series['stall_s']} s",
            }
        )
        migration = result["migration"]
        rows.append(
            {
                "target": f"{label}: migration succeeds",
                "status": "met" if migration["outcome"] == "success" else "missed",
                "value": migration["outcome"],
            }
        )

    latency("helpers")
    latency("blocker-helpers")
    left = [
        f"{name}: {', '.join(r['migration']['invalid'])}"
        for name, r in scenarios.items()
        if r.get("migration", {}).get("invalid")
    ]
    ran = [r for r in scenarios.values() if "migration" in r]
    if ran:
        rows.append(
            {
                "target": "nothing INVALID left behind (every scenario)",
                "status": "missed" if left else "met",
                "value": "; ".join(left) or "none",
            }
        )
    naive = scenarios.get("naive")
    if naive and "migration" in naive:
        outcome = naive["migration"]["outcome"]
        rows.append(
            {
                "target": "naive series refused by the gate before its first statement",
                "status": "met" if outcome.startswith("refused") else "missed",
                "value": outcome,
            }
        )
    # The hand-written safe series, against the same bars, for reference.
    latency("safe", " (by hand, for reference)")
    latency("blocker", " (by hand, for reference)")
    return rows


# -- reporting ---------------------------------------------------------------------------
COLUMNS = [
    ("s", "seconds", "{:.1f}"),
    ("txns", "transactions", "{}"),
    ("tps", "tps", "{:.0f}"),
    ("failed", "failed", "{}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("p99.9 ms", "p999_ms", "{:.1f}"),
    ("max ms", "max_ms", "{:.0f}"),
    ("stall s", "stall_s", "{:.2f}"),
    ("p99/base", "p99_x", "{:.2f}"),
    ("stall/base", "stall_x", "{:.2f}"),
]


def table_rows(report: dict[str, Any]) -> list[tuple[str, str, dict[str, Any] | None, str]]:
    """(scenario, window label, metrics, note) for every row of the tables."""
    rows: list[tuple[str, str, dict[str, Any] | None, str]] = []
    for name, result in report["scenarios"].items():
        if "unavailable" in result:
            rows.append((name, "", None, f"not measured: {result['unavailable']}"))
            continue
        migration = result.get("migration")
        label = "whole series" if migration else f"{result['series']['seconds']:.0f} s of trading"
        rows.append((name, label, result["series"], ""))
        for step in result.get("steps", []):
            tries = f", {step['attempts']} attempts" if step.get("attempts", 1) > 1 else ""
            note = "" if step["outcome"] == "success" else step["outcome"]
            rows.append(("", f"{step['version']} {step['name']}{tries}", step, note))
    return rows


LATENCIES = ("p50_ms", "p99_ms", "p999_ms", "max_ms", "p99_x")


def _cell(metrics: dict[str, Any], key: str, fmt: str) -> str:
    """Blank where the number would mean nothing: latencies of a window in which no
    transaction started, a rate over less than half a second."""
    value = metrics.get(key)
    if value is None or (key in LATENCIES and not metrics.get("transactions")):
        return ""
    if key == "tps" and metrics.get("seconds", 0) < 0.5:
        return ""
    return fmt.format(value)


def print_report(report: dict[str, Any]) -> None:
    print()
    head = f"{'scenario':<16} {'window':<38}" + "".join(f"{h:>11}" for h, _, _ in COLUMNS)
    print(head)
    for name, label, metrics, note in table_rows(report):
        line = f"{name:<16} {label[:38]:<38}"
        if metrics is not None:
            line += "".join(f"{_cell(metrics, k, fmt):>11}" for _, k, fmt in COLUMNS)
        print(line + (f"  {note}" if note else ""))
    print()
    for name, result in report["scenarios"].items():
        migration = result.get("migration")
        if not migration:
            continue
        print(f"{name}: {migration_line(migration)}")
        if migration.get("error"):
            print(f"    error: {migration['error']}")
        blocker = result.get("blocker")
        if blocker and blocker.get("error"):
            print(f"    blocker: {blocker['error']}")
    print("\ntargets:")
    for row in report["targets"]:
        print(f"  {row['status'].upper():<13} {row['target']}: {row['value']}")


def migration_line(migration: dict[str, Any]) -> str:
    left = ", ".join(migration["invalid"]) or "nothing"
    line = (
        f"{migration['outcome']} (exit {migration['exit_code']}) in {migration['seconds']:.1f} s; "
        f"INVALID left: {left}"
    )
    if migration.get("not_validated"):
        line += f"; NOT VALID constraints: {', '.join(migration['not_validated'])}"
    if migration["outcome"] == "success" and migration.get("end_state_missing"):
        line += f"; end state missing: {', '.join(migration['end_state_missing'])}"
    return line


def markdown(report: dict[str, Any]) -> str:
    """The README's tables from a results file."""
    config = report["config"]
    lines = [
        f"Measured {report['date']} on {report['machine']}; PostgreSQL {report['postgresql']}, "
        f"python {report['python']}. {config['clients']} clients at {config['rate']:g} "
        f"transactions/s on {config['orders']:,} orders, {config['trades']:,} trades and "
        f"{config['users']:,} users; tbmigrate options: "
        + (f"`{config['tb_args']}`" if config["tb_args"] else "the defaults")
        + ".",
        "",
        "| scenario | window | s | tps | failed | p50 ms | p99 ms | p99.9 ms | max ms "
        "| stall s | p99 / base | stall / base |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    keys = [c for c in COLUMNS if c[1] != "transactions"]
    for name, label, metrics, note in table_rows(report):
        if metrics is None:
            lines.append(f"| {name} | {note} |" + " |" * len(keys))
            continue
        cells = " | ".join(_cell(metrics, k, fmt) for _, k, fmt in keys)
        label = label + (f" ({note})" if note else "")
        lines.append(f"| {f'**{name}**' if name else ''} | {label} | {cells} |")
    lines += ["", "| scenario | migration |", "|---|---|"]
    for name, result in report["scenarios"].items():
        migration = result.get("migration")
        if migration:
            text = migration_line(migration)
            if migration.get("error"):
                text += f"; `{migration['error'].replace('|', '/')}`"
            lines.append(f"| {name} | {text} |")
    lines += ["", "| target | status | value |", "|---|---|---|"]
    for row in report["targets"]:
        mark = {"met": "met ✓", "missed": "**missed** ✗"}.get(row["status"], row["status"])
        lines.append(f"| {row['target']} | {mark} | {row['value']} |")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--scenario", action="append", choices=SCENARIOS, help="repeatable; default: all")
    add("--quick", action="store_true", help="small and short: 200k orders, short windows")
    add(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL),
        help="a PostgreSQL server to create throwaway databases on (env BENCH_PG_URL)",
    )
    add("--tb-args", default="", help='options for `tbmigrate run`, e.g. "--pg-lock-timeout 0.2"')
    add("--clients", type=int, default=6, help="workload processes (default 6)")
    add("--rate", type=float, default=400.0, help="transactions/s, all clients (default 400)")
    add("--users", type=int, help="default 20,000 (--quick 5,000)")
    add("--orders", type=int, help="default 1,500,000 (--quick 200,000)")
    add("--trades", type=int, help="default 500,000 (--quick 70,000)")
    add("--warmup", type=float, help="seconds of trading before the migration (default 5)")
    add("--tail", type=float, help="seconds of trading after it (default 5)")
    add("--baseline-seconds", type=float, help="the baseline's window (default 30)")
    add("--max-migration-seconds", type=float, default=240.0, help="then SIGTERM (default 240)")
    add("--client-timeout", type=float, default=60.0, help="clients' statement_timeout (60 s)")
    add("--client-start", type=float, default=2.0, help=argparse.SUPPRESS)
    add(
        "--script-lock-timeout",
        type=float,
        default=0.5,
        help="lock_timeout the hand-written safe series sets (0: tbmigrate's; default 0.5)",
    )
    add("--batch-size", type=int, default=10_000, help="safe series' batched_update batch")
    add("--batch-pause", type=float, default=0.05, help="safe series' pause between batches")
    add(
        "--target-batch-seconds",
        type=float,
        default=None,
        help="helpers: batched_update's target batch duration (default: tbmigrate's own)",
    )
    add(
        "--max-rows-per-second",
        type=float,
        default=None,
        help="helpers: batched_update's rows-per-second ceiling (default: none)",
    )
    add("--blocker-hold", type=float, default=8.0, help="the long reader's hold, s (8)")
    add("--blocker-gap", type=float, default=1.0, help="and its pause between reads, s (1)")
    add(
        "--naive-hazards",
        type=json.loads,
        default=live_scripts.NAIVE_HAZARDS,
        help="naive-accepted's hazards_accepted per version, JSON",
    )
    add("--json", default=str(BENCH / "results" / "live.json"), help="results file")
    add("--records", metavar="DIR", help="also keep every transaction, <scenario>.tsv in DIR")
    add("--markdown", metavar="FILE", help="print the README tables of a results file; run nothing")
    args = parser.parse_args(argv)
    sizes = {
        "users": (20_000, 5_000),
        "orders": (1_500_000, 200_000),
        "trades": (500_000, 70_000),
        "warmup": (5.0, 3.0),
        "tail": (5.0, 3.0),
        "baseline_seconds": (30.0, 10.0),
    }
    for name, (full, quick) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.trades > args.orders:
        parser.error("--trades must not exceed --orders (each trade belongs to an order)")
    return args


def main(args: argparse.Namespace) -> int:
    scenarios = [s for s in SCENARIOS if s in (args.scenario or SCENARIOS)]
    if "baseline" not in scenarios:
        scenarios.insert(0, "baseline")  # ratios need a baseline of this run
    import psycopg

    try:
        server = Server(args.pg_url)
    except psycopg.Error as exc:
        first = mask_urls(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        print(f"cannot use PostgreSQL at {mask_url(args.pg_url)}: {first}", file=sys.stderr)
        return 1
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "postgresql": server.version,
        "python": sys.version.split()[0],
        "server": mask_url(args.pg_url),
        "databases_prefix": server.prefix,
        "config": {
            k: v
            for k, v in vars(args).items()
            if k not in ("pg_url", "json", "markdown", "records")
        },
        "scenarios": {},
    }
    print(f"{report['date']} | {report['machine']} | PostgreSQL {server.version}")
    print(
        f"server {report['server']}; {args.clients} clients at {args.rate:g} tx/s; "
        f"{args.orders:,} orders, {args.trades:,} trades, {args.users:,} users; "
        f"scenarios: {', '.join(scenarios)}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="tblive-"))
    began = time.monotonic()
    try:
        template, seconds = seed(server, args.users, args.orders, args.trades)
        report["seed_seconds"] = round(seconds, 1)
        print(f"seeded {template} in {seconds:.1f} s")
        for scenario in scenarios:
            run = run_scenario(scenario, server, template, workdir, args)
            if args.records and run.records:
                keep_records(run, Path(args.records))
            result = summarize(run)
            report["scenarios"][scenario] = result
            print(progress_line(result))
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up
        end_children()
        failed = server.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)
        if failed:
            print(f"could not drop: {', '.join(failed)}", file=sys.stderr)
    report["seconds"] = round(time.monotonic() - began, 1)
    add_ratios(report)
    report["targets"] = targets(report)
    print_report(report)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{report['seconds']:.0f} s in all; written: {out}")
    return 0


def keep_records(run: Run, folder: Path) -> None:
    """Every transaction of a scenario, merged, in time order (times from the workload's
    start; the migration's and its steps' windows in the header)."""
    folder.mkdir(parents=True, exist_ok=True)
    zero = run.workload_start
    with open(folder / f"{run.scenario}.tsv", "w") as out:
        out.write(f"# workload from 0 to {run.workload_end - zero:.3f} s, measured from ")
        out.write(f"{run.measure_start - zero:.3f} s; series {run.series[0] - zero:.3f} ")
        out.write(f"to {run.series[1] - zero:.3f} s\n")
        for step in run.migration.steps if run.migration else []:
            out.write(
                f"# step {step['version']} {step['name']} {step['outcome']}: "
                f"{step['started'] - zero:.3f} to {step['ended'] - zero:.3f} s\n"
            )
        out.write("scheduled\tstarted\tended\tkind\terror\n")
        for sched, start, end, kind, error in run.records:
            out.write(
                f"{sched - zero:.6f}\t{start - zero:.6f}\t{end - zero:.6f}\t{kind}\t{error}\n"
            )


def progress_line(result: dict[str, Any]) -> str:
    name = result["scenario"]
    if "unavailable" in result:
        return f"  {name}: not measured ({result['unavailable']})"
    series = result["series"]
    line = (
        f"  {name}: p99 {series['p99_ms']:.1f} ms, stall {series['stall_s']:.2f} s, "
        f"{series['failed']} failed"
    )
    migration = result.get("migration")
    if migration:
        line += f"; {migration['outcome']} in {migration['seconds']:.1f} s"
    return line


def _stop(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.markdown:
        print(markdown(json.loads(Path(ARGS.markdown).read_text())))
        sys.exit(0)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop)  # even where the shell left SIGINT ignored (a & job)
    try:
        sys.exit(main(ARGS))
    except KeyboardInterrupt:
        print("\nstopped; this run's databases were dropped", file=sys.stderr)
        sys.exit(130)
