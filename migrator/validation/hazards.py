"""The lock-hazard gate: statements that would stall live traffic, refused before ``run`` starts.

A migration on a hot trading database must not hold a lock that traffic needs for
longer than traffic can wait.  The statements that do are few and well known (squawk's
rules name most of them), but whether one of them stalls anything depends on the size
of the table it works through: ``CREATE INDEX`` on 200 rows takes a millisecond, on
1.5 million rows it blocks every insert for seconds.  So the verdict is size-aware:

1. **One catalog query** on the live database lists the tables over
   ``HAZARD_TABLE_ROWS`` rows (estimated as PostgreSQL does: ``pg_class.reltuples``,
   or the live-tuple count of the statistics when that is higher, e.g. a table loaded
   since its last ``ANALYZE``; no table is read or locked).  No such table: nothing can
   stall for long, the gate is done, no scratch database is made.
2. Otherwise the pending steps are **rehearsed on a scratch database** holding a
   copy of the live schema, no rows (``rehearsal.py``): what they send, and what
   PostgreSQL did at each statement (locks held, rewrites, ``SET NOT NULL`` proved by
   a validated ``CHECK``).
3. Each statement on a large table is judged by the rules below (``HAZARDS``).  A
   script accepts a hazard with its reason (``hazards_accepted = {"rewrite": "the
   column is unused, the table is read at night"}``, SQL: ``-- tbmigrate:
   accept.rewrite="…"``); what is not accepted refuses the run before its first
   statement, naming the step, the statement, the table, its size, the hazard and the
   safe recipe.

The safe recipes pass by construction: ``CREATE INDEX CONCURRENTLY``, ``VALIDATE
CONSTRAINT`` (it takes SHARE UPDATE EXCLUSIVE, which blocks no reader or writer) in its
own transaction, ``SET NOT NULL`` after a validated ``CHECK (column IS NOT NULL)``,
``UPDATE``/``DELETE`` bounded by a key range (the batches of ``db.batched_update``) in a
non-atomic step.  What a statement does *inside the same transaction* as an earlier
lock that blocks traffic is judged too (``exclusive-then-long``).

SQLite has no gate: a write there locks the whole file whatever the statement, there
are no statistics to size a table without reading it, and none of the recipes exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connections

from migrator import conf, formatting, redact, targets
from migrator.errors import DatabaseUnavailable, HazardRefused, MigrationFailed
from migrator.scripts import Script
from migrator.validation import statements
from migrator.validation.base import CheckResult, failed, passed, warned
from migrator.validation.introspect import ignored_tables
from migrator.validation.rehearsal import Rehearsal, Statement, TableKey, rehearse


@dataclass(frozen=True)
class Hazard:
    """One kind of hazard: what it is, why it stalls traffic, squawk's name for it."""

    id: str
    what: str
    why: str
    recipe: str
    squawk: str = ""


