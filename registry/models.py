"""SQLAlchemy 2 models of the registry. The schema itself is owned by Alembic (migrations/).

Only :class:`registry.service.Registry` writes these tables.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "AuditCheckpoint",
    "AuditEvent",
    "AuditEventKey",
    "AuditLog",
    "AuditTile",
    "Base",
    "ChainHead",
    "Key",
    "Plugin",
    "PluginEnvelope",
    "PluginPlatform",
    "PluginSigner",
    "UtcDateTime",
]

# Stable constraint names, so migrations can refer to them on every engine.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# 64-bit on PostgreSQL; INTEGER on SQLite, which is 64-bit there and the rowid alias.
_BigInt = BigInteger().with_variant(Integer, "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every engine (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """To the database: refuse a naive time, store UTC (naive on SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """From the database: always an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """The declarative base of every table, with constraint names fixed by a convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Key(Base):
    """A publisher key the operator trusts (or once trusted: revoked keys stay, marked)."""

    __tablename__ = "keys"

    keyid: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    # PublicKey.raw: an ed25519 key's 32 bytes, or an ECDSA key's DER SubjectPublicKeyInfo
    # (91 bytes for P-256, 120 for P-384). Neither SQLite's BLOB nor PostgreSQL's bytea has
    # a length, so migration 0001's LargeBinary(32) holds both as it is.
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    # JSON list of glob patterns over plugin names; "[]" means any name.
    scopes: Mapped[str] = mapped_column(Text, default="[]")
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    added_at: Mapped[datetime] = mapped_column(UtcDateTime)
    added_by: Mapped[str] = mapped_column(String(255))
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(255))
    revoked_reason: Mapped[str | None] = mapped_column(Text)


UNREVOKED = "revoked_at IS NULL"  # the condition of ix_plugins_floor, a partial index


