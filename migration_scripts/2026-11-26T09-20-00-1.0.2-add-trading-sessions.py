"""Add trading sessions; a session with status 'active' is trading right now."""

version = "1.0.2"
name = "add-trading-sessions"
description = "Add trading sessions with a status column"


def up(db):
    db.execute(f"""
        CREATE TABLE trading_sessions (
            id {db.auto_pk},
            user_id BIGINT NOT NULL REFERENCES users (id),
            strategy VARCHAR(100) NOT NULL DEFAULT 'manual',
            status VARCHAR(16) NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'paused', 'closed')),
            started_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            ended_at TIMESTAMP
        )
    """)
    db.create_index("trading_sessions", ["user_id"])
    db.create_index("trading_sessions", ["status"])


def down(db):
    db.execute("DROP TABLE trading_sessions")