HAZARDS: dict[str, Hazard] = {
    h.id: h
    for h in (
        Hazard(
            "long-update",
            "UPDATE or DELETE of a large table not bounded by a key range; or "
            "db.batched_update in an atomic script",
            "one statement (or one transaction) keeps every row it changed locked until it "
            "ends: every write to those rows waits",
            "db.batched_update in an atomic = False script (each batch commits on its own)",
        ),
        Hazard(
            "blocking-index",
            "CREATE INDEX without CONCURRENTLY, ADD PRIMARY KEY / UNIQUE without USING "
            "INDEX, REINDEX without CONCURRENTLY, on a large table",
            "the index is built while every write to the table waits",
            "CREATE INDEX CONCURRENTLY in an atomic = False script "
            "(db.create_index(..., concurrently=True)); a key: CREATE UNIQUE INDEX "
            "CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX",
            "require-concurrent-index-creation",
        ),
        Hazard(
            "set-not-null",
            "ALTER COLUMN ... SET NOT NULL on a large table without a validated "
            "CHECK (column IS NOT NULL)",
            "every row is read under ACCESS EXCLUSIVE: every query on the table waits",
            "db.set_not_null (CHECK ... NOT VALID, VALIDATE CONSTRAINT, then SET NOT NULL, "
            "which a validated CHECK lets skip the scan)",
            "adding-not-nullable-field",
        ),
        Hazard(
            "validate-constraint",
            "ADD FOREIGN KEY or ADD CHECK without NOT VALID (or a new column with "
            "REFERENCES / CHECK) on a large table",
            "every row is checked while writes (a foreign key) or every query (a check) wait",
            "db.add_foreign_key / db.add_check (NOT VALID, then VALIDATE CONSTRAINT in its "
            "own transaction)",
            "constraint-missing-not-valid, adding-foreign-key-constraint",
        ),
        Hazard(
            "rewrite",
            "a statement that rewrites a large table: a column type change that is not "
            "binary compatible, a stored generated column, SET LOGGED, CLUSTER, VACUUM FULL",
            "the whole table is copied under ACCESS EXCLUSIVE: every query on it waits",
            "a new column of the new type, filled with db.batched_update, the application "
            "switched to it, then the old one dropped (expand/contract)",
            "changing-column-type",
        ),
        Hazard(
            "volatile-default",
            "ADD COLUMN with a volatile default (clock_timestamp(), random(), a serial or "
            "identity column) on a large table",
            "every row gets its own value, so the table is rewritten under ACCESS "
            "EXCLUSIVE: every query on it waits",
            "add the column without a default (or with a constant one: no rewrite since "
            "PostgreSQL 11), then fill it with db.batched_update in an atomic = False script",
            "adding-field-with-default",
        ),
        Hazard(
            "exclusive-then-long",
            "a long statement on a large table in a transaction that already holds a lock "
            "blocking traffic (ADD COLUMN, then UPDATE of the whole table, in one atomic "
            "step)",
            "the earlier lock is held until the step commits, so traffic waits for the "
            "long statement too (the naive series that stopped trading for 58 s)",
            "commit the lock first: the ALTER in its own step, the long part in an atomic = "
            "False script (db.batched_update, CREATE INDEX CONCURRENTLY, VALIDATE CONSTRAINT)",
            "constraint-missing-not-valid",
        ),
    )
}
HAZARD_IDS = tuple(HAZARDS)


@dataclass(frozen=True)
class TableSize:
    schema: str
    name: str
    visible: bool  # found by the search path (a name written without its schema)
    rows: int
    bytes: int
    keys: frozenset[str]  # single-column unique keys: what bounds an UPDATE's batch

    @property
    def label(self) -> str:
        return self.name if self.visible else f"{self.schema}.{self.name}"

    @property
    def size(self) -> str:
        text = f"~{self.rows:,} rows"
        return text + (f", {formatting.size(self.bytes)}" if self.bytes else "")


