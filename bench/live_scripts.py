"""The migration series of ``bench/live.py``: one end state, written three ways.

The end state, on the seeded trading schema:

- ``orders.fee_cents BIGINT NOT NULL DEFAULT 0``, every existing order backfilled
  from its quantity and price;
- an index ``trades_symbol_time`` on ``trades (symbol, executed_at)``;
- a foreign key ``trades_order_fk``: ``trades.order_id`` references ``orders.id``.

``naive``: what a hurried author writes.  One atomic step adds the column and updates
every order (ACCESS EXCLUSIVE on ``orders`` until it commits), then a plain
``CREATE INDEX`` (SHARE on ``trades``: no writes while it builds), ``SET NOT NULL``
(a scan of ``orders`` under ACCESS EXCLUSIVE) and a foreign key validated at once.

``safe``: the same end state written by hand the careful way, with what today's
engine offers: each step that needs ACCESS EXCLUSIVE is a small atomic step that
sets a short ``lock_timeout`` itself (so tbmigrate retries it on a lock timeout
instead of queueing traffic behind it); the backfill is a non-atomic
``db.batched_update``; the index is built ``CONCURRENTLY`` (a leftover INVALID one
dropped first); NOT NULL goes DEFAULT, CHECK NOT VALID, VALIDATE, SET NOT NULL (which
then skips its scan), DROP the CHECK; the foreign key is added NOT VALID, then
validated (SHARE UPDATE EXCLUSIVE: traffic goes on).

``helpers``: the same through the ``db`` helpers of issue 12 (``set_not_null``,
``add_foreign_key``, ``create_index(concurrently=True)`` idempotent, adaptive
``batched_update``) and tbmigrate's own lock timeouts and retries: no ``SET`` in the
scripts.  Only written when the engine has them (``available_helpers``).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

FEE = "CAST(qty * price * 10 AS BIGINT)"  # 10 bps of the notional, in cents

# What the naive series says it accepts when the gate is to be passed (``--naive-opt-out``).
# The gate's hazard names are not settled yet: these name what each step does; change
# them with ``--naive-hazards JSON`` once they are.
NAIVE_HAZARDS: dict[str, dict[str, str]] = {
    "1.0.1": {
        "long-update": "benchmark: the naive series on purpose",
        "exclusive-then-long": "benchmark: the naive series on purpose",
    },
    "1.0.2": {"blocking-index": "benchmark: the naive series on purpose"},
    "1.0.3": {"set-not-null": "benchmark: the naive series on purpose"},
    "1.0.4": {"validate-constraint": "benchmark: the naive series on purpose"},
}

HEADER = '''"""{description}"""

version = "{version}"
name = "{name}"
description = "{description}"
'''


def _write(folder: Path, version: str, name: str, description: str, body: str) -> None:
    text = HEADER.format(version=version, name=name, description=description) + body
    (folder / f"2026-12-01T00-00-00-{version}-{name}.py").write_text(text)


def _write_steps(folder: Path, steps: list[tuple[str, str, bool, str, str]]) -> None:
    """Versions 1.0.1, 1.0.2, ... of (name, description, atomic, up body, down body)."""
    for i, (name, description, atomic, up, down) in enumerate(steps, start=1):
        head = "" if atomic else "atomic = False\n"
        _write(
            folder,
            f"1.0.{i}",
            name,
            description,
            f"{head}\n\ndef up(db):\n{up}\n\ndef down(db):\n{down}",
        )


def naive(folder: Path, hazards: dict[str, dict[str, str]] | None = None) -> None:
    """Four atomic steps; ``hazards``: version -> the ``hazards_accepted`` it declares."""
    hazards = hazards or {}

    def accepted(version: str) -> str:
        found = hazards.get(version)
        return f"hazards_accepted = {json.dumps(found)}\n" if found else ""

    _write(
        folder,
        "1.0.1",
        "add-order-fee",
        "Add orders.fee_cents and fill it",
        accepted("1.0.1")
        + f"""

def up(db):
    db.execute("ALTER TABLE orders ADD COLUMN fee_cents BIGINT")
    db.execute("ALTER TABLE orders ALTER COLUMN fee_cents SET DEFAULT 0")
    db.execute("UPDATE orders SET fee_cents = {FEE}")


def down(db):
    db.execute("ALTER TABLE orders DROP COLUMN fee_cents")
""",
    )
    _write(
        folder,
        "1.0.2",
        "index-trades-symbol",
        "Index trades by symbol and time",
        accepted("1.0.2")
        + """

def up(db):
    db.execute("CREATE INDEX trades_symbol_time ON trades (symbol, executed_at)")


