"""The TradingBot starter scripts: up, down and up again on both databases, data kept."""

from django.db import connections

from migrator import conf, history
from migrator.database import Database
from migrator.scripts import load_scripts
from tests.conftest import rows, tables_of, tbmigrate

TRADING_TABLES = {
    "users",
    "trades",
    "orders",
    "user_preferences",
    "trading_sessions",
    "notifications",
}


def test_the_starter_scripts_are_the_guides_five():
    loaded = load_scripts(conf.scripts_dir())
    assert [s.label for s in loaded] == [
        "1.0.0 initial-schema",
        "1.0.1 add-user-preferences",
        "1.0.2 add-trading-sessions",
        "1.0.3 add-notifications",
        "1.0.4 add-user-timezone",
    ]
    assert all(s.reversible and s.atomic for s in loaded)


def seed(db):
    db.execute("INSERT INTO users (username, email) VALUES (%s, %s)", ["ada", "ada@example.com"])
    user = db.scalar("SELECT id FROM users WHERE username = %s", ["ada"])
    db.execute(
        "INSERT INTO trades (user_id, symbol, side, quantity, price) VALUES (%s, %s, %s, %s, %s)",
        [user, "BTCUSD", "buy", "0.5", "64000.5"],
    )
    trade = db.scalar("SELECT id FROM trades")
    db.execute(
        "INSERT INTO orders (user_id, trade_id, symbol, side, quantity, status) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        [user, trade, "BTCUSD", "buy", "0.5", "filled"],
    )
    db.execute("INSERT INTO user_preferences (user_id, theme) VALUES (%s, %s)", [user, "dark"])
    db.execute("INSERT INTO trading_sessions (user_id, status) VALUES (%s, %s)", [user, "closed"])
    db.execute(
        "INSERT INTO notifications (user_id, title, message) VALUES (%s, %s, %s)",
        [user, "Filled", "Your order was filled"],
    )


def counts(target):
    return {t: rows(target, f"SELECT COUNT(*) FROM {t}")[0][0] for t in sorted(TRADING_TABLES)}


def test_starter_scripts_up_down_up(target):
    assert tbmigrate("run", database=target).code == 0
    assert tables_of(target) >= TRADING_TABLES
    db = Database(connections[target.alias])
    assert db.scalar("SELECT timezone FROM users WHERE 1 = 0") is None
    seed(db)
    assert rows(target, "SELECT timezone FROM users") == [("UTC",)]

    # 1.0.4 down drops a column of users, the parent of four tables: every row stays.
    assert tbmigrate("rollback", "--no-input", database=target).code == 0
    assert "timezone" not in db.columns("users")
    assert counts(target) == dict.fromkeys(sorted(TRADING_TABLES), 1)
    assert rows(
        target, "SELECT o.status, t.symbol FROM orders o JOIN trades t ON t.id = o.trade_id"
    ) == [("filled", "BTCUSD")]
    assert tbmigrate("run", database=target).code == 0
    assert rows(target, "SELECT username, timezone FROM users") == [("ada", "UTC")]

    db.execute("DELETE FROM notifications")
    db.execute("DELETE FROM trading_sessions")
    db.execute("DELETE FROM user_preferences")
    db.execute("DELETE FROM orders")
    db.execute("DELETE FROM trades")
    db.execute("DELETE FROM users")
    assert tbmigrate("rollback", "--to", "0", "--no-input", database=target).code == 0
    assert tables_of(target) & TRADING_TABLES == set()
    assert history.load(target.alias) == []
    assert tbmigrate("run", database=target).code == 0
    assert tbmigrate("status", "--check", database=target).code == 0


def test_starter_indexes_and_foreign_keys_exist(target):
    tbmigrate("run", database=target)
    connection = connections[target.alias]
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "orders")
    foreign = {c["columns"][0]: c["foreign_key"] for c in constraints.values() if c["foreign_key"]}
    assert foreign == {"user_id": ("users", "id"), "trade_id": ("trades", "id")}
    indexed = {
        tuple(c["columns"]) for c in constraints.values() if c["index"] and not c["primary_key"]
    }
    assert {("user_id",), ("trade_id",)} <= indexed
