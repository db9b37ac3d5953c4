"""What differs between PostgreSQL and SQLite, one module per vendor.

Code elsewhere asks the vendor (``vendors.of(connection)``) instead of branching on
``connection.vendor``: session set-up, the migration lock, timeouts and retries,
whether DDL rolls back, backups, dry-run capture and catalog introspection.
"""
