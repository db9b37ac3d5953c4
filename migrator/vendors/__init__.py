"""What differs between PostgreSQL and SQLite, one module per vendor.

The executor, the migration lock and validation ask the vendor (``vendors.of(connection)``)
instead of branching on ``connection.vendor``: how a migrating session is set up and put
back, the migration lock, which errors mean a lock wait gave up or the connection was
lost, whether DDL rolls back (asked of the connection, as yoyo does), how a running
statement is interrupted by a signal, and whether the database is still there.
"""

from __future__ import annotations

from typing import Any

from migrator.vendors.base import Vendor


def of(connection: Any) -> Vendor:
    """The vendor object for a Django connection (one per executor or lock: it keeps
    the session state it set up)."""
    if connection.vendor == "postgresql":
        from migrator.vendors.postgresql import PostgreSQL

        return PostgreSQL(connection)
    if connection.vendor == "sqlite":
        from migrator.vendors.sqlite import SQLite

        return SQLite(connection)
    return Vendor(connection)


def is_lock_timeout(exc: BaseException) -> bool:
    """A lock wait that gave up, whichever database said so: for code that has an error
    but no connection at hand (a validation check).  With a connection, ask its vendor."""
    from migrator.vendors import postgresql, sqlite

    return postgresql.gave_up_waiting(exc) or sqlite.gave_up_waiting(exc)


__all__ = ["Vendor", "is_lock_timeout", "of"]
