"""Helpers shared by the validation tests (the fixtures live in conftest.py)."""

import contextlib
import os
import subprocess
import sys
import textwrap

from tests.conftest import pg_admin, snapshot

AUDIT = "tbmigrate_audit_event"


def checks(result, level=None):
    """The check lines of a text report: ``[(level, name, message)]``."""
    found = []
    for line in result.out.splitlines():
        head, _, rest = line.partition("  ")
        if head in ("PASS", "WARN", "FAIL"):
            name, _, message = rest.partition(": ")
            found.append((head, name, message))
    return [c for c in found if level is None or c[0] == level]


def scratch_databases():
    """PostgreSQL scratch databases this process made and did not drop."""
    with pg_admin() as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                [f"tbmigrate_scratch_{os.getpid()}_%"],
            )
        ]


def unchanged(database):
    """Every table and row, except the audit log (validation appends to it)."""
    return {k: v for k, v in snapshot(database).items() if k != AUDIT}


def hold_sqlite_write_lock(path):
    """Another process that takes SQLite's write lock and keeps it until killed."""
    code = textwrap.dedent(f"""
        import sqlite3, sys, time
        conn = sqlite3.connect({str(path)!r}, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@contextlib.contextmanager
def plain_user(database):
    """An alias on ``database`` (PostgreSQL) for a role that is neither superuser nor CREATEDB."""
    import psycopg

    from migrator import targets

    role = f"{database.name}_user"
    with pg_admin() as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    alias = f"{database.alias}_user"
    try:
        with psycopg.connect(database.url, autocommit=True) as conn:
            conn.execute(f'GRANT ALL ON SCHEMA public TO "{role}"')
            conn.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
            conn.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        targets.add(alias, database.url.replace("postgres@", f"{role}@"))
        yield alias
    finally:
        targets.remove(alias)
        with pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def statements_script(folder, version, name, up, down, **kwargs):
    """A script whose up and down run these lists of SQL statements, in order."""
    from tests.conftest import write_script

    return write_script(
        folder,
        version,
        name,
        up=f"for sql in {list(up)!r}:\n    db.execute(sql)",
        down=f"for sql in {list(down)!r}:\n    db.execute(sql)" if down is not None else None,
        **kwargs,
    )


def by_hand(database, statements):
    """Run SQL on ``database`` as a person at a console would: its own session, autocommit.

    PostgreSQL: a psycopg connection of its own.  SQLite: the test's Django connection
    outside any transaction (closed after, so that the next reader sees the new schema).
    """
    if database.vendor == "postgresql":
        import psycopg

        with psycopg.connect(database.url, autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql)
        return
    from django.db import connections

    connection = connections[database.alias]
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
    connection.close()


def sqlite_rebuild(table, change, columns="*"):
    """The statements that rebuild a SQLite table with ``change(sql)`` applied to its
    CREATE TABLE, keeping its rows, indexes and triggers: SQLite's own 12-step recipe
    (https://sqlite.org/lang_altertable.html#otheralter), as a person would type it."""

    def make(database):
        from django.db import connections

        connection = connections[database.alias]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = %s", [table]
            )
            (sql,) = cursor.fetchone()
            cursor.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name = %s "
                "AND type IN ('index', 'trigger') AND sql IS NOT NULL",
                [table],
            )
            dependents = [row[0] for row in cursor.fetchall()]
        new_sql = change(sql)
        assert new_sql != sql, f"the change does not apply to {sql}"
        _head, _, body = new_sql.partition("(")
        return [
            "PRAGMA foreign_keys = OFF",
            "PRAGMA legacy_alter_table = ON",
            f'CREATE TABLE "{table}__new" (' + body,
            f'INSERT INTO "{table}__new" SELECT {columns} FROM "{table}"',
            f'DROP TABLE "{table}"',
            f'ALTER TABLE "{table}__new" RENAME TO "{table}"',
            *dependents,
            "PRAGMA legacy_alter_table = OFF",
            "PRAGMA foreign_keys = ON",
        ]

    return make
