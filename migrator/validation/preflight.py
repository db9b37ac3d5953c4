"""``validate migration VERSION``: will ``tbmigrate run --to VERSION`` go well, right now?

It answers from the live database, changing nothing: the version is there, loads
and is pending; the server answers; there is room on disk; nobody holds what the
migration needs; and the ``up`` itself runs, in a transaction that is always rolled
back (``dryrun.py``), whose statements then go through squawk on PostgreSQL
(``lint.py``).  The dry run comes first because it tells the other checks which
tables the migration touches.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connections

from migrator import conf, formatting, history, locking, planner, scripts, targets
from migrator.errors import ScriptError, UsageError
from migrator.planner import MigrationState
from migrator.scripts import Script
from migrator.validation import common, hazards, phases
from migrator.validation.base import FAIL, CheckResult, Report, failed, passed, warned
from migrator.validation.dryrun import LOCK_MODES, DryRun, dry_run
from migrator.validation.lint import lint
from migrator.versions import Version

# A lock this strong (or stronger) held by someone else blocks DDL for as long as it is
# held, not for a moment: ShareUpdateExclusiveLock is VACUUM, CREATE INDEX CONCURRENTLY...
STRONG_LOCK = LOCK_MODES.index("ShareUpdateExclusiveLock")


def validate_migration(alias: str, scripts_dir: Path, version_text: str) -> Report:
    version = parse_version(version_text, "validate migration")
    files = scripts.script_files(scripts_dir)
    report = Report("migration", targets.describe(alias), targets.vendor(alias), str(version))
    reached = common.connectivity(alias)
    records = history.load(alias) if reached.level != FAIL else []
    if not any(_file_version(p) == version for p in files) and not any(
        r.version == version for r in records
    ):
        raise UsageError(
            f"validate migration: there is no migration {version} in {scripts.shown(scripts_dir)}"
            " (see `tbmigrate status`, or create it with `tbmigrate create`)"
        )
    report.add(reached)
    if not report.ok:
        return report
    loaded = common.load_each(scripts_dir)
    report.add(common.scripts_check(loaded))
    states = planner.states(loaded.scripts, records)
    target = next((s for s in states if s.version == version), None)
    report.add(_target(version, target, loaded))
    problems = planner.problems(states)
    if problems:
        report.add(
            failed(
                "history",
                "run refuses to start: " + "; ".join(problems) + " (see `tbmigrate status`)",
                problems,
            )
        )
    if target is None or target.state != planner.PENDING or target.script is None:
        return report  # nothing to dry-run: the target check says why
    report.add(_order(states, target))
    steps = [
        s.script
        for s in states
        if s.state == planner.PENDING and s.version <= version and s.script is not None
    ]
    connection = connections[alias]
    with common.bounded_lock_waits(alias):
        sessions = common.guarded("connections", lambda: _sessions(connection))
        write_lock = sqlite_write_lock(alias)
        run: DryRun | None = None
        if write_lock is not None and write_lock.level == FAIL:
            dry = warned("dry_run", "not run: another process holds the SQLite write lock")
        else:
            run, dry = _dry_run(alias, steps)
        # Tables the run touched; None when it could not even read the schema (a lock).
        touched = None if run is not None and run.before is None else (run.tables if run else [])
        report.add(common.guarded("disk_space", lambda: disk_space(alias, touched or [])))
        report.add(sessions)
        report.add(_migration_lock(alias))
        if write_lock is not None:
            report.add(write_lock)
        else:
            report.add(common.guarded("locks", lambda: _pg_locks(connection, touched)))
        report.add(dry)
        if connection.vendor == "postgresql" and run is not None and run.statements:
            report.add(lint(_by_step(connection, run, steps), _pg_version(connection)))
        report.add(common.guarded("hazards", lambda: _hazards(alias, states, steps)))
    return report


def _hazards(alias: str, states: list[MigrationState], steps: list[Script]) -> list[CheckResult]:
    """The lock-hazard gate's verdict, the one ``run --to VERSION`` reaches
    (``hazards.py``), and the expand/contract check (``phases.py``), from one rehearsal
    of the steps on a scratch database when either needs one."""
    applied = [s.script for s in states if s.is_applied and s.script is not None]
    track = phases.worth_checking(steps)
    verdict = hazards.assess(alias, steps, lambda: applied, track=track)
    results = verdict.checks()
    if track:
        results.append(phases.check(verdict.rehearsal, verdict.unseen))
    else:
        results.append(phases.check(None))
    return results


def parse_version(text: str, what: str) -> Version:
    try:
        return Version.parse(text)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None


def _file_version(path: Path) -> Version | None:
    try:
        return scripts.parse_file_name(path)[0]
    except ScriptError:
        return None


# -- the version itself ----------------------------------------------------------------
def _target(version: Version, target: MigrationState | None, loaded: common.Loaded) -> Any:
    if target is None or (target.script is None and target.record is None):
        broken = [p for p in loaded.problems if f"-{version}-" in p or f" {version}" in p]
        return failed(
            "target",
            f"{version} cannot be loaded: " + "; ".join(broken or ["see the scripts check"]),
        )
    record = target.record
    if record is not None and record.status == history.FAILED:
        return failed(
            "target",
            f"{target.label} failed part-way on {record.applied_at:%Y-%m-%d %H:%M} "
            f"({record.error}); clean up what it left, then `tbmigrate repair {version}`",
        )
    if record is not None:
        return failed(
            "target",
            f"{target.label} is already applied (on {record.applied_at:%Y-%m-%d %H:%M} UTC by "
            f"{record.applied_by or 'unknown'}); to apply it again roll it back first "
            f"(`tbmigrate rollback {version}`), or give a new change a new version",
        )
    assert target.script is not None
    results = [passed("target", f"{target.label} loads and is not applied")]
    if target.script.down is None:
        results.append(
            warned(
                "reversible",
                f"{target.label} has no down(): once applied it cannot be rolled back",
            )
        )
    return results


def _order(states: list[MigrationState], target: MigrationState) -> CheckResult:
    if target.out_of_order:
        newest = max(s.version for s in states if s.is_applied)
        return failed(
            "order",
            f"{target.version} is older than the applied {newest}: `tbmigrate run` refuses it "
            "unless --out-of-order, and databases built from scratch will apply it before "
            f"{newest} (give it a version above {newest})",
        )
    lower = [s for s in states if s.version < target.version and s.state == planner.PENDING]
    if lower:
        return warned(
            "order",
            f"{len(lower)} lower version(s) not applied yet: {common.labels(lower)}; "
            f"`tbmigrate run --to {target.version}` applies them first (the dry run includes them)",
            [str(s.version) for s in lower],
        )
    applied = sum(1 for s in states if s.version < target.version and s.is_applied)
    return passed("order", f"every lower version is applied ({applied})")


# -- dry run ---------------------------------------------------------------------------
def _dry_run(alias: str, steps: list[Script]) -> tuple[DryRun | None, CheckResult]:
    atomic: list[Script] = []
    for script in steps:
        if not script.atomic:
            break
        atomic.append(script)
    left_out = steps[len(atomic) :]
    if not atomic:
        return None, warned(
            "dry_run",
            f"not run: {left_out[0].label} has atomic = False, so it runs outside a transaction "
            "and cannot be tried and rolled back; test it on a copy of the database",
        )
    run = dry_run(alias, [(s.label, s.up) for s in atomic], names_only=True)
    labels = common.labels(atomic)
    details = {
        "steps": [s.label for s in atomic],
        "statement_count": run.statement_count,
        "statements": run.statements,
        "tables": run.tables,
        "locks": run.locks,
        "error": run.error,
        "not_run": [s.label for s in left_out],
    }
    if run.lock_timeout:
        return run, failed(
            "dry_run",
            f"{run.failed_step or 'reading the schema'} waited more than "
            f"{conf.get('PREFLIGHT_LOCK_TIMEOUT'):g} s for a "
            f"lock and gave up ({run.error}); the migration would wait there too, and traffic "
            "would queue behind it: see locks, and try again when the lock is released",
            details,
        )
    if not run.ok:
        return run, failed(
            "dry_run",
            f"{run.failed_step} fails: {run.error} (rolled back: nothing changed); fix the script "
            "and validate again",
            details,
        )
    new_tables = sorted((run.after.tables if run.after else set()) - run.before.tables)  # type: ignore[union-attr]
    parts = [f"{run.statement_count} statement(s)"]
    if run.tables:
        parts.append("touch " + ", ".join(run.tables))
    if new_tables:
        parts.append("create " + ", ".join(new_tables))
    message = f"{labels}: " + "; ".join(parts) + "; rolled back"
    if left_out:
        return run, warned(
            "dry_run",
            message + f"; not run: {common.labels(left_out)} (atomic = False, cannot be rolled "
            "back)",
            details,
        )
    return run, passed("dry_run", message, details)


def _by_step(
    connection: Any, run: DryRun, steps: list[Script]
) -> list[tuple[str, bool, list[str]]]:
    """The dry run's statements per script, parameters bound, for squawk."""
    atomic = {s.label: s.atomic for s in steps}
    grouped: dict[str, list[str]] = {}
    for entry in run.statements:
        sql = entry["sql"]
        params = entry.get("params")
        if params:
            with contextlib.suppress(Exception):
                sql = connection.ops.compose_sql(sql, params)
        grouped.setdefault(entry.get("step", ""), []).append(sql)
    return [(label, atomic.get(label, True), sqls) for label, sqls in grouped.items()]


