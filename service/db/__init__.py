"""Database: ORM models, the advanced-alchemy configuration, and Alembic migrations."""
