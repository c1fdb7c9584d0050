"""Alembic environment and versions for the vtreg registry schema."""