def _pg_version(connection: Any) -> str | None:
    with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return str(cursor.fetchone()[0]).split()[0]
    return None


# -- disk space ------------------------------------------------------------------------
def disk_space(alias: str, touched: list[str]) -> CheckResult:
    """Room for the worst case: every touched table rewritten (SQLite: the whole file)."""
    connection = connections[alias]
    if connection.vendor == "sqlite":
        path = common.sqlite_file(alias)
        if path is None:
            return passed("disk_space", "in-memory database: no disk involved")
        size = sum(
            p.stat().st_size
            for p in (path, Path(f"{path}-wal"), Path(f"{path}-journal"))
            if p.exists()
        )
        free = shutil.disk_usage(path.parent).free
        return _judge(free, size, f"the database file is {formatting.size(size)}", str(path.parent))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        db_size = int(cursor.fetchone()[0])
    need, unknown = 0, []
    for table in touched:
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_total_relation_size(%s::regclass)",
                    [connection.ops.quote_name(table)],
                )
                need += int(cursor.fetchone()[0] or 0)
        except DatabaseError:  # locked by another session (see locks): size it as unknown
            unknown.append(table)
    what = f"the database is {formatting.size(db_size)}" + (
        f", the touched tables {formatting.size(need)}" if touched else ""
    )
    if unknown:
        what += f" ({', '.join(unknown)} not sized: locked)"
    host = str(connection.settings_dict.get("HOST") or "")
    if host and not host.startswith("/") and host not in ("localhost", "127.0.0.1", "::1"):
        return warned(
            "disk_space",
            f"{what}; free space not measured: the server ({host}) is not this machine, so "
            "check its disk where the data directory lives (a table rewrite needs about the "
            "table's size again)",
            {"database_bytes": db_size, "touched_bytes": need},
        )
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW data_directory")
            data_directory = str(cursor.fetchone()[0])
    except DatabaseError:
        return warned(
            "disk_space",
            f"{what}; free space not measured: reading data_directory needs a superuser or "
            "the pg_read_all_settings role (GRANT pg_read_all_settings TO the user)",
            {"database_bytes": db_size, "touched_bytes": need},
        )
    try:
        free = shutil.disk_usage(data_directory).free
    except OSError as exc:
        return warned(
            "disk_space",
            f"{what}; free space not measured: the data directory {data_directory} is not "
            f"reachable from here ({exc.strerror}; a server in a container?)",
            {"database_bytes": db_size, "touched_bytes": need},
        )
    return _judge(free, max(need, 1) if touched else 0, what, data_directory, db_size)


