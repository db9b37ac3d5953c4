"""Add user notifications table (the seed guide's example, written once for both databases)."""

version = "1.0.3"
name = "add-notifications"
description = "Add user notifications table"


def up(db):
    db.execute(f"""
        CREATE TABLE notifications (
            id {db.auto_pk},
            user_id BIGINT NOT NULL REFERENCES users (id),
            title TEXT NOT NULL,
            message TEXT NOT NULL,
            read BOOLEAN NOT NULL DEFAULT FALSE,
            created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
        )
    """)
    db.create_index("notifications", ["user_id", "read"])


def down(db):
    db.execute("DROP TABLE notifications")
