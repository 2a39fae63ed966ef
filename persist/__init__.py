"""Drains the events ring to PostgreSQL, hot state to Redis, market data to files. Never on the hot path."""
