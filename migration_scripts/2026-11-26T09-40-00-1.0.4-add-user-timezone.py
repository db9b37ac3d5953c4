"""Add a timezone column to users.

The seed left the SQLite rollback unimplemented; ``db.drop_column`` rebuilds the
table on SQLite without touching the rows of the tables that reference users.
"""

version = "1.0.4"
name = "add-user-timezone"
description = "Add timezone column to users table"


def up(db):
    db.add_column("users", "timezone", "VARCHAR(64) NOT NULL DEFAULT 'UTC'")


def down(db):
    db.drop_column("users", "timezone")
