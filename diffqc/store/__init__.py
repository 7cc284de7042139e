"""Metadata storage: SQLAlchemy engines (PostgreSQL in production, a SQLite file embedded)."""
