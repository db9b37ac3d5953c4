"""tbmigrate: versioned up/down migrations for the TradingBot databases."""

__version__ = "0.1.0"