def large_tables(alias: str, threshold: int) -> dict[TableKey, TableSize]:
    """The live tables estimated above ``threshold`` rows: one catalog query that reads
    no table and takes no lock (``IGNORED_TABLES``, tbmigrate's own among them, left out)."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.nspname, c.relname, pg_table_is_visible(c.oid), "
            "GREATEST(c.reltuples, pg_stat_get_live_tuples(c.oid))::bigint, "
            "c.relpages::bigint * current_setting('block_size')::bigint, "
            "ARRAY(SELECT a.attname FROM pg_index i JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            "WHERE i.indrelid = c.oid AND i.indisunique AND i.indnkeyatts = 1 "
            "AND i.indpred IS NULL AND i.indexprs IS NULL) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname <> 'information_schema' "
            "AND n.nspname NOT LIKE 'pg\\_%%' "
            "AND GREATEST(c.reltuples, pg_stat_get_live_tuples(c.oid)) > %s "
            "AND c.relname <> ALL(%s)",
            [threshold, sorted(ignored_tables())],
        )
        rows = cursor.fetchall()
    return {
        (str(schema), str(name)): TableSize(
            str(schema), str(name), bool(visible), int(count), int(size or 0), frozenset(keys)
        )
        for schema, name, visible, count, size, keys in rows
    }


@dataclass(frozen=True)
class Finding:
    """One hazard of one statement of one step."""

    hazard: str
    step: str  # "1.0.7 add-note"
    version: str
    kind: str  # the script's kind: python | sql
    number: int  # the statement's number in the step
    statement: str  # shortened
    table: str
    size: str  # "~1,500,000 rows, 120.0 MB"
    rows: int
    problem: str  # what this statement does, in words
    recipe: str
    accepted: str | None = None  # the script's reason, when it accepts the hazard

    @property
    def opt_out(self) -> str:
        if self.kind == "sql":
            return f'-- tbmigrate: accept.{self.hazard}="<why it is safe>"'
        return f'hazards_accepted = {{"{self.hazard}": "<why it is safe>"}}'

    def line(self) -> str:
        """What the refusal and validation say, on one line."""
        return (
            f"{self.step}, statement {self.number} ({self.statement}) on {self.table} "
            f"({self.size}) [{self.hazard}]: {self.problem}; instead: {self.recipe}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "hazard": self.hazard,
            "step": self.step,
            "version": self.version,
            "statement_number": self.number,
            "statement": self.statement,
            "table": self.table,
            "rows": self.rows,
            "recipe": self.recipe,
            **({"accepted": self.accepted} if self.accepted is not None else {}),
        }


@dataclass
class Verdict:
    """What the gate found for a run's steps (``checked`` says how far it looked)."""

    vendor: str
    threshold: int
    checked: str  # sqlite | off | nothing | small | rehearsed
    alias: str = "default"
    large: dict[TableKey, TableSize] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)  # steps that failed on the scratch copy
    rehearsal: Rehearsal | None = None
    unseen: str = ""  # why the steps could not be rehearsed (no scratch database, ...)

    @property
    def blind(self) -> bool:
        """Large tables, and the steps could not be seen: the gate fails closed."""
        return bool(self.large and self.unseen)

    def _blind_message(self) -> str:
        return (
            f"the lock-hazard gate must see what the pending steps run, since "
            f"{len(self.large)} table(s) have more than {self.threshold:,} rows, and cannot "
            f"({self.unseen}); fix that, or turn the gate off for this database: "
            f"DATABASES[{self.alias!r}]['TBMIGRATE'] = {{'HAZARD_TABLE_ROWS': 0}}"
        )

    @property
    def refused(self) -> list[Finding]:
        return [f for f in self.findings if f.accepted is None]

    @property
    def accepted(self) -> list[Finding]:
        return [f for f in self.findings if f.accepted is not None]

    def refusal(self, action: str, version: str) -> HazardRefused | None:
        """The error refusing ``action`` (None when nothing is refused)."""
        if self.blind:
            return HazardRefused(
                f"{action} refused before anything ran: {self._blind_message()}",
                details=self.details(),
            )
        refused = self.refused
        if not refused:
            return None
        first = refused[0]
        more = ""
        if len(refused) > 1:
            others = sorted({f.hazard for f in refused[1:]})
            more = (
                f"; {len(refused) - 1} more ({', '.join(others)}): "
                f"`tbmigrate validate migration {version}` lists them"
            )
        return HazardRefused(
            f"{action} refused before anything ran: {first.line()}; or accept it in the "
            f"script, with its reason: {first.opt_out}{more}",
            details=self.details(),
        )

    def details(self) -> dict[str, Any]:
        """For the run's audit event."""
        return {
            "threshold_rows": self.threshold,
            "checked": self.checked,
            "large_tables": dict(
                sorted(((t.label, t.rows) for t in self.large.values()), key=lambda x: -x[1])[:20]
            ),
            "large_table_count": len(self.large),
            "refused": [f.as_dict() for f in self.refused],
            "accepted": [f.as_dict() for f in self.accepted],
            **({"not_checked": self.partial} if self.partial else {}),
            **({"unseen": self.unseen} if self.unseen else {}),
        }

    def step_notes(self) -> dict[str, dict[str, Any]]:
        """For each step's audit event: the hazards it accepted, and why."""
        notes: dict[str, dict[str, Any]] = {}
        for f in self.accepted:
            notes.setdefault(f.version, {"hazards_accepted": []})["hazards_accepted"].append(
                {
                    "hazard": f.hazard,
                    "reason": f.accepted,
                    "statement": f.statement,
                    "table": f.table,
                    "rows": f.rows,
                }
            )
        return notes

    def checks(self) -> list[CheckResult]:
        """The same verdict as ``validate migration``'s ``hazards`` check."""
        details = self.details()
        if self.checked == "sqlite":
            return [
                passed(
                    "hazards",
                    "no lock-hazard gate on SQLite (a write locks the whole file whatever the "
                    "statement; the gate is PostgreSQL's)",
                )
            ]
        if self.checked == "off":
            return [passed("hazards", "the lock-hazard gate is off (HAZARD_TABLE_ROWS = 0)")]
        if self.blind:
            return [failed("hazards", f"run would refuse: {self._blind_message()}", details)]
        results: list[CheckResult] = [
            failed(
                "hazards",
                f"{f.line()}; run refuses it: accept it in the script with its reason "
                f"({f.opt_out}) if it is safe",
                f.as_dict(),
            )
            for f in self.refused
        ]
        results += [
            warned(
                "hazards",
                f"{f.step} accepts {f.hazard} on {f.table} ({f.size}): {f.accepted}",
                f.as_dict(),
            )
            for f in self.accepted
        ]
        results += [
            warned(
                "hazards",
                f"{note}; the statements it would run after that were not checked",
            )
            for note in self.partial
        ]
        if self.findings or self.partial:
            return results
        if self.checked == "small":
            message = f"no table has more than {self.threshold:,} rows: nothing can stall for long"
        elif self.checked == "nothing":
            message = "nothing to check"
        else:
            names = ", ".join(sorted(t.label for t in self.large.values())[:5])
            message = (
                f"no statement would stall traffic on the tables over {self.threshold:,} rows "
                f"({names}{', ...' if len(self.large) > 5 else ''})"
            )
        return [passed("hazards", message, details)]