def down(db):
    db.execute("DROP INDEX trades_symbol_time")
""",
    )
    _write(
        folder,
        "1.0.3",
        "order-fee-not-null",
        "orders.fee_cents NOT NULL",
        accepted("1.0.3")
        + """

def up(db):
    db.execute("ALTER TABLE orders ALTER COLUMN fee_cents SET NOT NULL")


def down(db):
    db.execute("ALTER TABLE orders ALTER COLUMN fee_cents DROP NOT NULL")
""",
    )
    _write(
        folder,
        "1.0.4",
        "trades-order-fk",
        "trades.order_id references orders",
        accepted("1.0.4")
        + """

def up(db):
    db.execute(
        "ALTER TABLE trades ADD CONSTRAINT trades_order_fk "
        "FOREIGN KEY (order_id) REFERENCES orders (id)"
    )


def down(db):
    db.execute("ALTER TABLE trades DROP CONSTRAINT trades_order_fk")
""",
    )


def safe(folder: Path, lock_timeout: float, batch_size: int, pause: float) -> None:
    """By hand: short lock waits set in each ACCESS EXCLUSIVE step, NOT VALID then
    VALIDATE, CONCURRENTLY, a batched backfill.  ``lock_timeout`` 0: leave it to
    tbmigrate's settings."""
    set_local = (
        f"    db.execute(\"SET LOCAL lock_timeout = '{max(int(lock_timeout * 1000), 1)}ms'\")\n"
        if lock_timeout
        else ""
    )
    steps = [
        (
            "add-order-fee",
            "Add orders.fee_cents, default 0 for new orders",
            True,
            set_local
            + """    db.execute("ALTER TABLE orders ADD COLUMN fee_cents BIGINT")
    db.execute("ALTER TABLE orders ALTER COLUMN fee_cents SET DEFAULT 0")
""",
            '    db.execute("ALTER TABLE orders DROP COLUMN fee_cents")\n',
        ),
        (
            "backfill-order-fee",
            "Fill orders.fee_cents in batches",
            False,
            f"""    db.batched_update(
        "orders",
        "fee_cents = {FEE}",
        "fee_cents IS NULL",
        batch_size={batch_size},
        pause={pause},
    )
""",
            '    db.execute("UPDATE orders SET fee_cents = NULL")\n',
        ),
        (
            "index-trades-symbol",
            "Index trades by symbol and time, concurrently",
            False,
            # SHARE UPDATE EXCLUSIVE does not queue traffic: no short lock_timeout needed.
            """    invalid = db.scalar(
        "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = 'trades_symbol_time'"
    )
    if invalid:  # left by an earlier attempt that failed
        db.execute("DROP INDEX CONCURRENTLY trades_symbol_time")
    db.execute(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS trades_symbol_time "
        "ON trades (symbol, executed_at)"
    )
""",
            '    db.execute("DROP INDEX CONCURRENTLY IF EXISTS trades_symbol_time")\n',
        ),
        (
            "order-fee-check",
            "CHECK (fee_cents IS NOT NULL) NOT VALID",
            True,
            set_local
            + """    db.execute(
        "ALTER TABLE orders ADD CONSTRAINT orders_fee_cents_not_null "
        "CHECK (fee_cents IS NOT NULL) NOT VALID"
    )
""",
            '    db.execute("ALTER TABLE orders DROP CONSTRAINT orders_fee_cents_not_null")\n',
        ),
        (
            "order-fee-check-validate",
            "VALIDATE the fee check (SHARE UPDATE EXCLUSIVE: traffic goes on)",
            True,
            set_local
            + """    db.execute("ALTER TABLE orders VALIDATE CONSTRAINT orders_fee_cents_not_null")
""",
            "    pass\n",
        ),
        (
            "order-fee-not-null",
            "SET NOT NULL, proven by the valid check, then drop the check",
            True,
            set_local
            + """    db.execute("ALTER TABLE orders ALTER COLUMN fee_cents SET NOT NULL")
    db.execute("ALTER TABLE orders DROP CONSTRAINT orders_fee_cents_not_null")
""",
            '    db.execute("ALTER TABLE orders ALTER COLUMN fee_cents DROP NOT NULL")\n',
        ),
        (
            "trades-order-fk",
            "trades.order_id references orders, NOT VALID",
            True,
            set_local
            + """    db.execute(
        "ALTER TABLE trades ADD CONSTRAINT trades_order_fk "
        "FOREIGN KEY (order_id) REFERENCES orders (id) NOT VALID"
    )
""",
            '    db.execute("ALTER TABLE trades DROP CONSTRAINT trades_order_fk")\n',
        ),
        (
            "trades-order-fk-validate",
            "VALIDATE the foreign key (SHARE UPDATE EXCLUSIVE: traffic goes on)",
            True,
            set_local
            + '    db.execute("ALTER TABLE trades VALIDATE CONSTRAINT trades_order_fk")\n',
            "    pass\n",
        ),
    ]
    _write_steps(folder, steps)


