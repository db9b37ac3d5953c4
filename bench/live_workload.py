"""The trading workload of ``bench/live.py``: one client process, and the long reader.

A client is a process of its own (``python bench/live_workload.py --url ... --out F``)
with one connection, as one pooled connection of a trading app: it starts its
transactions on a schedule (Poisson arrivals at its share of the total rate, so the
load is paced, never a tight loop) until the parent sends SIGUSR1 or its deadline
passes, and writes every transaction to its own file, one line each::

    scheduled<TAB>started<TAB>ended<TAB>kind<TAB>error (empty when it succeeded)

Times are ``time.time()`` (the same clock as the parent's and tbmigrate's audit
events on this machine).  A client that falls behind its schedule (its connection
waited on a lock) runs the missed transactions back to back, as an app draining its
queue would, but never more than ``MAX_LAG`` seconds' worth: older slots are dropped
and counted on the last line (``#skipped N``).

``Blocker`` is the long reader of the blocker scenario: a session that holds a read
transaction on ``orders`` open for ``hold`` seconds, commits, waits ``gap`` seconds,
and does it again, so every ``ACCESS EXCLUSIVE`` request on ``orders`` has to wait
or time out.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
import time

MAX_LAG = 1.0  # seconds of missed slots a late client still runs

SYMBOLS = [
    "BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD", "XRP-USD", "DOT-USD", "AVAX-USD",
    "LINK-USD", "LTC-USD", "BCH-USD", "ATOM-USD", "NEAR-USD", "UNI-USD", "AAVE-USD",
    "ETC-USD", "XLM-USD", "ALGO-USD", "FIL-USD", "APT-USD", "ARB-USD",
]  # fmt: skip

# kind -> (weight, SQL).  One statement each, in autocommit: one transaction.
KINDS: dict[str, tuple[float, str]] = {
    "insert_order": (
        0.20,
        "INSERT INTO orders (user_id, symbol, side, qty, price, status, created_at, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, 'open', now(), now())",
    ),
    "update_order": (
        0.20,
        "UPDATE orders SET status = %s, updated_at = now() WHERE id = %s",
    ),
    "update_trade": (
        0.10,
        "UPDATE trades SET settled_at = now() WHERE id = %s",
    ),
    "read_trades": (
        0.25,
        "SELECT id, symbol, side, qty, price, executed_at FROM trades "
        "WHERE user_id = %s ORDER BY executed_at DESC LIMIT 20",
    ),
    "read_open_orders": (
        0.25,
        "SELECT id, symbol, side, qty, price, created_at FROM orders "
        "WHERE user_id = %s AND status = 'open' ORDER BY created_at DESC LIMIT 50",
    ),
}


def params(kind: str, rnd: random.Random, users: int, orders: int, trades: int) -> tuple:
    if kind == "insert_order":
        return (
            rnd.randint(1, users),
            rnd.choice(SYMBOLS),
            rnd.choice(("buy", "sell")),
            round(rnd.uniform(0.01, 5), 4),
            round(rnd.uniform(1, 60_000), 2),
        )
    if kind == "update_order":
        return (rnd.choice(("filled", "cancelled", "open")), rnd.randint(1, orders))
    if kind == "update_trade":
        return (rnd.randint(1, trades),)
    return (rnd.randint(1, users),)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:300]


def client(args: argparse.Namespace) -> None:
    import psycopg

    stop = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rnd = random.Random(args.seed)
    kinds = list(KINDS)
    weights = [KINDS[k][0] for k in kinds]
    options = f"-c statement_timeout={int(args.timeout * 1000)}" if args.timeout else ""
    conn = psycopg.connect(
        args.url,
        autocommit=True,
        application_name=f"tblive client {args.seed}",
        options=options,
    )
    parent = os.getppid()
    skipped = 0
    with open(args.out, "w", buffering=1 << 16) as out:
        # Everyone starts together, each at a random phase of its first interval.
        sched = args.start + rnd.expovariate(args.rate)
        while not stop.is_set():
            now = time.time()
            if now >= args.deadline or os.getppid() != parent:
                break
            if sched > now:
                stop.wait(sched - now)
                if stop.is_set():
                    break
            elif now - sched > MAX_LAG:
                while now - sched > MAX_LAG:
                    sched += rnd.expovariate(args.rate)
                    skipped += 1
            kind = rnd.choices(kinds, weights)[0]
            values = params(kind, rnd, args.users, args.orders, args.trades)
            started = time.time()
            error = ""
            try:
                cursor = conn.execute(KINDS[kind][1], values)
                if cursor.description is not None:
                    cursor.fetchall()
            except psycopg.Error as exc:
                error = one_line(exc)
                if conn.broken:
                    conn = psycopg.connect(args.url, autocommit=True, options=options)
            ended = time.time()
            out.write(f"{sched:.6f}\t{started:.6f}\t{ended:.6f}\t{kind}\t{error}\n")
            sched += rnd.expovariate(args.rate)
        out.write(f"#skipped {skipped}\n")
    conn.close()


class Blocker:
    """A long reader on ``orders``: BEGIN; SELECT ... LIMIT 1; idle ``hold`` s; COMMIT;
    ``gap`` s; again, until stopped.  Runs in a thread of the parent on a connection of
    its own (application_name ``tblive blocker``)."""

    def __init__(self, url: str, hold: float, gap: float) -> None:
        self.url = url
        self.hold = hold
        self.gap = gap
        self.holds: list[tuple[float, float]] = []  # (began, committed) of each read
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tblive-blocker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.url, application_name="tblive blocker") as conn:
                while not self._stop.is_set():
                    began = time.time()
                    with conn.transaction():
                        conn.execute("SELECT id, status FROM orders LIMIT 1").fetchall()
                        self._stop.wait(self.hold)
                    self.holds.append((began, time.time()))
                    self._stop.wait(self.gap)
        except Exception as exc:  # reported by the parent, never silent
            self.error = one_line(exc)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="one client of bench/live.py's workload")
    add = parser.add_argument
    add("--url", required=True)
    add("--out", required=True)
    add("--seed", type=int, default=1)
    add("--rate", type=float, required=True, help="this client's transactions per second")
    add("--start", type=float, required=True, help="time.time() of the first transaction")
    add("--deadline", type=float, required=True, help="time.time() to stop at the latest")
    add("--timeout", type=float, default=60.0, help="statement_timeout, seconds (0: none)")
    add("--users", type=int, required=True)
    add("--orders", type=int, required=True)
    add("--trades", type=int, required=True)
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        client(parse_args())
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: end quietly
        sys.exit(130)
