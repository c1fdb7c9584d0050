"""What ``vtreg list`` needs to judge every trusted content without parsing its envelope.

``plugins.signature_expires`` is the ``expires`` of the statement the current
envelope signs (NULL: it never expires), the one field of the envelope the
effective status reads besides the signers ``plugin_signers`` already holds
(vtreg.verifier.status). Existing rows get it from their envelope.
``ix_plugins_list`` is the order ``vtreg list`` prints in (name, time trusted),
so the listing and its ``--after`` cursor walk an index instead of sorting
every row first; ``ix_plugin_envelopes_signers`` covers the signers of every
envelope accepted for a content, which the listing reads (``former_signers``)
without touching the envelopes themselves.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

from vtreg.registry.models import UtcDateTime
from vtreg.verifier.envelope import parse_envelope, parse_statement
from vtreg.verifier.errors import FormatError

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    op.add_column(
        "plugins", sa.Column("signature_expires", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index("ix_plugins_list", "plugins", ["name", "trusted_at", "id"], unique=False)
    op.create_index(
        "ix_plugin_envelopes_signers", "plugin_envelopes", ["plugin_id", "signers"], unique=False
    )
    bind = op.get_bind()
    plugins = sa.table("plugins", sa.column("id"), sa.column("signature_expires", UtcDateTime()))
    rows = bind.execute(sa.text("SELECT id, envelope FROM plugins ORDER BY id"))
    updates = []
    for plugin_id, envelope in rows:
        expires = _expires(bytes(envelope))
        if expires is not None:
            updates.append({"plugin_id": plugin_id, "expires": expires})
    for low in range(0, len(updates), _BATCH):
        bind.execute(
            plugins.update()
            .where(plugins.c.id == sa.bindparam("plugin_id"))
            .values(signature_expires=sa.bindparam("expires")),
            updates[low : low + _BATCH],
        )


def _expires(envelope: bytes) -> datetime | None:
    # A stored envelope was verified when it was accepted; one that no longer
    # parses (a later, stricter parser) is refused at every load, and its
    # status says so from the signers and the rest of its record.
    try:
        return parse_statement(parse_envelope(envelope).payload_bytes()).predicate.expires
    except FormatError:
        return None


def downgrade() -> None:
    op.drop_index("ix_plugin_envelopes_signers", table_name="plugin_envelopes")
    op.drop_index("ix_plugins_list", table_name="plugins")
    # In place on both engines (SQLite 3.35 and later): a batch copy of plugins would
    # have to drop a table that plugin_signers and plugin_envelopes refer to.
    op.execute("ALTER TABLE plugins DROP COLUMN signature_expires")
