"""The floor: what a migration run costs with nothing but the bare driver.

``python bench/floor.py up|down sqlite PATH N`` or ``... up|down postgresql URL N``:
the same DDL as the generated scripts plus one history insert (or delete) per
migration, each in its own transaction, through sqlite3 or psycopg.  No tool can do
less work than this and still keep a history, so every command's time is shown as a
ratio to it.
"""

from __future__ import annotations

import sys


def statements(action: str, n: int):
    for i in range(1, n + 1) if action == "up" else range(n, 0, -1):
        if action == "up":
            yield (
                f"CREATE TABLE bench_t{i} (id INTEGER PRIMARY KEY, label VARCHAR(40))",
                "INSERT INTO floor_history (version, name) VALUES (%s, %s)",
                (f"0.0.{i}", f"t{i}"),
            )
        else:
            yield (
                f"DROP TABLE bench_t{i}",
                "DELETE FROM floor_history WHERE version = %s",
                (f"0.0.{i}",),
            )


HISTORY = "CREATE TABLE IF NOT EXISTS floor_history (version VARCHAR(50) PRIMARY KEY, name TEXT)"


def sqlite(action: str, path: str, n: int) -> None:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(HISTORY)
    for ddl, sql, params in statements(action, n):
        conn.execute("BEGIN")
        conn.execute(ddl)
        conn.execute(sql.replace("%s", "?"), params)
        conn.execute("COMMIT")
    conn.close()


def postgresql(action: str, url: str, n: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(HISTORY)
        for ddl, sql, params in statements(action, n):
            with conn.transaction():
                conn.execute(ddl)
                conn.execute(sql, params)


if __name__ == "__main__":
    action, vendor, target, count = sys.argv[1:5]
    {"sqlite": sqlite, "postgresql": postgresql}[vendor](action, target, int(count))