class Plugin(Base):
    """A trusted plugin version: its content digest and the envelope it was trusted with."""

    __tablename__ = "plugins"
    __table_args__ = (
        Index("ix_plugins_name_version", "name", "version"),
        # The rollback floor of (name, platform), its newest unrevoked version whose
        # content covers the platform, is found walking this range from its end:
        # one probe when the newest version covers it, as it usually does.
        Index(
            "ix_plugins_floor",
            "name",
            "version_key",
            # PostgreSQL's postgresql_where is the same condition, added by
            # postgresql_options() when a PostgreSQL engine is made: naming it here would
            # import the PostgreSQL dialect (and asyncio) into every SQLite process.
            sqlite_where=text(UNREVOKED),
        ),
        # `vtreg list`'s order, walked by its stream and its --after cursor.
        Index("ix_plugins_list", "name", "trusted_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(128))
    # SemVer.sort_key() of version: bytes, because BLOB and bytea compare bytewise
    # on every engine, where text compares by the database's collation.
    version_key: Mapped[bytes] = mapped_column(LargeBinary)
    content_digest: Mapped[str] = mapped_column(String(71), unique=True)
    # The statement's own platform/library (the first platform's, when it has several);
    # every platform it covers is in plugin_platforms.
    library: Mapped[str] = mapped_column(String(255))
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    # The `expires` of the statement `envelope` signs (None: never), so that the
    # effective status needs no envelope parsed (vtreg.verifier.status).
    signature_expires: Mapped[datetime | None] = mapped_column(UtcDateTime)
    threshold: Mapped[int] = mapped_column(Integer, default=1)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    trusted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    trusted_by: Mapped[str] = mapped_column(String(255))
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(255))
    revoked_reason: Mapped[str | None] = mapped_column(Text)

    signers: Mapped[list[PluginSigner]] = relationship(
        back_populates="plugin", cascade="all, delete-orphan", lazy="selectin"
    )
    platform_rows: Mapped[list[PluginPlatform]] = relationship(
        back_populates="plugin", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms this content carries a library for, sorted."""
        return tuple(sorted(p.platform for p in self.platform_rows))


class PluginPlatform(Base):
    """A platform a trusted content carries a library for (one row per platform)."""

    __tablename__ = "plugin_platforms"

    plugin_id: Mapped[int] = mapped_column(ForeignKey("plugins.id"), primary_key=True)
    platform: Mapped[str] = mapped_column(String(64), primary_key=True)

    plugin: Mapped[Plugin] = relationship(back_populates="platform_rows")


class PluginSigner(Base):
    """Which keys' signatures counted in the envelope a plugin content is trusted with now."""

    __tablename__ = "plugin_signers"

    plugin_id: Mapped[int] = mapped_column(ForeignKey("plugins.id"), primary_key=True)
    keyid: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)

    plugin: Mapped[Plugin] = relationship(back_populates="signers")


class PluginEnvelope(Base):
    """An envelope once accepted for a trusted content: the history behind ``Plugin.envelope``.

    ``signers`` are the key ids whose signatures counted, sorted, space-separated.
    """

    __tablename__ = "plugin_envelopes"
    # Covers what `vtreg list` reads of each content's history: who signed (not the bytes).
    __table_args__ = (Index("ix_plugin_envelopes_signers", "plugin_id", "signers"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plugin_id: Mapped[int] = mapped_column(ForeignKey("plugins.id"), index=True)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    signers: Mapped[str] = mapped_column(Text)
    accepted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    accepted_by: Mapped[str] = mapped_column(String(255))


class AuditEvent(Base):
    """One entry of the append-only, hash-chained audit log.

    ``hash = SHA-256(prev_hash || canonical(event))`` (see registry.audit), so
    editing, deleting, inserting or reordering rows breaks the chain.
    """

    __tablename__ = "audit_events"
    # Every filter of `vtreg audit` walks one of these newest-first and stops at --limit.
    __table_args__ = (
        Index("ix_audit_events_plugin_seq", "plugin", "seq"),
        Index("ix_audit_events_action_seq", "action", "seq"),
        Index("ix_audit_events_outcome_seq", "outcome", "seq"),
        Index("ix_audit_events_at", "at"),
    )

    seq: Mapped[int] = mapped_column(_BigInt, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    plugin: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(128))
    digest: Mapped[str | None] = mapped_column(String(71))
    # Key ids involved, space-separated and sorted; audit_event_keys indexes them.
    keyids: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # Not part of the event (see registry.tlog): its Merkle leaf hash, SHA-256(0x00 ||
    # canonical(event)), from which the rightmost, partial level-0 tile is read.
    leaf: Mapped[bytes | None] = mapped_column(LargeBinary)


class AuditEventKey(Base):
    """Index of audit events by key id ("what happened involving key K?")."""

    __tablename__ = "audit_event_keys"
    # Looked up by its primary key only: on SQLite the key is the table (one B-tree).
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012 - SQLAlchemy's own attribute

    keyid: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(_BigInt, ForeignKey("audit_events.seq"), primary_key=True)


class ChainHead(Base):
    """The one row naming the last audit event; writers lock it to append in order."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(_BigInt)
    hash: Mapped[str] = mapped_column(String(64))


class AuditTile(Base):
    """One tile of the audit log's Merkle tree (C2SP tlog-tiles: up to 256 hashes, 8 KiB).

    Level 0 holds leaf hashes; a hash at level L + 1 is the root of a full tile at
    level L. Written in the same transaction as the event that fills it or, above
    level 0, extends it; the partial level-0 tile is its events' ``leaf`` hashes
    (registry.tlog).
    """

    __tablename__ = "audit_tiles"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(_BigInt, primary_key=True, autoincrement=False)
    hashes: Mapped[bytes] = mapped_column(LargeBinary)


class AuditLog(Base):
    """The one row naming the log: its checkpoint origin and the log key's C2SP vkey."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    origin: Mapped[str] = mapped_column(String(255))
    vkey: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AuditCheckpoint(Base):
    """A signed checkpoint (a C2SP signed note), kept to embed in proofs and exports.

    Signed, so the database owner cannot change one unseen; the signer's own
    record of the last one it signed lives outside the database.
    """

    __tablename__ = "audit_checkpoints"

    size: Mapped[int] = mapped_column(_BigInt, primary_key=True, autoincrement=False)
    note: Mapped[str] = mapped_column(Text)
    signed_at: Mapped[datetime] = mapped_column(UtcDateTime)


def postgresql_options() -> None:
    """Give the models the options only PostgreSQL reads (``ix_plugins_floor``'s
    ``postgresql_where``), once a PostgreSQL engine is about to be used: DDL and
    ``alembic check`` against PostgreSQL then see the partial index the migrations make."""
    floor = next(i for i in Base.metadata.tables["plugins"].indexes if i.name == "ix_plugins_floor")
    options = floor.dialect_options["postgresql"]
    if options["where"] is None:
        options["where"] = text(UNREVOKED)
