"""The registry: the one writer of the trust store and the audit log.

Every change (key added or revoked, plugin trusted or revoked) is written in
the same transaction as its audit event, and every trust decision made through
:meth:`Registry.verify_plugin` or :meth:`Registry.trust` is recorded, allowed
or refused. :class:`Registry` implements the loader's ``TrustPolicy`` and
``AuditSink`` protocols.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from vtreg.loader.protocols import AuditEvent
from vtreg.verifier.envelope import format_time
from vtreg.verifier.errors import (
    NotFoundError,
    PolicyError,
    SignatureError,
    UsageError,
    VerificationError,
)
from vtreg.verifier.keys import PublicKey
from vtreg.verifier.manifest import SemVer, check_plugin_name
from vtreg.verifier.signatures import TrustedKey, VerifiedPlugin, verify
from vtreg.verifier.tree import PluginTree

from . import audit
from .db import connect, database_errors, default_url, ensure_schema, normalize_url
from .models import Key, Plugin, PluginSigner
from .statements import Cursor, Statements

__all__ = ["KeyInfo", "PluginInfo", "Registry", "TrustResult", "default_actor"]

ENV_ACTOR = "VTREG_ACTOR"


class _Writer(NamedTuple):
    """The cursor of a writing transaction and the chain head it has locked."""

    cursor: Cursor
    head: audit.ChainHeadState


class _Version(NamedTuple):
    """One trusted version of a plugin name, as the load-time decision needs it."""

    content_digest: str
    version: str
    pinned: bool
    threshold: int
    revoked_at: datetime | None
    revoked_reason: str | None


def default_actor() -> str:
    """Who is acting: ``$VTREG_ACTOR``, else ``user@host``."""
    configured = os.environ.get(ENV_ACTOR)
    if configured:
        return configured
    try:
        user = getpass.getuser()
    except OSError:
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class KeyInfo:
    keyid: str
    name: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    added_at: datetime
    added_by: str
    revoked_at: datetime | None
    revoked_reason: str | None

    @classmethod
    def of(cls, row: Key) -> KeyInfo:
        return cls(
            row.keyid,
            row.name,
            tuple(json.loads(row.scopes)),
            row.expires_at,
            row.added_at,
            row.added_by,
            row.revoked_at,
            row.revoked_reason,
        )

    def same_terms(self, name: str | None, scopes: Sequence[str]) -> bool:
        """Whether adding the key again asks for the name and scopes it has.

        The expiry is not compared: ``--expires 90d`` re-run tomorrow names a
        later date, and a provisioning script that re-adds its keys must not
        fail. The stored expiry stands; the CLI says so when they differ.
        """
        named = name is None or name == self.name
        return named and sorted(scopes) == sorted(self.scopes)

    @property
    def may_sign(self) -> str:
        return ", ".join(self.scopes) or "any plugin"

    @property
    def expires_text(self) -> str:
        return _time(self.expires_at) or "never"

    def terms(self) -> str:
        return f"{self.name}, may sign {self.may_sign}, expires {self.expires_text}"

    def status(self, at: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and at >= self.expires_at:
            return "expired"
        return "trusted"

    def to_json(self, at: datetime) -> dict[str, Any]:
        return {
            "keyid": self.keyid,
            "name": self.name,
            "scopes": list(self.scopes),
            "expires_at": _time(self.expires_at),
            "added_at": _time(self.added_at),
            "added_by": self.added_by,
            "revoked_at": _time(self.revoked_at),
            "revoked_reason": self.revoked_reason,
            "status": self.status(at),
        }


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    content_digest: str
    platform: str
    signers: tuple[str, ...]
    threshold: int
    pinned: bool
    trusted_at: datetime
    trusted_by: str
    revoked_at: datetime | None
    revoked_reason: str | None

    @classmethod
    def of(cls, row: Plugin) -> PluginInfo:
        return cls(
            row.name,
            row.version,
            row.content_digest,
            row.platform,
            tuple(sorted(s.keyid for s in row.signers)),
            row.threshold,
            row.pinned,
            row.trusted_at,
            row.trusted_by,
            row.revoked_at,
            row.revoked_reason,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "content_digest": self.content_digest,
            "platform": self.platform,
            "signers": list(self.signers),
            "threshold": self.threshold,
            "pinned": self.pinned,
            "trusted_at": _time(self.trusted_at),
            "trusted_by": self.trusted_by,
            "revoked_at": _time(self.revoked_at),
            "revoked_reason": self.revoked_reason,
            "status": "revoked" if self.revoked_at else "trusted",
        }


@dataclass(frozen=True)
class TrustResult:
    plugin: PluginInfo
    verified: VerifiedPlugin
    created: bool
    changed: bool
    newer: str | None  # the newest trusted version, if this one is older


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value else None


def _subject(verified: VerifiedPlugin) -> tuple[str, str, str]:
    return verified.name, verified.version, verified.content_digest


class Registry:
    """The trust store and audit log, on SQLite or PostgreSQL.

    Use :meth:`open`; close with :meth:`close` or a ``with`` block.
    """

    def __init__(self, engine: Engine, url: str, actor: str | None = None) -> None:
        self.engine = engine
        self.url = url
        self.actor = actor or default_actor()

    @classmethod
    def open(cls, url: str | None = None, *, upgrade: bool = False) -> Registry:
        """Open (creating at head if new) the registry at ``url``, else the default one.

        Raises:
            RegistryError: unreachable, corrupt, or an older schema (run
                ``vtreg db upgrade``).
            UsageError: ``url`` is not a database URL.
        """
        url = normalize_url(url or default_url())
        engine = connect(url)
        try:
            ensure_schema(engine, upgrade=upgrade)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- sessions ---

    @contextlib.contextmanager
    def _write(self) -> Iterator[tuple[Session, _Writer]]:
        """A transaction that may write: the chain head is locked first (see registry.audit)."""
        with (
            self._errors(),
            Session(self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            cursor = Statements.of(self.engine).within(session.connection())
            yield session, _Writer(cursor, audit.lock_head(cursor))

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return database_errors(self.url, getattr(self.engine.dialect.dbapi, "Error", None))

    @contextlib.contextmanager
    def _read_connection(self) -> Iterator[Connection]:
        """A read-only transaction on a plain connection (no ORM): the per-load hot path."""
        with self._errors(), self.engine.connect() as connection:
            connection = connection.execution_options(vtreg_read_only=True)
            with connection.begin():
                yield connection

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with database_errors(self.url), self.engine.connect() as connection:
            connection = connection.execution_options(vtreg_read_only=True)
            with Session(connection, expire_on_commit=False) as session, session.begin():
                yield session

    def _audit(
        self, session: Session, writer: _Writer, event: AuditEvent, at: datetime | None = None
    ) -> None:
        del session  # the event goes through the same transaction's cursor
        audit.append(writer.cursor, writer.head, event, actor=self.actor, at=at or _now())

    def record(self, event: AuditEvent, *, at: datetime | None = None) -> None:
        """Append one decision record to the audit log (the loader's ``AuditSink``).

        On SQLite a decision record is committed without waiting for the disk
        (``synchronous=NORMAL``): it survives the process dying at once, and a
        power cut can lose only the latest decision records, never a change,
        which always waits (``FULL``), and never the chain's integrity.
        """
        sql = Statements.of(self.engine)
        with self._errors(), sql.transaction(self.engine, write=True, decision_record=True) as cur:
            audit.append(cur, audit.lock_head(cur), event, actor=self.actor, at=at or _now())

    # --- keys ---

    def add_key(
        self,
        key: PublicKey,
        *,
        name: str | None = None,
        scopes: Sequence[str] = (),
        expires: datetime | None = None,
    ) -> tuple[KeyInfo, bool]:
        """Trust a publisher key. Returns the key and whether it was newly added.

        Raises:
            PolicyError: the key was revoked before (revocation is final).
            UsageError: a bad name, an empty scope, an expiry in the past, or
                the key is already trusted with another name or other scopes.
        """
        at = _now()
        label = name or key.name or key.keyid[:16]
        try:
            check_plugin_name(label)
        except ValueError as e:
            raise UsageError(f"key name {label!r} is not a valid name") from e
        if any(not s or s != s.strip() for s in scopes):
            raise UsageError("a --scope must be a non-empty glob pattern without spaces")
        if expires is not None and expires <= at:
            raise UsageError(f"key expiry {format_time(expires)} is not in the future")
        with self._write() as (session, writer):
            row = session.get(Key, key.keyid)
            if row is not None:
                if row.revoked_at is not None:
                    raise PolicyError(
                        f"key {key.keyid[:16]} was revoked at {format_time(row.revoked_at)} "
                        f"({row.revoked_reason}); a revoked key cannot be trusted again"
                    )
                existing = KeyInfo.of(row)
                if not existing.same_terms(name, scopes):
                    raise UsageError(
                        f"key {key.keyid[:16]} is already trusted as {existing.terms()}; "
                        "a key's terms are fixed when it is added (revoke it and trust a new "
                        "key to change them)"
                    )
                return existing, False
            row = Key(
                keyid=key.keyid,
                name=label,
                public_key=key.raw,
                scopes=json.dumps(list(scopes)),
                expires_at=expires,
                added_at=at,
                added_by=self.actor,
            )
            session.add(row)
            self._audit(
                session,
                writer,
                AuditEvent(
                    "key.add",
                    "ok",
                    keyids=(key.keyid,),
                    details={"name": label, "scopes": list(scopes), "expires": _time(expires)},
                ),
                at,
            )
            return KeyInfo.of(row), True

    def list_keys(self) -> list[KeyInfo]:
        with self._read() as session:
            rows = session.execute(sa.select(Key).order_by(Key.added_at, Key.keyid)).scalars()
            return [KeyInfo.of(r) for r in rows]

    def resolve_keyid(self, text: str) -> str:
        """A full key id from a full id or a unique prefix of at least 8 hex digits.

        Raises:
            NotFoundError: no key matches.
            UsageError: too short a prefix, or it matches several keys.
        """
        text = text.strip().lower()
        if len(text) < 8 or any(c not in "0123456789abcdef" for c in text):
            raise UsageError(f"{text!r} is not a key id (64 hex digits, or a prefix of 8 or more)")
        with self._read() as session:
            found = list(
                session.execute(
                    sa.select(Key.keyid).where(Key.keyid.startswith(text, autoescape=True)).limit(2)
                ).scalars()
            )
        if not found:
            raise NotFoundError(f"no key {text} in the registry")
        if len(found) > 1:
            raise UsageError(f"key id prefix {text} matches several keys; give more digits")
        return found[0]

    def revoke_key(self, keyid: str, reason: str) -> tuple[KeyInfo, bool]:
        """Revoke a key: its signatures stop counting everywhere, now and later.

        Returns the key and whether this call revoked it (False if it already was).
        """
        if not reason.strip():
            raise UsageError("a revocation needs a --reason")
        keyid = self.resolve_keyid(keyid)
        at = _now()
        with self._write() as (session, writer):
            row = session.get(Key, keyid)
            if row is None:
                raise NotFoundError(f"no key {keyid} in the registry")
            if row.revoked_at is not None:
                return KeyInfo.of(row), False
            row.revoked_at, row.revoked_by, row.revoked_reason = at, self.actor, reason
            affected = session.execute(
                sa.select(Plugin.name, Plugin.version)
                .join(PluginSigner, PluginSigner.plugin_id == Plugin.id)
                .where(PluginSigner.keyid == keyid)
            ).all()
            self._audit(
                session,
                writer,
                AuditEvent(
                    "key.revoke",
                    "ok",
                    keyids=(keyid,),
                    reason=reason,
                    details={"signed": [f"{n}@{v}" for n, v in affected]},
                ),
                at,
            )
            return KeyInfo.of(row), True

    def trusted_keys(self) -> list[TrustedKey]:
        """Every key the registry knows, with scope, expiry and revocation for the verifier."""
        sql = Statements.of(self.engine)
        with self._errors(), sql.transaction(self.engine, write=False) as cursor:
            return self._trusted_keys(cursor)

    @staticmethod
    def _trusted_keys(cursor: Cursor) -> list[TrustedKey]:
        return [
            TrustedKey(
                PublicKey(bytes(public_key), name),
                scopes=tuple(json.loads(scopes)),
                expires=Statements.time_in(expires_at),
                revoked=revoked_reason if revoked_at is not None else None,
            )
            for name, public_key, scopes, expires_at, revoked_at, revoked_reason in cursor.rows(
                cursor.sql.keys
            )
        ]

    # --- plugins ---

    def trust(
        self, tree: PluginTree, *, threshold: int = 1, pin: bool = False, at: datetime | None = None
    ) -> TrustResult:
        """Verify a plugin against the registry's keys and trust its exact content.

        The envelope is stored verbatim with the signer key ids. Trusting the
        same content again changes nothing unless ``pin``/``threshold`` rise or
        the new envelope's trusted signers are a strict superset of the stored
        ones (a co-signature), which then replaces the stored envelope.

        Raises:
            VerificationError: not signed by ``threshold`` trusted keys, or the
                content was revoked before. The refusal is audited.
        """
        if threshold < 1:
            raise UsageError(f"threshold must be at least 1, got {threshold}")
        refusal: VerificationError | None = None
        # The keys are read, the decision made and the result written in one
        # transaction holding the chain head: a key revoked meanwhile is either
        # seen here or revoked after this trust, in the log's order too.
        with self._write() as (session, writer):
            at = at or _now()  # once the lock is held: judged when decided, logged in order
            try:
                verified = verify(
                    tree, self._trusted_keys(writer.cursor), at=at, threshold=threshold
                )
            except VerificationError as e:
                refusal = e
            else:
                row, created, changed = self._trust_row(session, verified, threshold, pin, at)
                if row.revoked_at is not None:
                    refusal = PolicyError(
                        f"{verified.name} {verified.version} ({verified.content_digest}) was "
                        f"revoked at {_time(row.revoked_at)} ({row.revoked_reason}); "
                        "revocation is final",
                        keyids=verified.signature_keyids,
                        subject=_subject(verified),
                    )
            if refusal is not None:
                event = self._refusal_event("plugin.trust", tree, refusal)
                self._audit(session, writer, event, at)
            else:
                if changed:
                    event = self._plugin_event("plugin.trust", "ok", verified)
                    details = {
                        **event.details,
                        "pinned": row.pinned,
                        "threshold": row.threshold,
                        "created": created,
                        "signers": sorted(s.keyid for s in row.signers),
                    }
                    self._audit(session, writer, replace(event, details=details), at)
                session.flush()
                info = PluginInfo.of(row)
                newer = self._newest_version(session, verified.name)
        if refusal is not None:
            raise refusal
        older = newer is not None and SemVer.parse(verified.version) < SemVer.parse(newer)
        return TrustResult(info, verified, created, changed, newer if older else None)

    def _trust_row(
        self, session: Session, verified: VerifiedPlugin, threshold: int, pin: bool, at: datetime
    ) -> tuple[Plugin, bool, bool]:
        """The plugin row for ``verified``, created or raised to the new terms;
        with whether it was created and whether it changed."""
        row = session.execute(
            sa.select(Plugin).where(Plugin.content_digest == verified.content_digest)
        ).scalar_one_or_none()
        if row is None:
            row = Plugin(
                name=verified.name,
                version=verified.version,
                content_digest=verified.content_digest,
                platform=verified.platform,
                library=verified.library,
                envelope=verified.envelope,
                threshold=threshold,
                pinned=pin,
                trusted_at=at,
                trusted_by=self.actor,
                signers=[PluginSigner(keyid=k) for k in verified.signers],
            )
            session.add(row)
            return row, True, True
        if row.revoked_at is not None:
            return row, False, False
        changed = False
        if (pin and not row.pinned) or threshold > row.threshold:
            row.pinned = row.pinned or pin
            row.threshold = max(row.threshold, threshold)
            changed = True
        stored = {s.keyid for s in row.signers}
        if stored < set(verified.signers):
            # A co-signed envelope: keep the one with more trusted signatures.
            row.envelope = verified.envelope
            row.signers.extend(PluginSigner(keyid=k) for k in verified.signers if k not in stored)
            changed = True
        return row, False, changed

    @staticmethod
    def _newest_version(session: Session, name: str) -> str | None:
        versions = session.execute(
            sa.select(Plugin.version).where(Plugin.name == name, Plugin.revoked_at.is_(None))
        ).scalars()
        parsed = [SemVer.parse(v) for v in versions]
        return str(max(parsed)) if parsed else None

    def revoke(
        self,
        *,
        name: str | None = None,
        version: str | None = None,
        digest: str | None = None,
        reason: str,
    ) -> list[PluginInfo]:
        """Revoke trusted plugins by name, name and version, or content digest.

        Raises:
            NotFoundError: nothing trusted (and not yet revoked) matches.
        """
        if not reason.strip():
            raise UsageError("a revocation needs a --reason")
        if (digest is None) == (name is None):
            raise UsageError("revoke NAME, NAME@VERSION or --digest DIGEST (one of them)")
        at = _now()
        with self._write() as (session, writer):
            stmt = sa.select(Plugin).where(Plugin.revoked_at.is_(None))
            if digest is not None:
                stmt = stmt.where(Plugin.content_digest == digest)
                target = digest
            else:
                stmt = stmt.where(Plugin.name == name)
                if version is not None:
                    stmt = stmt.where(Plugin.version == version)
                target = f"{name}@{version}" if version else str(name)
            rows = session.execute(stmt).scalars().all()
            if not rows:
                raise NotFoundError(f"nothing trusted matches {target}")
            for row in rows:
                row.revoked_at, row.revoked_by, row.revoked_reason = at, self.actor, reason
                self._audit(
                    session,
                    writer,
                    AuditEvent(
                        "plugin.revoke",
                        "ok",
                        plugin=row.name,
                        version=row.version,
                        digest=row.content_digest,
                        keyids=tuple(s.keyid for s in row.signers),
                        reason=reason,
                        details={"target": target},
                    ),
                    at,
                )
            return [PluginInfo.of(r) for r in rows]

    def plugins(
        self,
        *,
        name: str | None = None,
        signed_by: str | None = None,
        revoked: bool | None = None,
    ) -> list[PluginInfo]:
        """Trusted plugin versions, filtered; ``revoked=None`` means both kinds."""
        stmt = sa.select(Plugin).order_by(Plugin.name, Plugin.trusted_at)
        if name is not None:
            stmt = stmt.where(Plugin.name == name)
        if signed_by is not None:
            stmt = stmt.where(
                Plugin.id.in_(
                    sa.select(PluginSigner.plugin_id).where(PluginSigner.keyid == signed_by)
                )
            )
        if revoked is True:
            stmt = stmt.where(Plugin.revoked_at.is_not(None))
        elif revoked is False:
            stmt = stmt.where(Plugin.revoked_at.is_(None))
        with self._read() as session:
            return [PluginInfo.of(r) for r in session.execute(stmt).scalars()]

    def lookup(self, digest: str) -> PluginInfo | None:
        """The trust record for one content digest (two indexed reads, no ORM session)."""
        columns = [c for c in Plugin.__table__.c if c.name != "envelope"]
        with database_errors(self.url), self.engine.connect() as connection:
            connection = connection.execution_options(vtreg_read_only=True)
            with connection.begin():
                row = connection.execute(
                    sa.select(*columns).where(Plugin.content_digest == digest)
                ).first()
                if row is None:
                    return None
                signers = connection.execute(
                    sa.select(PluginSigner.keyid).where(PluginSigner.plugin_id == row.id)
                ).scalars()
                return PluginInfo(
                    row.name,
                    row.version,
                    row.content_digest,
                    row.platform,
                    tuple(sorted(signers)),
                    row.threshold,
                    row.pinned,
                    row.trusted_at,
                    row.trusted_by,
                    row.revoked_at,
                    row.revoked_reason,
                )

    # --- decisions ---

    def authorize(self, tree: PluginTree, *, at: datetime, threshold: int = 1) -> VerifiedPlugin:
        """Decide whether a captured plugin may be used (the loader's ``TrustPolicy``).

        The plugin must verify with trusted, unexpired, unrevoked keys whose
        scope covers its name, meeting both ``threshold`` and the threshold it
        was trusted with; its content digest must be trusted and not revoked;
        and it must not be older than the newest trusted version of its name
        unless it was pinned. Nothing is audited here; see :meth:`verify_plugin`.

        Raises:
            VerificationError: the reason it may not.
        """
        sql = Statements.of(self.engine)
        with self._errors(), sql.transaction(self.engine, write=False) as cursor:
            return self._decide(cursor, tree, at, threshold)

    def _decide(
        self, cursor: Cursor, tree: PluginTree, at: datetime, threshold: int
    ) -> VerifiedPlugin:
        """:meth:`authorize`'s decision, reading keys and versions through ``cursor``."""
        sql = cursor.sql
        verified = verify(tree, self._trusted_keys(cursor), at=at, threshold=threshold)
        versions = [
            _Version(digest, version, bool(pinned), int(threshold_), sql.time_in(revoked_at),
                     reason)
            for digest, version, pinned, threshold_, revoked_at, reason in cursor.rows(
                sql.versions, (verified.name,)
            )
        ]  # fmt: skip
        row = next((v for v in versions if v.content_digest == verified.content_digest), None)
        trusted = [SemVer.parse(v.version) for v in versions if v.revoked_at is None]
        newest = str(max(trusted)) if trusted else None
        label = f"{verified.name} {verified.version}"
        keyids, subject = verified.signature_keyids, _subject(verified)
        if row is None:
            raise PolicyError(
                f"{label} ({verified.content_digest}) is signed but not trusted: "
                "run `vtreg trust` to trust it",
                keyids=keyids,
                subject=subject,
            )
        if row.revoked_at is not None:
            raise PolicyError(
                f"{label} was revoked at {format_time(row.revoked_at)} ({row.revoked_reason})",
                keyids=keyids,
                subject=subject,
            )
        if len(verified.signers) < row.threshold:
            raise SignatureError(
                f"signed by {len(verified.signers)}/{row.threshold} trusted keys required when "
                f"{label} was trusted",
                keyids=keyids,
                subject=subject,
            )
        older = newest is not None and SemVer.parse(verified.version) < SemVer.parse(newest)
        if older and not row.pinned:
            raise PolicyError(
                f"rollback: {label} is older than the trusted {verified.name} {newest} "
                "(trust it with --pin to allow this version)",
                keyids=keyids,
                subject=subject,
            )
        return verified

    def verify_plugin(
        self, tree: PluginTree, *, at: datetime | None = None, threshold: int = 1
    ) -> VerifiedPlugin:
        """:meth:`authorize`, with the decision (allowed or refused) audited."""
        sql = Statements.of(self.engine)
        # Decided and recorded in one transaction that holds the chain head, so a
        # key or plugin revoked concurrently is either seen or logged after this.
        with self._errors(), sql.transaction(self.engine, write=True, decision_record=True) as cur:
            head = audit.lock_head(cur)
            at = at or _now()  # once the lock is held: judged when decided, logged in order
            refusal: VerificationError | None = None
            try:
                verified = self._decide(cur, tree, at, threshold)
            except VerificationError as e:
                refusal = e
                event = self._refusal_event("plugin.verify", tree, e)
            else:
                event = self._plugin_event("plugin.verify", "allowed", verified)
            audit.append(cur, head, event, actor=self.actor, at=at)
        if refusal is not None:
            raise refusal
        return verified

    @staticmethod
    def _plugin_event(action: str, outcome: str, verified: VerifiedPlugin) -> AuditEvent:
        # Every key with a valid signature is named, not only those that counted, so
        # "what happened to plugins key K signed?" finds this event after K is revoked.
        return AuditEvent(
            action,
            outcome,
            plugin=verified.name,
            version=verified.version,
            digest=verified.content_digest,
            keyids=verified.signature_keyids,
            details={"counted": list(verified.signers)},
        )

    @staticmethod
    def _refusal_event(action: str, tree: PluginTree, error: VerificationError) -> AuditEvent:
        return AuditEvent.refusal(
            action, error, manifest=tree.manifest, details={"path": tree.root}
        )

    # --- audit ---

    def audit_events(
        self,
        *,
        plugin: str | None = None,
        keyid: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[audit.AuditRecord]:
        with self._read() as session:
            return audit.query(
                session,
                plugin=plugin,
                keyid=keyid,
                action=action,
                outcome=outcome,
                since=since,
                until=until,
                limit=limit,
            )

    def verify_audit(self, *, anchor: tuple[int, str] | None = None) -> audit.ChainReport:
        """Verify the audit chain in one snapshot; see :func:`audit.verify_chain`."""
        with database_errors(self.url), self.engine.connect() as connection:
            options: dict[str, object] = {"vtreg_read_only": True}
            if connection.dialect.name == "postgresql":
                # One snapshot for the log, the key index and the head, so appends
                # committed while the walk runs cannot look like tampering.
                options["isolation_level"] = "REPEATABLE READ"
            connection = connection.execution_options(**options)
            with connection.begin():
                return audit.verify_chain(connection, anchor=anchor)