def threshold(alias: str) -> int:
    """``HAZARD_TABLE_ROWS`` for ``alias`` (0: the gate is off)."""
    value = conf.get("HAZARD_TABLE_ROWS", alias=alias)
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        from migrator.errors import ConfigurationError

        raise ConfigurationError(
            f"HAZARD_TABLE_ROWS must be a whole number of rows (0: no gate), not {value!r}"
        ) from None


def assess(
    alias: str,
    steps: Sequence[Script],
    before: Callable[[], list[Script]],
    *,
    track: bool = False,
) -> Verdict:
    """The gate's verdict on applying ``steps`` (in order) to ``alias`` now.

    ``before()`` gives the applied scripts to replay first; it is called only when a
    rehearsal is needed.  ``track``: rehearse whatever the sizes (``validate migration``
    shares the rehearsal with its expand/contract check), following what each step
    changes.  A scratch database that cannot be made, or applied scripts that no longer
    replay, leave ``Verdict.unseen`` saying why: with a large table the gate then
    refuses (it fails closed).
    """
    vendor = targets.vendor(alias)
    limit = threshold(alias) if vendor == "postgresql" else 0
    if vendor != "postgresql" or limit == 0 or not steps:
        checked = "sqlite" if vendor != "postgresql" else "off" if limit == 0 else "nothing"
        verdict = Verdict(vendor, limit, checked, alias)
    else:
        large = large_tables(alias, limit)
        verdict = Verdict(vendor, limit, "rehearsed" if large else "small", alias, large)
    if not (verdict.large or (track and steps)):
        return verdict
    try:
        verdict.rehearsal = rehearse(alias, before, steps, track=track)
    except (DatabaseUnavailable, MigrationFailed) as exc:
        verdict.unseen = str(exc)
        return verdict
    if verdict.large:
        verdict.findings = judge(verdict.rehearsal, verdict.large)
        copy_failed = verdict.rehearsal.copy_failed
        where = (
            f"a replay of the scripts (the live schema could not be copied: "
            f"{_short(copy_failed, 120)})"
            if copy_failed
            else "a copy of the live schema"
        )
        verdict.partial = [
            f"{step.script.label} failed on the scratch database ({where}, no rows) after "
            f"{len(step.statements)} statement(s) ({_short(step.error, 160)})"
            for step in verdict.rehearsal.steps
            if step.error
        ]
    return verdict


