"""The schema revisions this vtreg ships, known without importing Alembic or SQLAlchemy.

Knowing them here lets an up-to-date registry be opened without importing
Alembic (~100 ms), and lets the read paths (:mod:`vtreg.registry.reader`)
check a registry's revision with one SELECT; tests/registry/test_schema.py
checks this list against migrations/.
"""

from __future__ import annotations

__all__ = ["REVISIONS", "SCHEMA_HEAD"]

REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008")
"""Every migration in migrations/versions, oldest first."""

SCHEMA_HEAD = REVISIONS[-1]
