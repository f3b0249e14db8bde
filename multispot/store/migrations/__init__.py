"""Alembic migrations of the PostgreSQL job store; ``PostgresStore`` runs them when it opens."""
