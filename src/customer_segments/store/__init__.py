"""Persistence on SQLAlchemy Core (asyncio): PostgreSQL via asyncpg, or embedded SQLite."""