def _judge(free: int, need: int, what: str, where: str, db_size: int | None = None) -> CheckResult:
    details = {"free_bytes": free, "needed_bytes": need, "where": where}
    if db_size is not None:
        details["database_bytes"] = db_size
    text = f"{formatting.size(free)} free in {where}; {what}"
    if free < need:
        return failed(
            "disk_space",
            text + "; a table rewrite needs about that much again: free some space first",
            details,
        )
    if free < 2 * need:
        return warned("disk_space", text + "; little room left after a table rewrite", details)
    return passed("disk_space", text, details)


# -- who else is there -----------------------------------------------------------------
def _sessions(connection: Any) -> CheckResult | None:
    """Other sessions on the database; long-running and idle-in-transaction ones (PostgreSQL)."""
    if connection.vendor != "postgresql":
        return None
    long_after = float(conf.get("PREFLIGHT_LONG_RUNNING"))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, usename, application_name, state, "
            "EXTRACT(EPOCH FROM now() - xact_start), EXTRACT(EPOCH FROM now() - query_start), "
            "left(query, 200) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend' ORDER BY pid"
        )
        rows = cursor.fetchall()
    sessions = [
        {
            "pid": pid,
            "user": user,
            "application": app,
            "state": state,
            "transaction_seconds": round(float(xact), 1) if xact is not None else None,
            "query_seconds": round(float(query_age), 1) if query_age is not None else None,
            "query": query,
        }
        for pid, user, app, state, xact, query_age, query in rows
    ]
    idle_in_tx = [s for s in sessions if str(s["state"]).startswith("idle in transaction")]
    long_running = [
        s
        for s in sessions
        if s not in idle_in_tx
        and (
            (s["state"] == "active" and (s["query_seconds"] or 0) > long_after)
            or (s["transaction_seconds"] or 0) > long_after
        )
    ]
    text = f"{len(sessions)} other session(s) on the database"
    if not idle_in_tx and not long_running:
        return passed(
            "connections",
            text + f", none idle in a transaction or busy > {long_after:g} s",
            sessions,
        )
    parts = []
    if idle_in_tx:
        parts.append(
            f"{len(idle_in_tx)} idle in a transaction ("
            + ", ".join(f"pid {s['pid']} for {s['transaction_seconds']} s" for s in idle_in_tx)
            + ")"
        )
    if long_running:
        parts.append(
            f"{len(long_running)} running > {long_after:g} s ("
            + ", ".join(f"pid {s['pid']}" for s in long_running)
            + ")"
        )
    return warned(
        "connections",
        text + ": " + "; ".join(parts) + " — they may hold locks the migration needs "
        "(see locks); ask their owners, or end them with pg_terminate_backend(pid)",
        sessions,
    )


