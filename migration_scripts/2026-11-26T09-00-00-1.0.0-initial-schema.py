"""Initial TradingBot schema: users, trades, and orders (an order may point at its trade)."""

version = "1.0.0"
name = "initial-schema"
description = "Create users, trades and orders"


def up(db):
    db.execute(f"""
        CREATE TABLE users (
            id {db.auto_pk},
            username VARCHAR(150) NOT NULL UNIQUE,
            email VARCHAR(254) NOT NULL,
            is_active BOOLEAN NOT NULL DEFAULT TRUE,
            created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
        )
    """)
    db.execute(f"""
        CREATE TABLE trades (
            id {db.auto_pk},
            user_id BIGINT NOT NULL REFERENCES users (id),
            symbol VARCHAR(20) NOT NULL,
            side VARCHAR(4) NOT NULL CHECK (side IN ('buy', 'sell')),
            quantity NUMERIC(20, 8) NOT NULL,
            price NUMERIC(20, 8) NOT NULL,
            executed_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
        )
    """)
    db.create_index("trades", ["user_id"])
    db.create_index("trades", ["symbol", "executed_at"])
    db.execute(f"""
        CREATE TABLE orders (
            id {db.auto_pk},
            user_id BIGINT NOT NULL REFERENCES users (id),
            trade_id BIGINT REFERENCES trades (id),
            symbol VARCHAR(20) NOT NULL,
            side VARCHAR(4) NOT NULL CHECK (side IN ('buy', 'sell')),
            order_type VARCHAR(10) NOT NULL DEFAULT 'market',
            quantity NUMERIC(20, 8) NOT NULL,
            limit_price NUMERIC(20, 8),
            status VARCHAR(16) NOT NULL DEFAULT 'open',
            created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
        )
    """)
    db.create_index("orders", ["user_id"])
    db.create_index("orders", ["trade_id"])


def down(db):
    db.execute("DROP TABLE orders")
    db.execute("DROP TABLE trades")
    db.execute("DROP TABLE users")