def available_helpers() -> tuple[bool, str]:
    """Whether this checkout's ``db`` has the helpers of issue 12 (and which are missing)."""
    from migrator.database import Database

    wanted = ("set_not_null", "add_foreign_key", "add_check")
    missing = [name for name in wanted if not hasattr(Database, name)]
    if missing:
        return False, "this checkout's db has no " + ", ".join(f"db.{m}" for m in missing)
    return True, ""


def batched_update_accepts(name: str) -> bool:
    from migrator.database import Database

    return name in inspect.signature(Database.batched_update).parameters


def helpers(
    folder: Path,
    target_batch_seconds: float | None,
    batch_size: int,
    max_rows_per_second: float | None = None,
) -> None:
    """Through the helpers, with tbmigrate's own lock timeouts and retries; the backfill
    sized as tbmigrate sizes it unless ``target_batch_seconds`` is given (a checkout
    without time-sized batches: ``batch_size``)."""
    sizing = ""
    if not batched_update_accepts("target_batch_seconds"):
        sizing = f", batch_size={batch_size}"
    elif target_batch_seconds:
        sizing = f", target_batch_seconds={target_batch_seconds}"
    if max_rows_per_second and batched_update_accepts("max_rows_per_second"):
        sizing += f", max_rows_per_second={max_rows_per_second}"
    steps: list[tuple[str, str, bool, str, str]] = [
        (
            "add-order-fee",
            "Add orders.fee_cents, default 0 for new orders",
            True,
            """    db.add_column("orders", "fee_cents", "BIGINT")
    db.execute("ALTER TABLE orders ALTER COLUMN fee_cents SET DEFAULT 0")
""",
            '    db.drop_column("orders", "fee_cents")\n',
        ),
        (
            "backfill-order-fee",
            "Fill orders.fee_cents in batches",
            False,
            f"""    db.batched_update("orders", "fee_cents = {FEE}", "fee_cents IS NULL"{sizing})
""",
            '    db.execute("UPDATE orders SET fee_cents = NULL")\n',
        ),
        (
            "index-trades-symbol",
            "Index trades by symbol and time, concurrently",
            False,
            """    db.create_index(
        "trades", ["symbol", "executed_at"], name="trades_symbol_time", concurrently=True
    )
""",
            '    db.drop_index("trades_symbol_time", concurrently=True)\n',
        ),
        (
            "order-fee-not-null",
            "orders.fee_cents NOT NULL, the safe way",
            False,
            '    db.set_not_null("orders", "fee_cents")\n',
            '    db.execute("ALTER TABLE orders ALTER COLUMN fee_cents DROP NOT NULL")\n',
        ),
        (
            "trades-order-fk",
            "trades.order_id references orders, NOT VALID then VALIDATE",
            False,
            """    db.add_foreign_key(
        "trades", ["order_id"], "orders", ["id"], name="trades_order_fk"
    )
""",
            '    db.execute("ALTER TABLE trades DROP CONSTRAINT trades_order_fk")\n',
        ),
    ]
    _write_steps(folder, steps)


PARTS = ("orders.fee_cents", "index trades_symbol_time", "foreign key trades_order_fk")


def end_state(conn: Any) -> list[str]:
    """What is missing from the series' end state in a database (empty: all there;
    ``PARTS``, all three: the database is as seeded)."""
    missing = []
    row = conn.execute(
        "SELECT is_nullable, column_default FROM information_schema.columns "
        "WHERE table_name = 'orders' AND column_name = 'fee_cents'"
    ).fetchone()
    if row is None:
        missing.append(PARTS[0])
    else:
        if row[0] != "NO":
            missing.append("orders.fee_cents NOT NULL")
        if not row[1] or not str(row[1]).startswith("0"):
            missing.append("orders.fee_cents DEFAULT 0")
    if conn.execute("SELECT to_regclass('trades_symbol_time')").fetchone()[0] is None:
        missing.append(PARTS[1])
    valid = conn.execute(
        "SELECT convalidated FROM pg_constraint WHERE conname = 'trades_order_fk'"
    ).fetchone()
    if valid is None:
        missing.append(PARTS[2])
    elif not valid[0]:
        missing.append("foreign key trades_order_fk validated")
    return missing