def _pg_locks(connection: Any, tables: list[str] | None) -> CheckResult | None:
    """Locks other sessions hold on the tables the dry run touched (PostgreSQL).

    ``tables`` is None when the dry run could not even read the schema: then every
    table of the schema is looked at.
    """
    if connection.vendor != "postgresql":
        return None
    if tables is not None and not tables:
        return passed("locks", "the dry run touched no existing table")
    long_after = float(conf.get("PREFLIGHT_LONG_RUNNING"))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, l.mode, l.granted, a.pid, a.usename, a.application_name, a.state, "
            "EXTRACT(EPOCH FROM now() - a.xact_start) "
            "FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'relation' AND n.nspname = current_schema() "
            "AND l.pid <> pg_backend_pid() AND (%s OR c.relname = ANY(%s)) "
            "AND c.relkind IN ('r', 'p') "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "ORDER BY c.relname, a.pid",
            [tables is None, list(tables or [])],
        )
        rows = cursor.fetchall()
    held = [
        {
            "table": table,
            "mode": mode,
            "granted": granted,
            "pid": pid,
            "user": user,
            "application": app,
            "state": state,
            "transaction_seconds": round(float(age), 1) if age is not None else None,
        }
        for table, mode, granted, pid, user, app, state, age in rows
    ]
    if not held:
        where = ", ".join(tables) if tables is not None else "any table"
        return passed("locks", f"no other session holds a lock on {where}", {"tables": tables})
    blocking = [h for h in held if _blocks(h, long_after)]
    phrases = ", ".join(
        f"{h['mode']} on {h['table']} by pid {h['pid']} ({h['application'] or h['user']}, "
        f"{h['state']}"
        + (f" for {h['transaction_seconds']} s" if h["transaction_seconds"] is not None else "")
        + ")"
        for h in held
    )
    if blocking:
        return failed(
            "locks",
            f"{len(blocking)} lock(s) on tables the migration touches are held by other "
            f"sessions: {phrases}; the migration would wait for them while every query on those "
            "tables waits behind it (finish or end those sessions first)",
            held,
        )
    return warned(
        "locks",
        f"other sessions are using tables the migration touches: {phrases} (short-lived so far; "
        "a busy table makes the migration wait)",
        held,
    )


def _blocks(held: dict[str, Any], long_after: float) -> bool:
    """A granted lock that will not go away in a moment: strong, or in an old/idle transaction."""
    if not held["granted"]:
        return False
    mode = held["mode"]
    strong = mode not in LOCK_MODES or LOCK_MODES.index(mode) >= STRONG_LOCK
    idle = str(held["state"]).startswith("idle in transaction")
    old = (held["transaction_seconds"] or 0) > long_after
    return strong or idle or old


def sqlite_write_lock(alias: str) -> CheckResult | None:
    """Whether another process holds SQLite's write lock (``BEGIN IMMEDIATE`` on a probe)."""
    path = common.sqlite_file(alias)
    if targets.vendor(alias) != "sqlite":
        return None
    if path is None:
        return passed("locks", "in-memory database: no other process can hold it")
    probe = sqlite3.connect(str(path), timeout=0.2, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        return failed(
            "locks",
            f"another process holds the write lock on {path} ({exc}); the migration would wait "
            "and then fail with 'database is locked': stop that writer (or wait) and try again",
            {"file": str(path)},
        )
    finally:
        probe.close()
    return passed("locks", f"no other process holds the write lock on {path.name}")


def _migration_lock(alias: str) -> CheckResult:
    try:
        holder = locking.is_locked(alias)
    except Exception as exc:  # a lock file we cannot create: say so, do not stop
        return warned("migration_lock", f"could not check the migration lock: {exc}")
    if holder is None:
        return passed("migration_lock", "no migration is running")
    return warned(
        "migration_lock",
        f"a migration is running now ({locking.holder_description(holder)}); wait for it",
        holder,
    )
