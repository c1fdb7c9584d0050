"""The registry: the one writer of the trust store and the audit log.

The registry stores; it does not judge. Every decision is made by the pure
core (:mod:`vtreg.verifier.decision`) over the slice of trust state the
decision needs (:mod:`vtreg.registry.state`), read in the same transaction
that records the outcome:

* a load (:meth:`Registry.state_for`, the loader's ``TrustPolicy``) reads one
  snapshot and writes nothing; the loader then records what it did
  (:meth:`Registry.record`, its ``AuditSink``);
* ``vtreg verify`` (:meth:`Registry.verify_plugin`) and ``vtreg trust``
  (:meth:`Registry.trust`) decide while holding the audit chain head, so a
  key or plugin revoked concurrently is either seen or logged after them.

Every change (key added or revoked, plugin trusted or revoked) is written in
the same transaction as its audit event.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, defer

from vtreg.verifier.audit_event import AuditEvent
from vtreg.verifier.decision import authenticate, decide, decide_trust
from vtreg.verifier.envelope import format_time
from vtreg.verifier.errors import NotFoundError, PolicyError, UsageError, VerificationError
from vtreg.verifier.files import read_regular_at
from vtreg.verifier.keys import PublicKey
from vtreg.verifier.layout import MANIFEST_FILE, MAX_MANIFEST_BYTES
from vtreg.verifier.manifest import SemVer, check_plugin_name
from vtreg.verifier.signatures import VerifiedPlugin
from vtreg.verifier.text import path_text
from vtreg.verifier.tree import PendingCapture, PluginTree, capture, read_signature
from vtreg.verifier.trust import TrustState

from . import audit
from .db import connect, database_errors, default_url, ensure_schema, normalize_url
from .models import Key, Plugin, PluginSigner
from .records import KeyInfo, PluginInfo, TrustResult
from .state import read_full_state, read_state
from .statements import Cursor, Statements

__all__ = ["Registry", "default_actor"]

ENV_ACTOR = "VTREG_ACTOR"
_MAX_ACTOR = 255  # models.AuditRow.actor, Key.added_by, ...: String(255)
# Listings and lookups never need the stored envelope, which may be up to 1 MiB a row.
_NO_ENVELOPE = defer(Plugin.envelope, raiseload=True)


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


def _checked_actor(actor: str) -> str:
    """``actor`` if every engine can store it: at most 255 characters (the column),
    none of them control or format characters (it is shown on terminals and in CSV)."""
    if len(actor) > _MAX_ACTOR:
        raise UsageError(f"{ENV_ACTOR} is {len(actor)} characters long; at most {_MAX_ACTOR}")
    if any(unicodedata.category(c)[0] == "C" or c in "\u2028\u2029" for c in actor):
        raise UsageError(f"{ENV_ACTOR} {actor!r} holds control characters")
    return actor


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Change:
    """A writing transaction: its ORM session, its cursor, the chain head it locked."""

    session: Session
    cursor: Cursor
    head: audit.ChainHeadState
    actor: str

    def log(self, event: AuditEvent, at: datetime) -> None:
        """Append ``event`` to the audit chain in this transaction."""
        audit.append(self.cursor, self.head, event, actor=self.actor, at=at)


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


def _refusal_event(
    action: str, error: VerificationError, *, manifest: bytes | None, path: str
) -> AuditEvent:
    return AuditEvent.refusal(action, error, manifest=manifest, details={"path": path_text(path)})


def _check_key_terms(
    label: str, scopes: Sequence[str], expires: datetime | None, at: datetime
) -> None:
    try:
        check_plugin_name(label)
    except ValueError as e:
        raise UsageError(f"key name {label!r} is not a valid name") from e
    if any(not s or s != s.strip() for s in scopes):
        raise UsageError("a --scope must be a non-empty glob pattern without spaces")
    if expires is not None and expires <= at:
        raise UsageError(f"key expiry {format_time(expires)} is not in the future")


def _check_threshold(threshold: int) -> None:
    if threshold < 1:
        raise UsageError(f"threshold must be at least 1, got {threshold}")


def _check_reason(reason: str) -> None:
    if not reason.strip():
        raise UsageError("a revocation needs a --reason")


class Registry:
    """The trust store and audit log, on SQLite or PostgreSQL.

    Use :meth:`open`; close with :meth:`close` or a ``with`` block. It
    implements the loader's ``TrustPolicy`` (:meth:`state_for`) and
    ``AuditSink`` (:meth:`record`).
    """

    def __init__(self, engine: Engine, url: str, actor: str | None = None) -> None:
        self.engine = engine
        self.url = url
        self.actor = actor or default_actor()
        self._sql = Statements.of(engine)

    @classmethod
    def open(cls, url: str | None = None, *, upgrade: bool = False) -> Registry:
        """Open (creating at head if new) the registry at ``url``, else the default one.

        Raises:
            RegistryError: unreachable, corrupt, or an older schema (run
                ``vtreg db upgrade``).
            UsageError: ``url`` is not a database URL, or ``$VTREG_ACTOR`` could
                not be recorded (see :func:`_checked_actor`).
        """
        actor = _checked_actor(default_actor())
        url = normalize_url(url or default_url())
        engine = connect(url)
        try:
            ensure_schema(engine, upgrade=upgrade)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, url, actor)

    def close(self) -> None:
        """Release the registry's database connections."""
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- transactions: a change, a read, and the per-load hot path ---

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return database_errors(self.url, getattr(self.engine.dialect.dbapi, "Error", None))

    @contextlib.contextmanager
    def _change(self) -> Iterator[_Change]:
        """A transaction that may write, with the chain head locked first (see registry.audit)."""
        with (
            self._errors(),
            Session(self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            cursor = self._sql.within(session.connection())
            yield _Change(session, cursor, audit.lock_head(cursor), self.actor)

    @contextlib.contextmanager
    def _read(self, *, snapshot: bool = False) -> Iterator[Session]:
        """A read-only ORM session; ``snapshot``: one snapshot throughout, on PostgreSQL too."""
        options: dict[str, object] = {"vtreg_read_only": True}
        if snapshot and self.engine.dialect.name == "postgresql":
            options["isolation_level"] = "REPEATABLE READ"
        with self._errors(), self.engine.connect() as connection:
            connection = connection.execution_options(**options)
            with Session(connection, expire_on_commit=False) as session, session.begin():
                yield session

    @contextlib.contextmanager
    def _decision(self, *, write: bool) -> Iterator[Cursor]:
        """A transaction on a pooled DBAPI connection: the per-load hot path."""
        with (
            self._errors(),
            self._sql.transaction(self.engine, write=write, decision_record=write) as cursor,
        ):
            yield cursor

    def record(self, event: AuditEvent, *, at: datetime | None = None) -> None:
        """Append one decision record to the audit log (the loader's ``AuditSink``).

        On SQLite a decision record is committed without waiting for the disk
        (``synchronous=NORMAL``): it survives the process dying at once, and a
        power cut can lose only the latest decision records, never a change,
        which always waits (``FULL``), and never the chain's integrity.
        """
        with self._decision(write=True) as cursor:
            audit.append(cursor, audit.lock_head(cursor), event, actor=self.actor, at=at or _now())

    # --- decisions ---

    def capture_signed(
        self,
        action: str,
        path: str,
        *,
        at: datetime,
        threshold: int = 1,
        pending: PendingCapture | None = None,
    ) -> PluginTree:
        """Capture a plugin directory the way nothing unchecked is trusted early.

        plugin.sig is read alone and checked against this registry's keys
        (enough trusted signers, not expired); only then are the files it
        signed read, none past its signed length (or ``pending``'s capture is
        taken, if it was guided by exactly that). A refusal on the way (an
        unsigned plugin, a symlink inside, an oversize file) is recorded as a
        refused ``action``, as every later refusal of that action is.

        Raises:
            VerificationError: the refusal (audited).
        """
        try:
            signature = read_signature(path)
            signed = authenticate(signature, self.state_for(signature, threshold=threshold), at=at)
            tree = pending.result(signature, signed.expected) if pending is not None else None
            return tree or capture(path, expect=signed.expected, algorithms=signed.algorithms)
        except VerificationError as e:
            self.record(_refusal_event(action, e, manifest=_peek_manifest(path), path=path))
            raise

    def state_for(self, envelope: bytes | None, *, threshold: int = 1) -> TrustState:
        """The trust state a decision about ``envelope``'s plugin needs (the loader's
        ``TrustPolicy``): every key, the trust record of the content plugin.sig
        claims and the rollback floor of its name and platform (:func:`read_state`),
        read in one snapshot. Nothing is audited here; see :meth:`verify_plugin`.

        Raises:
            RegistryError: the registry cannot be read.
        """
        with self._decision(write=False) as cursor:
            return read_state(cursor, envelope, threshold=threshold)

    def full_state(self) -> TrustState:
        """Every key and trust record, read in one snapshot (what a fleet publishes).

        Raises:
            RegistryError: the registry cannot be read.
        """
        with self._decision(write=False) as cursor:
            return read_full_state(cursor)

    def authorize(self, tree: PluginTree, *, at: datetime, threshold: int = 1) -> VerifiedPlugin:
        """Decide, without auditing, whether a captured plugin may be used.

        Raises:
            VerificationError: the reason it may not, with its ``code``.
        """
        return decide(tree, self.state_for(tree.signature, threshold=threshold), at=at)

    def verify_plugin(
        self, tree: PluginTree, *, at: datetime | None = None, threshold: int = 1
    ) -> VerifiedPlugin:
        """:meth:`authorize`, with the decision (allowed or refused) audited."""
        _check_threshold(threshold)
        refusal: VerificationError | None = None
        with self._decision(write=True) as cursor:
            head = audit.lock_head(cursor)
            at = at or _now()  # once the lock is held: judged when decided, logged in order
            try:
                state = read_state(cursor, tree.signature, threshold=threshold)
                verified = decide(tree, state, at=at)
            except VerificationError as e:
                refusal = e
                event = _refusal_event("plugin.verify", e, manifest=tree.manifest, path=tree.root)
            else:
                event = _plugin_event("plugin.verify", "allowed", verified)
            audit.append(cursor, head, event, actor=self.actor, at=at)
        if refusal is not None:
            raise refusal
        return verified

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
        _check_key_terms(label, scopes, expires, at)
        with self._change() as change:
            row = change.session.get(Key, key.keyid)
            if row is not None:
                return _existing_key(row, name, scopes), False
            row = Key(
                keyid=key.keyid,
                name=label,
                public_key=key.raw,
                scopes=json.dumps(list(scopes)),
                expires_at=expires,
                added_at=at,
                added_by=self.actor,
            )
            change.session.add(row)
            expiry = format_time(expires) if expires else None
            details = {"name": label, "scopes": list(scopes), "expires": expiry}
            change.log(AuditEvent("key.add", "ok", keyids=(key.keyid,), details=details), at)
            return KeyInfo.of(row), True

    def list_keys(self) -> list[KeyInfo]:
        """Every key the registry knows, revoked ones included, oldest first."""
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
        _check_reason(reason)
        keyid = self.resolve_keyid(keyid)
        at = _now()
        with self._change() as change:
            row = change.session.get(Key, keyid)
            if row is None:
                raise NotFoundError(f"no key {keyid} in the registry")
            if row.revoked_at is not None:
                return KeyInfo.of(row), False
            row.revoked_at, row.revoked_by, row.revoked_reason = at, self.actor, reason
            signed = change.session.execute(
                sa.select(Plugin.name, Plugin.version)
                .join(PluginSigner, PluginSigner.plugin_id == Plugin.id)
                .where(PluginSigner.keyid == keyid)
            ).all()
            details = {"signed": [f"{n}@{v}" for n, v in signed]}
            event = AuditEvent("key.revoke", "ok", keyids=(keyid,), reason=reason, details=details)
            change.log(event, at)
            return KeyInfo.of(row), True

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
        _check_threshold(threshold)
        refusal: VerificationError | None = None
        with self._change() as change:
            at = at or _now()  # once the lock is held: judged when decided, logged in order
            state = read_state(change.cursor, tree.signature, threshold=threshold)
            try:
                verified = decide_trust(tree, state, at=at)
            except VerificationError as e:
                refusal = e
                change.log(
                    _refusal_event("plugin.trust", e, manifest=tree.manifest, path=tree.root), at
                )
            else:
                result = self._trust_row(change, verified, threshold, pin, at)
                floor = state.floors.get((verified.name, verified.platform))
        if refusal is not None:
            raise refusal
        older = floor is not None and SemVer.parse(verified.version) < SemVer.parse(floor)
        return replace(result, newer=floor if older else None)

    def _trust_row(
        self, change: _Change, verified: VerifiedPlugin, threshold: int, pin: bool, at: datetime
    ) -> TrustResult:
        """Create the plugin row for ``verified``, or raise it to the new terms; audit a change."""
        session = change.session
        row = session.execute(
            sa.select(Plugin).where(Plugin.content_digest == verified.content_digest)
        ).scalar_one_or_none()
        if row is not None and row.revoked_at is not None:  # decide_trust refused it already
            raise PolicyError(f"{verified.content_digest} was revoked", code="content-revoked")
        created = row is None
        if row is None:
            row = _new_plugin_row(verified, threshold, pin, at, self.actor)
            session.add(row)
        changed = created or _raise_terms(row, verified, threshold, pin)
        if changed:
            event = _plugin_event("plugin.trust", "ok", verified)
            details = {
                **event.details,
                "pinned": row.pinned,
                "threshold": row.threshold,
                "created": created,
                "signers": sorted(s.keyid for s in row.signers),
            }
            change.log(replace(event, details=details), at)
        session.flush()
        return TrustResult(PluginInfo.of(row), verified, created, changed, None)

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
        _check_reason(reason)
        if (digest is None) == (name is None):
            raise UsageError("revoke NAME, NAME@VERSION or --digest DIGEST (one of them)")
        target = digest or (f"{name}@{version}" if version else str(name))
        at = _now()
        with self._change() as change:
            stmt = sa.select(Plugin).where(Plugin.revoked_at.is_(None))
            if digest is not None:
                stmt = stmt.where(Plugin.content_digest == digest)
            else:
                stmt = stmt.where(Plugin.name == name)
                if version is not None:
                    stmt = stmt.where(Plugin.version == version)
            rows = change.session.execute(stmt).scalars().all()
            if not rows:
                raise NotFoundError(f"nothing trusted matches {target}")
            for row in rows:
                row.revoked_at, row.revoked_by, row.revoked_reason = at, self.actor, reason
                change.log(_revocation_event(row, reason, target), at)
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
            return [PluginInfo.of(r) for r in session.execute(stmt.options(_NO_ENVELOPE)).scalars()]

    def lookup(self, digest: str) -> PluginInfo | None:
        """The trust record for one content digest, or None."""
        with self._read() as session:
            stmt = sa.select(Plugin).where(Plugin.content_digest == digest)
            row = session.execute(stmt.options(_NO_ENVELOPE)).scalar_one_or_none()
            return PluginInfo.of(row) if row is not None else None

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
        """Audit events matching every given filter, newest first, at most ``limit``."""
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
        # One snapshot for the log, the key index and the head, so appends
        # committed while the walk runs cannot look like tampering.
        with self._read(snapshot=True) as session:
            return audit.verify_chain(session.connection(), anchor=anchor)


def _peek_manifest(path: str) -> bytes | None:
    """plugin.json's bytes, unverified, only to label a refusal (see AuditEvent.refusal)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return read_regular_at(fd, MANIFEST_FILE, lambda f: os.read(f, MAX_MANIFEST_BYTES))
    finally:
        os.close(fd)


def _existing_key(row: Key, name: str | None, scopes: Sequence[str]) -> KeyInfo:
    """A key added again: fine on the same terms; refused if revoked or on other terms."""
    if row.revoked_at is not None:
        raise PolicyError(
            f"key {row.keyid[:16]} was revoked at {format_time(row.revoked_at)} "
            f"({row.revoked_reason}); a revoked key cannot be trusted again",
            code="key-revoked",
        )
    existing = KeyInfo.of(row)
    if not existing.same_terms(name, scopes):
        raise UsageError(
            f"key {row.keyid[:16]} is already trusted as {existing.terms()}; "
            "a key's terms are fixed when it is added (revoke it and trust a new "
            "key to change them)"
        )
    return existing


def _new_plugin_row(
    verified: VerifiedPlugin, threshold: int, pin: bool, at: datetime, actor: str
) -> Plugin:
    return Plugin(
        name=verified.name,
        version=verified.version,
        version_key=SemVer.parse(verified.version).sort_key(),
        content_digest=verified.content_digest,
        platform=verified.platform,
        library=verified.library,
        envelope=verified.envelope,
        threshold=threshold,
        pinned=pin,
        trusted_at=at,
        trusted_by=actor,
        signers=[PluginSigner(keyid=k) for k in verified.signers],
    )


def _raise_terms(row: Plugin, verified: VerifiedPlugin, threshold: int, pin: bool) -> bool:
    """Raise a trusted row's pin and threshold, and take a co-signed envelope; say if it changed."""
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
    return changed


def _revocation_event(row: Plugin, reason: str, target: str) -> AuditEvent:
    return AuditEvent(
        "plugin.revoke",
        "ok",
        plugin=row.name,
        version=row.version,
        digest=row.content_digest,
        keyids=tuple(s.keyid for s in row.signers),
        reason=reason,
        details={"target": target},
    )