# -- the rules ---------------------------------------------------------------------------
def judge(rehearsal: Rehearsal, large: dict[TableKey, TableSize]) -> list[Finding]:
    """Every hazard of every rehearsed statement on a table of ``large``."""
    findings: list[Finding] = []
    seen: set[tuple[str, str, int]] = set()
    for step in rehearsal.steps:
        script = step.script
        for entry in step.statements:
            size = _size(entry, large)
            own = _own_hazards(entry, size, script) if size is not None else []
            long_on = _long_on(entry, size, own, large)
            if long_on is not None and entry.transaction is not None and entry.held_before:
                held = ", ".join(
                    f"{_mode(mode)} on {_label(schema, table, large)}"
                    for schema, table, mode in entry.held_before
                )
                what = "every query" if _blocks_reads(entry) else "every write"
                own.insert(
                    0,
                    (
                        "exclusive-then-long",
                        long_on,
                        f"it works through {long_on.label} while the step's transaction holds "
                        f"{held} (taken earlier in the same transaction): {what} on "
                        f"{'it' if len(entry.held_before) == 1 else 'them'} waits until the "
                        "step commits",
                        HAZARDS["exclusive-then-long"].recipe,
                    ),
                )
            for hazard, table, problem, recipe in own:
                key = (hazard, script.label, entry.number)
                if key in seen:
                    continue
                seen.add(key)
                findings.append(
                    Finding(
                        hazard=hazard,
                        step=script.label,
                        version=str(script.version),
                        kind=script.kind,
                        number=entry.number,
                        statement=_short(entry.sql),
                        table=table.label,
                        size=table.size,
                        rows=table.rows,
                        problem=problem,
                        recipe=recipe,
                        accepted=script.hazards_accepted.get(hazard),
                    )
                )
    return findings


Own = list[tuple[str, TableSize, str, str]]  # (hazard, table, problem, recipe)


def _own_hazards(entry: Statement, size: TableSize, script: Script) -> Own:
    """The hazards of the statement by itself (its table ``size`` is large)."""
    shape = entry.shape
    table = size.label
    found: Own = []
    if entry.helper == "batched_update":
        if entry.transaction is not None:
            found.append(
                (
                    "long-update",
                    size,
                    f"db.batched_update in an atomic script: its batches share the step's "
                    f"transaction, so every row of {table} it updates stays locked until the "
                    "step commits",
                    "set atomic = False in the script (each batch then commits on its own)",
                )
            )
        return found
    if shape.verb in ("update", "delete") and not shape.bounded_by(size.keys):
        verb = shape.verb.upper()
        recipe = (
            HAZARDS["long-update"].recipe
            if shape.verb == "update"
            else "DELETE in batches bounded by a key range (WHERE id > %s AND id <= %s) "
            "in an atomic = False script"
        )
        found.append(
            (
                "long-update",
                size,
                f"one {verb} of {table}, not bounded by a key range, keeps every row it "
                "changes locked until it ends",
                recipe,
            )
        )
    elif shape.verb == "create-index" and not shape.concurrently:
        found.append(
            (
                "blocking-index",
                size,
                f"CREATE INDEX blocks every write to {table} while the index is built",
                "CREATE INDEX CONCURRENTLY in an atomic = False script "
                "(db.create_index(..., concurrently=True))",
            )
        )
    elif shape.verb == "reindex" and not shape.concurrently:
        found.append(
            (
                "blocking-index",
                size,
                f"REINDEX blocks every write to {table} while its indexes are rebuilt",
                "REINDEX TABLE CONCURRENTLY in an atomic = False script",
            )
        )
    elif shape.verb == "rewrite":
        found.append(
            (
                "rewrite",
                size,
                f"it rewrites {table} under ACCESS EXCLUSIVE: every query on it waits",
                "pg_repack, or a maintenance window (accept the hazard)",
            )
        )
    elif shape.verb == "alter-table":
        found += _alter_hazards(entry, size)
    return found


