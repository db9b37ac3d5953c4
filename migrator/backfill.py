"""``db.batched_update``: a backfill in batches that commit on their own, each sized to
take about as long as a target, and yielding to the traffic when the database slows down.

The control law (``BatchSizer``), after each batch of ``rows`` rows that took ``took``
seconds (its key lookup, its ``UPDATE``, its progress record and its commit, with any
lock waits and retries):

1. **Size toward the target.**  The next batch has ``size * target / took`` rows, never
   less than half nor more than twice this one (a single odd batch cannot swing it far),
   at least 1 and at most ``MAX_BATCH``.  A batch's duration is how long it holds its
   rows' locks (and, on SQLite, the database's one write lock): that is what a trading
   transaction touching one of those rows may wait, so that is what is held constant.
2. **Back off under lock waits.**  A batch that hit the lock timeout and was retried
   (another session held some of its rows) is followed by one at most half its size.
3. **Pay back a slow-down.**  ``quiet`` is the lowest cost per row seen (drifting up 5 %
   per batch, so one lucky batch is not the yardstick forever).  When a batch's rows cost
   more than twice ``quiet``, or it met lock waits, the database is busy with someone
   else's work: the next batch waits ``took - rows * quiet``, the time this one lost to
   the contention: on a loaded server the backfill runs between half and two thirds of
   the time, the rest is the traffic's.  On a quiet server it does not pause at all
   (the old fixed pause made the careful series 2.6 times slower than needed, issue 12).
4. **Ceilings.**  With ``max_rows_per_second`` a batch is at most ``max_rows_per_second
   * target`` rows, and is followed by a pause long enough that the batch and its pause
   take ``rows / max_rows_per_second``.  ``pause`` is the least pause between batches.

Inside a transaction (an atomic step) the batches share it, every lock is held to the
end and a pause only holds them longer: there rule 3 is off.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.db import transaction

if TYPE_CHECKING:
    from migrator.database import Database

DEFAULT_TARGET_SECONDS = 0.02  # why: README, Backfills (bench/live.py)
FIRST_BATCH = 1_000
MAX_BATCH = 1_000_000
QUIET_DRIFT = 1.05  # how fast the quiet cost per row follows a slower one, per batch
BUSY = 2.0  # rows costing this many times the quiet cost: the database is busy


@dataclass
class BatchSizer:
    """The size of the next batch and the pause before it (see the module's docstring).
    ``target`` None: a fixed size, as ``batch_size`` alone asks."""

    size: int
    target: float | None = DEFAULT_TARGET_SECONDS
    pause: float = 0.0
    max_rows_per_second: float | None = None
    yield_to_traffic: bool = True
    quiet: float | None = None  # the lowest cost per row seen, in seconds

    @classmethod
    def for_call(
        cls,
        batch_size: int | None,
        target_batch_seconds: float | None,
        pause: float,
        max_rows_per_second: float | None,
        in_transaction: bool,
    ) -> BatchSizer:
        if batch_size is not None and batch_size < 1:
            raise ValueError("batched_update: batch_size must be at least 1")
        if target_batch_seconds is not None and target_batch_seconds <= 0:
            raise ValueError("batched_update: target_batch_seconds must be more than 0")
        if max_rows_per_second is not None and max_rows_per_second <= 0:
            raise ValueError("batched_update: max_rows_per_second must be more than 0")
        if pause < 0:
            raise ValueError("batched_update: pause must be 0 or more")
        target = target_batch_seconds
        if target is None and batch_size is None:
            target = DEFAULT_TARGET_SECONDS
        sizer = cls(
            size=batch_size or FIRST_BATCH,
            target=target,
            pause=pause,
            max_rows_per_second=max_rows_per_second,
            yield_to_traffic=not in_transaction,
        )
        if target is not None:
            sizer.size = min(sizer.size, sizer.ceiling)
        return sizer

    @property
    def ceiling(self) -> int:
        if self.target is not None and self.max_rows_per_second:
            return max(int(self.max_rows_per_second * self.target), 1)
        return MAX_BATCH

    def after(self, rows: int, took: float, lock_waits: int = 0) -> float:
        """Learn from a batch of ``rows`` rows that took ``took`` seconds and met
        ``lock_waits`` lock timeouts: set ``size`` for the next one and return the pause
        before it."""
        pause = self.pause
        took = max(took, 1e-6)
        if self.target is not None and rows > 0:
            asked = self.size
            size = asked * min(max(self.target / took, 0.5), 2.0)
            if lock_waits:
                size = min(size, asked / 2)
            self.size = int(min(max(size, 1), self.ceiling))
            cost = took / rows
            self.quiet = cost if self.quiet is None else min(cost, self.quiet * QUIET_DRIFT)
            if self.yield_to_traffic and (lock_waits or cost > BUSY * self.quiet):
                pause = max(pause, took - rows * self.quiet)
        if self.max_rows_per_second and rows > 0:
            pause = max(pause, rows / self.max_rows_per_second - took)
        return pause


def batched_update(
    db: Database,
    table: str,
    set_sql: str,
    where: str,
    params: Sequence[Any],
    *,
    key: str,
    batch_size: int | None,
    pause: float,
    progress: bool | None,
    target_batch_seconds: float | None,
    max_rows_per_second: float | None,
) -> int:
    own_batches = not db.connection.in_atomic_block
    sizer = BatchSizer.for_call(
        batch_size, target_batch_seconds, pause, max_rows_per_second, not own_batches
    )
    q_table, q_key = db.quote(table), db.quote(key)
    condition = f" AND ({where})" if where else ""
    set_params = list(params)[: set_sql.count("%s")]
    where_params = list(params)[len(set_params) :]
    bar = _progress_bar(db, table, q_table, where, where_params, progress)
    done, batches, after = 0, 0, []  # after: [] for the first batch, else [the last key]
    resume = db.resume_points.get(f"{table}:{key}")
    if resume is not None:
        after = [resume]
    started = time.monotonic()

    def one_batch() -> tuple[Any, int]:
        """One batch: (its upper key, rows updated), or (None, 0) when none is left."""
        above = f"{q_key} > %s AND " if after else ""
        size = sizer.size
        with contextlib.ExitStack() as batch:
            if own_batches:
                # Each batch commits on its own, with its progress record.
                batch.enter_context(transaction.atomic(using=db.alias))
            upper = db.scalar(
                f"SELECT MAX({q_key}) FROM (SELECT {q_key} FROM {q_table} "
                f"WHERE {above}1 = 1{condition} ORDER BY {q_key} LIMIT %s) AS batch",
                [*after, *where_params, size],
            )
            if upper is None:
                return None, 0
            cursor = db.execute(
                f"UPDATE {q_table} SET {set_sql} WHERE {above}{q_key} <= %s{condition}",
                [*set_params, *after, upper, *where_params],
            )
            count = max(cursor.rowcount, 0)
            cursor.close()
            if db.on_progress is not None:
                elapsed = max(time.monotonic() - started, 1e-9)
                db.on_progress(
                    {
                        "table": table,
                        "key": key,
                        "rows_done": done + count,
                        "rows_total": getattr(bar, "total", None),
                        "last_key": upper,
                        "rate": round((done + count) / elapsed, 1),
                        "batch_size": size,
                        "batches": batches + 1,
                        "target_batch_seconds": sizer.target,
                        "updated_at": datetime.now(UTC).isoformat(),
                    }
                )
        return upper, count

    try:
        while True:
            waits = db.retrying.waits.waits_ms if db.retrying is not None else []
            waits_before = len(waits)
            batch_started = time.monotonic()
            upper, count = db.retried(one_batch)
            if upper is None:
                return done
            took = time.monotonic() - batch_started
            done += count
            batches += 1
            after = [upper]
            if bar is not None:
                bar.update(count)
            rest = sizer.after(count, took, lock_waits=len(waits) - waits_before)
            if rest > 0:
                time.sleep(rest)
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(
    db: Database,
    table: str,
    q_table: str,
    where: str,
    where_params: list[Any],
    progress: bool | None,
) -> Any:
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm import tqdm

    total = db.scalar(
        f"SELECT COUNT(*) FROM {q_table}" + (f" WHERE {where}" if where else ""),
        where_params,
    )
    return tqdm(total=total, unit="rows", desc=f"  {table}", leave=False, file=sys.stderr)
