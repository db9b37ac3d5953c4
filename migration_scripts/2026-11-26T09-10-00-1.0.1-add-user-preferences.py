"""Add the user preferences table (one row per user)."""

version = "1.0.1"
name = "add-user-preferences"
description = "Add user preferences table"


def up(db):
    db.execute(f"""
        CREATE TABLE user_preferences (
            id {db.auto_pk},
            user_id BIGINT NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
            theme VARCHAR(20) NOT NULL DEFAULT 'light',
            email_notifications BOOLEAN NOT NULL DEFAULT TRUE,
            default_risk_percent NUMERIC(5, 2) NOT NULL DEFAULT 1.00,
            updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
        )
    """)


def down(db):
    db.execute("DROP TABLE user_preferences")