def _alter_hazards(entry: Statement, size: TableSize) -> Own:
    table = size.label
    found: Own = []
    actions = entry.shape.actions
    if entry.rewrote:
        added = [a for a in actions if a.kind == "add-column" and not a.stored]
        if added:
            found.append(
                (
                    "volatile-default",
                    size,
                    f"ADD COLUMN {added[0].column} with a volatile default rewrites {table} "
                    "under ACCESS EXCLUSIVE: every query on it waits",
                    HAZARDS["volatile-default"].recipe,
                )
            )
        else:
            changed = next((a.column for a in actions if a.kind == "alter-type"), None)
            what = f"changing the type of {changed}" if changed else "this ALTER TABLE"
            found.append(
                (
                    "rewrite",
                    size,
                    f"{what} rewrites {table} under ACCESS EXCLUSIVE: every query on it waits",
                    HAZARDS["rewrite"].recipe,
                )
            )
    for action in actions:
        if action.kind == "add-constraint" and not action.not_valid:
            if action.constraint == "foreign":
                found.append(
                    (
                        "validate-constraint",
                        size,
                        f"ADD FOREIGN KEY checks every row of {table} while writes to it "
                        "and to the table it references wait",
                        "db.add_foreign_key (ADD CONSTRAINT ... NOT VALID, then VALIDATE "
                        "CONSTRAINT in its own transaction)",
                    )
                )
            elif action.constraint == "check":
                found.append(
                    (
                        "validate-constraint",
                        size,
                        f"ADD CHECK reads every row of {table} under ACCESS EXCLUSIVE: every "
                        "query on it waits",
                        "db.add_check (ADD CONSTRAINT ... CHECK (...) NOT VALID, then VALIDATE "
                        "CONSTRAINT in its own transaction)",
                    )
                )
            elif action.constraint in ("primary", "unique", "exclude") and not action.using_index:
                found.append(_key_index(size))
        elif action.kind == "add-column":
            if action.references or action.checks:
                found.append(
                    (
                        "validate-constraint",
                        size,
                        f"ADD COLUMN {action.column} with "
                        f"{'REFERENCES' if action.references else 'CHECK'} checks every row of "
                        f"{table} under ACCESS EXCLUSIVE",
                        "add the column plain, then db.add_foreign_key / db.add_check (NOT "
                        "VALID, then VALIDATE CONSTRAINT in its own transaction)",
                    )
                )
            if action.indexed:
                found.append(_key_index(size))
        elif action.kind == "set-not-null" and action.column not in entry.proven_not_null:
            found.append(
                (
                    "set-not-null",
                    size,
                    f"SET NOT NULL on {action.column} reads every row of {table} under ACCESS "
                    "EXCLUSIVE (no validated CHECK proves it): every query on it waits",
                    HAZARDS["set-not-null"].recipe,
                )
            )
    return found


def _key_index(size: TableSize) -> tuple[str, TableSize, str, str]:
    return (
        "blocking-index",
        size,
        f"adding a key builds its index on {size.label} under ACCESS EXCLUSIVE: every query "
        "on it waits",
        "CREATE UNIQUE INDEX CONCURRENTLY in an atomic = False script, then ALTER TABLE ... "
        "ADD CONSTRAINT ... PRIMARY KEY / UNIQUE USING INDEX",
    )


def _long_on(
    entry: Statement, size: TableSize | None, own: Own, large: dict[TableKey, TableSize]
) -> TableSize | None:
    """The large table this statement works through at length, if it does."""
    if own:
        return own[0][1]
    shape = entry.shape
    if size is not None:
        if entry.helper == "batched_update":
            return size
        if shape.verb == "alter-table" and any(a.kind == "validate" for a in shape.actions):
            return size
    if shape.verb in ("insert", "create-table-as") or (
        shape.verb == "select" and not shape.limited
    ):
        for name in shape.reads:
            read = _by_name(name, large)
            if read is not None and not (shape.verb == "select" and shape.bounded_by(read.keys)):
                return read
    return None


def _blocks_reads(entry: Statement) -> bool:
    return any(mode == "AccessExclusiveLock" for _, _, mode in entry.held_before)


def _size(entry: Statement, large: dict[TableKey, TableSize]) -> TableSize | None:
    if entry.table is not None:
        return large.get(entry.table)
    if entry.shape.table is not None:
        return _by_name(entry.shape.table, large)
    return None


def _by_name(name: statements.Name, large: dict[TableKey, TableSize]) -> TableSize | None:
    if name.schema is not None:
        return large.get((name.schema, name.name))
    return next((t for t in large.values() if t.visible and t.name == name.name), None)


def _label(schema: str, table: str, large: dict[TableKey, TableSize]) -> str:
    size = large.get((schema, table))
    return size.label if size is not None else table


def _mode(mode: str) -> str:
    """``AccessExclusiveLock`` -> ``ACCESS EXCLUSIVE``."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", mode.removesuffix("Lock")).upper()


def _short(sql: str, limit: int = 80) -> str:
    """A statement as messages show it: one line, shortened, scrubbed of known
    passwords; one that looks secret (``PASSWORD``, ``api_key``...) only by its head."""
    text = " ".join(redact.scrub(sql).split())
    if redact.looks_secret(text):
        text = " ".join(text.split()[:3]) + " …"
    return text if len(text) <= limit else text[: limit - 2] + " …"
