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
import json
import os
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import replace as replace_fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Unpack

from vtreg.verifier.audit_event import AuditEvent
from vtreg.verifier.decision import (
    authenticate,
    decide,
    decide_envelope,
    decide_trust,
    decide_trust_envelope,
)
from vtreg.verifier.envelope import format_time
from vtreg.verifier.errors import (
    NotFoundError,
    PolicyError,
    SignatureError,
    UsageError,
    VerificationError,
    VtregError,
)
from vtreg.verifier.files import read_regular_at
from vtreg.verifier.keys import PublicKey
from vtreg.verifier.layout import MANIFEST_FILE, MAX_MANIFEST_BYTES
from vtreg.verifier.manifest import SemVer, check_plugin_name
from vtreg.verifier.platforms import host_platform, platform_label
from vtreg.verifier.signatures import SignedStatement, VerifiedPlugin
from vtreg.verifier.text import path_text
from vtreg.verifier.tree import PendingCapture, PluginTree, capture, read_signature
from vtreg.verifier.trust import TrustedContent, TrustState

from . import audit
from .config import checked_actor as _checked_actor
from .config import default_actor, default_url, normalize_url
from .driver import SqliteFile, driver_errors, open_sqlite
from .reader import time_in
from .records import (
    LOADABLE,
    KeyChange,
    KeyInfo,
    PluginInfo,
    TrustResult,
    digest_condition,
    short_digest,
)
from .state import (
    read_full_state,
    read_names_state,
    read_state,
    read_trust_changes,
    state_for_contents,
)
from .statements import Cursor, HotPath, Statements

# SQLAlchemy and the models are imported by the methods that use the ORM (writes other
# than decision records, and most reads): deciding and auditing need neither.
if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from .models import Key, Plugin, PluginEnvelope

__all__ = ["Registry", "default_actor"]


_BATCH = 500  # rows read, and judged, at a time by a listing


class _DryRun(Exception):
    """Raised at the end of a dry run's transaction, so that it rolls back."""


def _now() -> datetime:
    return datetime.now(UTC)


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value else None


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


def _plugin_event(action: str, outcome: str, verified: VerifiedPlugin | _Accepted) -> AuditEvent:
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


class _Terms(NamedTuple):
    """What ``vtreg trust`` asks for besides the content: --threshold, --pin, --replace."""

    threshold: int
    pin: bool
    replace: bool


@dataclass(frozen=True)
class _Accepted:
    """An authenticated plugin ``vtreg trust`` decided to accept: from a captured
    directory, or from a plugin.sig alone (its statement pins every file)."""

    name: str
    version: str
    platforms: tuple[str, ...]
    library: str
    content_digest: str
    envelope: bytes
    signers: tuple[str, ...]
    signature_keyids: tuple[str, ...]
    expires: datetime | None  # the statement's: plugins.signature_expires

    @classmethod
    def of_verified(cls, verified: VerifiedPlugin) -> _Accepted:
        return cls(
            verified.name,
            verified.version,
            verified.platforms,
            verified.library,
            verified.content_digest,
            verified.envelope,
            verified.signers,
            verified.signature_keyids,
            verified.expires,
        )

    @classmethod
    def of_signed(cls, signed: SignedStatement, digest: str) -> _Accepted:
        predicate = signed.predicate
        return cls(
            predicate.name,
            predicate.version,
            predicate.platforms,
            predicate.library,
            digest,
            signed.envelope,
            signed.signers,
            signed.signature_keyids,
            predicate.expires,
        )

    @property
    def subject(self) -> tuple[str, str, str]:
        return self.name, self.version, self.content_digest


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

    def __init__(self, source: Engine | SqliteFile, url: str, actor: str | None = None) -> None:
        """A registry on ``source``: an engine, or a SQLite registry found by the driver
        (:func:`~vtreg.registry.driver.open_sqlite`), whose engine is made on first use."""
        self.url = url
        self.actor = actor or default_actor()
        self._engine_lock = threading.Lock()
        if isinstance(source, SqliteFile):
            self._file: SqliteFile | None = source
            self._engine: Engine | None = None
            self._sql = Statements.of_dialect("sqlite", "qmark")  # sqlite3.paramstyle
            self._hot = HotPath(self._sql, lambda: (source.connect(), {}), keep=True)
        else:
            self._file, self._engine = None, source
            self._sql = Statements.of(source)
            self._hot = HotPath.of(source)

    @classmethod
    def open(
        cls, url: str | None = None, *, upgrade: bool = False, create: bool = True
    ) -> Registry:
        """Open the registry at ``url`` (a database URL or a SQLite file's path), else
        the default one; a new one is created at head unless ``create`` is False.

        Raises:
            RegistryError: unreachable, corrupt, an older schema (run
                ``vtreg db upgrade``), or none there and ``create`` is False.
            UsageError: ``url`` is not a database URL, or ``$VTREG_ACTOR`` could
                not be recorded (see :func:`_checked_actor`).
        """
        actor = _checked_actor(default_actor())
        url = normalize_url(url or default_url(create=create))
        found = open_sqlite(url)  # the common case, without SQLAlchemy
        if found is not None:
            return cls(found, url, actor)
        from .db import connect, ensure_schema

        engine = connect(url, create=create)
        try:
            ensure_schema(engine, upgrade=upgrade, create=create)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, url, actor)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, made on first use (deciding and auditing need none).

        Raises:
            RegistryError: the registry cannot be reached any more.
        """
        with self._engine_lock:
            if self._engine is None:
                from .db import connect

                self._engine = connect(self.url, create=False)
            return self._engine

    def close(self) -> None:
        """Release the registry's database connections."""
        self._hot.close()
        if self._file is not None:
            self._file.close()
        if self._engine is not None:
            self._engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- transactions: a change, a read, and the per-load hot path ---

    def _errors(self, *, orm: bool = False) -> contextlib.AbstractContextManager[None]:
        """Database errors as one line naming the registry; ``orm``: the engine's too
        (it is made now if it was not)."""
        if self._engine is None and not orm:
            return driver_errors(self.url)
        from .db import database_errors

        return database_errors(self.url, getattr(self.engine.dialect.dbapi, "Error", None))

    @contextlib.contextmanager
    def _change(self, *, dry_run: bool = False) -> Iterator[_Change]:
        """A transaction that may write, with the chain head locked first (see registry.audit);
        a ``dry_run`` is rolled back at its end, whatever it wrote."""
        from sqlalchemy.orm import Session

        with (
            contextlib.suppress(_DryRun),
            self._errors(orm=True),
            Session(self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            cursor = self._sql.within(session.connection())
            yield _Change(session, cursor, audit.lock_head(cursor), self.actor)
            if dry_run:
                session.flush()
                raise _DryRun

    @contextlib.contextmanager
    def _read(self, *, snapshot: bool = False) -> Iterator[Session]:
        """A read-only ORM session; ``snapshot``: one snapshot throughout, on PostgreSQL too."""
        from sqlalchemy.orm import Session

        options: dict[str, object] = {"vtreg_read_only": True}
        with self._errors(orm=True), self.engine.connect() as connection:
            if snapshot and self.engine.dialect.name == "postgresql":
                options["isolation_level"] = "REPEATABLE READ"
            connection = connection.execution_options(**options)
            with Session(connection, expire_on_commit=False) as session, session.begin():
                yield session

    @contextlib.contextmanager
    def _decision(self, *, write: bool) -> Iterator[Cursor]:
        """A transaction on a pooled DBAPI connection: the per-load hot path."""
        with (
            self._errors(),
            self._hot.transaction(write=write, decision_record=write) as cursor,
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
            return tree or capture(
                path,
                expect=signed.expected,
                algorithms=signed.algorithms,
                exclude=signed.exclude,
                signature=signature,
            )
        except VerificationError as e:
            self.record(_refusal_event(action, e, manifest=_peek_manifest(path), path=path))
            raise

    def state_for(self, envelope: bytes | None, *, threshold: int = 1) -> TrustState:
        """The trust state a decision about ``envelope``'s plugin needs (the loader's
        ``TrustPolicy``): every key, the trust record of the content plugin.sig
        claims and the rollback floor of its name and platform (:func:`read_state`),
        read in one snapshot: by one statement, outside a transaction. Nothing is
        audited here; see :meth:`verify_plugin`.

        Raises:
            RegistryError: the registry cannot be read.
        """
        with self._errors(), self._hot.statement() as cursor:
            return read_state(cursor, envelope, threshold=threshold)

    def full_state(self) -> TrustState:
        """Every key and trust record, read in one snapshot (what a fleet publishes).

        Raises:
            RegistryError: the registry cannot be read.
        """
        with self._decision(write=False) as cursor:
            return read_full_state(cursor)

    def publish_view(self, since: int | None) -> tuple[int, TrustState, frozenset[str] | None]:
        """What a fleet publish needs, read in one snapshot: the audit head, and either
        every record (``since`` None, or a log shorter than ``since``: full) or the keys
        and the records of the names changed after event ``since`` (their names).

        Raises:
            RegistryError: the registry cannot be read.
        """
        with self._decision(write=False) as cursor:
            head = int(cursor.rows(cursor.sql.head_seq)[0][0])
            if since is not None and head >= since:
                names = read_trust_changes(cursor, since)
                return head, read_names_state(cursor, names), names
            return head, read_full_state(cursor), None

    def authorize(self, tree: PluginTree, *, at: datetime, threshold: int = 1) -> VerifiedPlugin:
        """Decide, without auditing, whether a captured plugin may be used on this host
        (the rollback rule judged for this host's platform, if the plugin has its library).

        Raises:
            VerificationError: the reason it may not, with its ``code``.
        """
        state = self.state_for(tree.signature, threshold=threshold)
        return decide(tree, state, at=at, platform=host_platform())

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
                verified = decide(tree, state, at=at, platform=host_platform())
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
        from vtreg.verifier.note import NoteVerifier

        from .models import AuditLog, Key

        at = _now()
        label = name or key.name or key.keyid[:16]
        _check_key_terms(label, scopes, expires, at)
        with self._change() as change:
            row = change.session.get(Key, key.keyid)
            if row is not None:
                return _existing_key(row, name, scopes), False
            log = change.session.get(AuditLog, 1)
            if log is not None and NoteVerifier.parse(log.vkey).key.raw == key.raw:
                raise UsageError(f"key {key.short_id}… is the audit log's key, not a publisher's")
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
            details = {"name": label, "scopes": list(scopes), "expires_at": expiry}
            change.log(AuditEvent("key.add", "ok", keyids=(key.keyid,), details=details), at)
            return KeyInfo.of(row), True

    def list_keys(self) -> list[KeyInfo]:
        """Every key the registry knows, revoked ones included, oldest first."""
        import sqlalchemy as sa

        from .models import Key

        with self._read() as session:
            rows = session.execute(sa.select(Key).order_by(Key.added_at, Key.keyid)).scalars()
            return [KeyInfo.of(r) for r in rows]

    def resolve_keyid(self, text: str) -> str:
        """A full key id from a full id, a unique prefix of at least 8 hex digits, or a key name.

        Raises:
            NotFoundError: no key matches.
            UsageError: too short a prefix, or it matches several keys.
        """
        from .listing import resolve_keyid
        from .reader import Reader

        with self._read() as session:
            raw = session.connection().connection  # the DBAPI connection, in this transaction
            sqlite = self.engine.dialect.name == "sqlite"
            return resolve_keyid(Reader(raw, self.url, sqlite=sqlite, driver_error=Exception), text)

    def revoke_key(self, keyid: str, reason: str, *, dry_run: bool = False) -> KeyChange:
        """Revoke a key: its signatures stop counting everywhere, now and later.

        Returns the key, whether this call revoked it (False if it already
        was), and the trusted contents that would load before and do not now.
        With ``dry_run`` the same is computed and nothing is written.
        """
        _check_reason(reason)
        keyid = self.resolve_keyid(keyid)
        at = _now()
        with self._change(dry_run=dry_run) as change:
            row = _key_row(change.session, keyid)
            if row.revoked_at is not None:
                return KeyChange(KeyInfo.of(row), False)
            before, unrevoked = self._signed_by(change, keyid, at), KeyInfo.of(row)
            row.revoked_at, row.revoked_by, row.revoked_reason = at, self.actor, reason
            unloadable = self._now_unloadable(change, keyid, before, at)
            details = {
                "signed": [p.label for p in before],
                "unloadable": [p.label for p in unloadable],
            }
            event = AuditEvent("key.revoke", "ok", keyids=(keyid,), reason=reason, details=details)
            change.log(event, at)
            return KeyChange(unrevoked if dry_run else KeyInfo.of(row), True, unloadable)

    def set_key(
        self,
        keyid: str,
        *,
        expires: datetime | None = None,
        no_expiry: bool = False,
        scopes: Sequence[str] | None = None,
    ) -> KeyChange:
        """Change a trusted key's expiry (``expires``, or none with ``no_expiry``) or scopes.

        Returns the key, whether anything changed, and the trusted contents it
        signed that would load before the change and do not after it.

        Raises:
            PolicyError: the key is revoked (revocation is final).
            UsageError: nothing to change, an expiry in the past, an empty scope.
        """
        if expires is None and not no_expiry and scopes is None:
            raise UsageError("give --expires, --no-expiry or --scope (what to change)")
        if expires is not None and no_expiry:
            raise UsageError("--expires and --no-expiry are alternatives")
        keyid = self.resolve_keyid(keyid)
        at = _now()
        with self._change() as change:
            row = _key_row(change.session, keyid)
            if row.revoked_at is not None:
                raise PolicyError(
                    f"key {keyid[:16]} was revoked at {format_time(row.revoked_at)}; "
                    "revocation is final, its terms cannot change",
                    code="key-revoked",
                )
            old = KeyInfo.of(row)
            new_scopes = list(scopes) if scopes is not None else list(old.scopes)
            new_expiry = None if no_expiry else (expires or old.expires_at)
            _check_key_terms(old.name, new_scopes, expires, at)
            if new_scopes == list(old.scopes) and new_expiry == old.expires_at:
                return KeyChange(old, False)
            before = self._signed_by(change, keyid, at)
            row.scopes, row.expires_at = json.dumps(new_scopes), new_expiry
            unloadable = self._now_unloadable(change, keyid, before, at)
            details = {
                "scopes": new_scopes,
                "expires_at": format_time(new_expiry) if new_expiry else None,
                "previous": {"scopes": list(old.scopes), "expires_at": _time(old.expires_at)},
                "unloadable": [p.label for p in unloadable],
            }
            change.log(AuditEvent("key.set", "ok", keyids=(keyid,), details=details), at)
            return KeyChange(KeyInfo.of(row), True, unloadable)

    def _signed_by(self, change: _Change, keyid: str, at: datetime) -> list[PluginInfo]:
        """The unrevoked contents whose current envelope ``keyid`` signed, with their status."""
        import sqlalchemy as sa

        from .models import Plugin, PluginSigner

        rows = change.session.execute(
            sa.select(Plugin)
            .join(PluginSigner, PluginSigner.plugin_id == Plugin.id)
            .where(PluginSigner.keyid == keyid, Plugin.revoked_at.is_(None))
            .order_by(Plugin.name, Plugin.trusted_at)
        ).scalars()
        return self._infos(change.session, list(rows), at)

    def _now_unloadable(
        self, change: _Change, keyid: str, before: list[PluginInfo], at: datetime
    ) -> tuple[PluginInfo, ...]:
        """Of ``before``, those that loaded then and do not after this transaction's change."""
        change.session.flush()
        was = {p.content_digest: p.status for p in before}
        after = self._signed_by(change, keyid, at)
        return tuple(
            p for p in after if p.status != LOADABLE and was.get(p.content_digest) == LOADABLE
        )

    # --- plugins ---

    def trust(
        self,
        tree: PluginTree,
        *,
        threshold: int = 1,
        pin: bool = False,
        replace: bool = False,
        at: datetime | None = None,
    ) -> TrustResult:
        """Verify a plugin against the registry's keys and trust its exact content.

        The envelope is stored verbatim with the signer key ids. Trusting the
        same content again changes nothing unless ``pin``/``threshold`` rise or
        the new envelope counts a signer the stored one does not (a co-signature,
        or a re-signature after a key rotation): then the new envelope becomes
        the current one, and the one before stays in the content's history.
        Another content of a version already trusted (same name, version and
        platform) is refused unless ``replace``: then the other content is no
        longer trusted (see :meth:`untrust`).

        Raises:
            VerificationError: not signed by ``threshold`` trusted keys (or by
                fewer than the content was trusted with), the content was
                revoked before, or its version is trusted with other content.
                The refusal is audited.
        """

        def judge(state: TrustState, at: datetime) -> tuple[_Accepted, VerifiedPlugin | None]:
            verified = decide_trust(tree, state, at=at)
            return _Accepted.of_verified(verified), verified

        terms = _Terms(threshold, pin, replace)
        return self._trust(tree.signature, judge, terms, tree.manifest, tree.root, at)

    def trust_signature(
        self,
        envelope: bytes,
        *,
        path: str,
        threshold: int = 1,
        pin: bool = False,
        replace: bool = False,
        at: datetime | None = None,
    ) -> TrustResult:
        """:meth:`trust` of a plugin.sig alone (read from ``path``), without the files:
        its statement pins every file's digest, which every load then checks.

        Raises:
            VerificationError: as :meth:`trust` (audited).
            VtregError: the statement names no sha256 for some file.
        """

        def judge(state: TrustState, at: datetime) -> tuple[_Accepted, VerifiedPlugin | None]:
            signed, digest = decide_trust_envelope(envelope, state, at=at)
            return _Accepted.of_signed(signed, digest), None

        terms = _Terms(threshold, pin, replace)
        return self._trust(envelope, judge, terms, None, path, at)

    def _trust(
        self,
        envelope: bytes | None,
        judge: Callable[[TrustState, datetime], tuple[_Accepted, VerifiedPlugin | None]],
        terms: _Terms,
        manifest: bytes | None,
        path: str,
        at: datetime | None,
    ) -> TrustResult:
        _check_threshold(terms.threshold)
        refusal: VerificationError | None = None
        with self._change() as change:
            at = at or _now()  # once the lock is held: judged when decided, logged in order
            state = read_state(change.cursor, envelope, threshold=terms.threshold)
            try:
                accepted, verified = judge(state, at)
                result = self._trust_row(change, accepted, verified, terms, at)
            except VerificationError as e:
                refusal = e
                change.log(_refusal_event("plugin.trust", e, manifest=manifest, path=path), at)
            else:
                newer = _newer_floor(state, accepted)
        if refusal is not None:
            raise refusal
        return replace_fields(result, newer=newer)

    def _trust_row(
        self,
        change: _Change,
        verified: _Accepted,
        plugin: VerifiedPlugin | None,
        terms: _Terms,
        at: datetime,
    ) -> TrustResult:
        """Create the plugin row for ``verified``, or raise it to the new terms; audit a change.

        Every refusal is raised before anything is written.
        """
        import sqlalchemy as sa

        from .models import Plugin

        threshold, pin, replace = terms
        session = change.session
        row = session.execute(
            sa.select(Plugin).where(Plugin.content_digest == verified.content_digest)
        ).scalar_one_or_none()
        if row is not None and row.revoked_at is not None:  # decide_trust refused it already
            raise PolicyError(f"{verified.content_digest} was revoked", code="content-revoked")
        replaced: list[Plugin] = []
        previous: tuple[str, ...] | None = None
        if row is None:
            replaced = _rivals(session, verified)
            if replaced and not replace:
                raise _version_conflict(verified, replaced)
            for rival in replaced:
                self._untrust_row(change, rival, f"replaced by {verified.content_digest}", at)
            row = _new_plugin_row(verified, threshold, pin, at, self.actor)
            session.add(row)
            created = changed = True
        else:
            _check_trusted_threshold(row, verified)
            created, changed = False, _raise_terms(row, threshold, pin)
            stored = tuple(sorted(s.keyid for s in row.signers))
            if not set(verified.signers) <= set(stored):
                previous = stored
                _take_envelope(row, verified)
                changed = True
        session.flush()
        if created or previous is not None:
            session.add(_history_row(row, verified, at, self.actor))
        if changed:
            event = _plugin_event("plugin.trust", "ok", verified)
            details: dict[str, object] = {
                **event.details,
                "pinned": row.pinned,
                "threshold": row.threshold,
                "created": created,
                "signers": sorted(s.keyid for s in row.signers),
            }
            if previous is not None:
                details["previous_signers"] = list(previous)
            if replaced:
                details["replaced"] = [r.content_digest for r in replaced]
            change.log(replace_fields(event, details=details), at)
        session.flush()
        [info] = self._infos(session, [row], at)
        return TrustResult(
            info,
            plugin,
            created,
            changed,
            None,
            tuple(r.content_digest for r in replaced),
            previous,
        )

    def _untrust_row(self, change: _Change, row: Plugin, reason: str, at: datetime) -> None:
        """Forget a trusted content (its history too) and audit it; the log keeps the record."""
        import sqlalchemy as sa

        from .models import PluginEnvelope

        change.log(_content_event("plugin.untrust", row, reason, row.content_digest), at)
        change.session.execute(sa.delete(PluginEnvelope).where(PluginEnvelope.plugin_id == row.id))
        change.session.delete(row)

    def matching(
        self, *, name: str | None = None, version: str | None = None, digest: str | None = None
    ) -> list[PluginInfo]:
        """Every content (trusted or revoked) that NAME, NAME@VERSION or a digest names.

        ``digest`` may be a full content digest or a prefix of it of at least
        8 hex digits (``sha256:0123abcd``), as tables print it.

        Raises:
            UsageError: not exactly one of a name or a digest, or a prefix that
                names several contents.
        """
        with self._read() as session:
            rows = _targets(session, name, version, digest)
            return self._infos(session, rows, _now())

    def revoke(
        self,
        *,
        name: str | None = None,
        version: str | None = None,
        digest: str | None = None,
        reason: str,
    ) -> list[PluginInfo]:
        """Revoke trusted plugins by name, name and version, or content digest (or prefix).

        Returns what this call revoked: nothing when everything that matches
        was revoked already.

        Raises:
            NotFoundError: nothing was ever trusted that matches.
        """
        _check_reason(reason)
        target = _target_text(name, version, digest)
        at = _now()
        with self._change() as change:
            rows = _targets(change.session, name, version, digest)
            if not rows:
                raise NotFoundError(f"nothing trusted matches {target} (it was never trusted)")
            fresh = [r for r in rows if r.revoked_at is None]
            for row in fresh:
                row.revoked_at, row.revoked_by, row.revoked_reason = at, self.actor, reason
                change.log(_content_event("plugin.revoke", row, reason, target), at)
            change.session.flush()
            return self._infos(change.session, fresh, at)

    def untrust(
        self,
        *,
        name: str | None = None,
        version: str | None = None,
        digest: str | None = None,
        reason: str,
    ) -> list[PluginInfo]:
        """Stop trusting contents without banning them: ``vtreg trust`` may trust them again.

        Revoked contents stay revoked (revocation is final); the records of the
        untrusted ones stay in the audit log.

        Raises:
            NotFoundError: nothing trusted matches.
            PolicyError: what matches is revoked (untrusting would lift the ban).
        """
        _check_reason(reason)
        target = _target_text(name, version, digest)
        at = _now()
        with self._change() as change:
            rows = _targets(change.session, name, version, digest)
            if not rows:
                raise NotFoundError(f"nothing trusted matches {target}")
            fresh = [r for r in rows if r.revoked_at is None]
            if not fresh:
                raise PolicyError(
                    f"{target} is revoked; revocation is final and untrust does not lift it",
                    code="content-revoked",
                )
            infos = self._infos(change.session, fresh, at)
            for row in fresh:
                self._untrust_row(change, row, reason, at)
            return infos

    def plugins(
        self,
        *,
        name: str | None = None,
        signed_by: str | None = None,
        revoked: bool | None = None,
    ) -> list[PluginInfo]:
        """Trusted plugin versions with their effective status, filtered;
        ``revoked=None`` means both kinds.

        ``signed_by`` matches every content an envelope signed by that key was
        ever accepted for, the current one or one it replaced.
        """
        with self.plugin_stream(name=name, signed_by=signed_by, revoked=revoked) as found:
            return list(found)

    @contextlib.contextmanager
    def plugin_stream(
        self,
        *,
        name: str | None = None,
        signed_by: str | None = None,
        revoked: bool | None = None,
    ) -> Iterator[Iterator[PluginInfo]]:
        """:meth:`plugins`, read and judged in batches: memory stays bounded however
        many there are (one snapshot throughout)."""
        import sqlalchemy as sa

        from .models import Plugin, PluginEnvelope, PluginSigner

        stmt = sa.select(Plugin).order_by(Plugin.name, Plugin.trusted_at, Plugin.id)
        if name is not None:
            stmt = stmt.where(Plugin.name == name)
        if signed_by is not None:
            stmt = stmt.where(
                sa.or_(
                    Plugin.id.in_(
                        sa.select(PluginSigner.plugin_id).where(PluginSigner.keyid == signed_by)
                    ),
                    Plugin.id.in_(
                        sa.select(PluginEnvelope.plugin_id).where(
                            PluginEnvelope.signers.contains(signed_by, autoescape=True)
                        )
                    ),
                )
            )
        if revoked is True:
            stmt = stmt.where(Plugin.revoked_at.is_not(None))
        elif revoked is False:
            stmt = stmt.where(Plugin.revoked_at.is_(None))
        with self._read(snapshot=True) as session:
            at = _now()

            def judged() -> Generator[PluginInfo]:
                # A server-side cursor on PostgreSQL: closed with the stream.
                with session.execute(stmt, execution_options={"yield_per": _BATCH}) as result:
                    for rows in result.scalars().partitions():
                        # The session's identity map holds rows weakly: a judged batch goes.
                        yield from self._infos(session, rows, at)

            stream = judged()
            try:
                yield stream
            finally:
                stream.close()

    def lookup(self, digest: str) -> PluginInfo | None:
        """The trust record for one content digest, or None (read in one snapshot, as
        :meth:`plugins` reads it, on the hot path's connection)."""
        with self._decision(write=False) as cursor:
            return _record(cursor, digest, _now())

    def _infos(self, session: Session, rows: Sequence[Plugin], at: datetime) -> list[PluginInfo]:
        """The records of ``rows``, each with the status a load of its current envelope
        would meet at ``at`` (the decision core's, on this transaction's state)."""
        if not rows:
            return []
        cursor = self._sql.within(session.connection())
        state = state_for_contents(cursor, (_trusted_content(r) for r in rows))
        former = _former_signers(session, [r.id for r in rows])
        return [
            PluginInfo.of(
                r,
                _status(r.envelope, state, at),
                tuple(sorted(former.get(r.id, set()) - {s.keyid for s in r.signers})),
            )
            for r in rows
        ]

    # --- audit ---

    def audit_events(self, **filters: Unpack[audit.QueryFilters]) -> list[audit.AuditRecord]:
        """Audit events matching every given filter, newest first, at most ``limit`` (100)."""
        with self._read() as session:
            return audit.query(session, **filters)

    @contextlib.contextmanager
    def audit_stream(
        self, **filters: Unpack[audit.QueryFilters]
    ) -> Iterator[tuple[Iterator[audit.AuditRecord], Callable[[int], int]]]:
        """Every event matching the filters, newest first, read in batches (constant memory).

        Yields the events and ``remaining(seq)``: how many more match below event ``seq``
        (for "N more" after a page), both in the same snapshot.
        """
        with self._read(snapshot=True) as session:

            def remaining(seq: int) -> int:
                below: audit.QueryFilters = {**filters, "after": seq}
                return audit.count(session, **below)

            events = audit.stream(session, **filters)
            try:
                yield events, remaining
            finally:
                events.close()

    def info(self) -> dict[str, Any]:
        """Which registry this is and what it holds: schema revision, counts, the chain head
        (one snapshot; JSON-ready)."""
        import sqlalchemy as sa

        from .db import head_revision, safe_url
        from .models import AuditEvent as AuditRow
        from .models import ChainHead, Key, Plugin

        def counts(table: type[Key] | type[Plugin]) -> dict[str, int]:
            total, revoked = session.execute(
                sa.select(sa.func.count(), sa.func.count(table.revoked_at))
            ).one()
            return {"trusted": int(total) - int(revoked), "revoked": int(revoked)}

        with self._read(snapshot=True) as session:
            revision = session.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            keys, plugins = counts(Key), counts(Plugin)
            head = session.execute(sa.select(ChainHead.seq, ChainHead.hash)).one()
            last_at = session.execute(
                sa.select(AuditRow.at).where(AuditRow.seq == head.seq)
            ).scalar()
        return {
            "url": safe_url(self.url),
            "engine": self.engine.dialect.name,
            "revision": revision,
            "head_revision": head_revision(),
            "keys": keys,
            "plugins": plugins,
            "audit": {
                "events": int(head.seq),
                "head": head.hash if head.seq else None,
                "last_at": _time(last_at),
            },
            "actor": self.actor,
        }

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sa.Connection]:
        """A read-only connection that sees one snapshot throughout (the tree, the events)."""
        with self._read(snapshot=True) as session:
            yield session.connection()

    def name_log(self, origin: str, vkey: str) -> bool:
        """Record the audit log's origin and log key (``vtreg audit init``); False if already so.

        Raises:
            UsageError: the log key is a trusted publisher key, or the log
                already has another origin or key.
        """
        from vtreg.verifier.note import NoteVerifier

        from .models import AuditLog, Key

        at = _now()
        log_key = NoteVerifier.parse(vkey).key
        with self._change() as change:
            if change.session.get(Key, log_key.keyid) is not None:
                raise UsageError(
                    f"key {log_key.short_id}… is a trusted publisher key; a log key must be "
                    "used for nothing else"
                )
            row = change.session.get(AuditLog, 1)
            if row is not None:
                if (row.origin, row.vkey) != (origin, vkey):
                    raise UsageError(
                        f"the audit log is already named {row.origin!r} with key {row.vkey}"
                    )
                return False
            change.session.add(AuditLog(id=1, origin=origin, vkey=vkey, created_at=at))
            details = {"origin": origin, "vkey": vkey}
            change.log(AuditEvent("log.init", "ok", keyids=(log_key.keyid,), details=details), at)
            return True

    def log_identity(self) -> tuple[str, str] | None:
        """The audit log's (origin, vkey), or None before ``vtreg audit init``."""
        from .models import AuditLog

        with self._read() as session:
            row = session.get(AuditLog, 1)
            return (row.origin, row.vkey) if row is not None else None

    def store_checkpoint(self, size: int, note: str, *, replace: bool = False) -> None:
        """Keep a signed checkpoint (``replace``: the same one with more cosignatures)."""
        from sqlalchemy.orm import Session

        from .models import AuditCheckpoint

        with self._errors(orm=True), Session(self.engine) as session, session.begin():
            row = session.get(AuditCheckpoint, size)
            if row is None:
                session.add(AuditCheckpoint(size=size, note=note, signed_at=_now()))
            elif replace:
                row.note = note

    def checkpoint(self, size: int | None = None) -> str | None:
        """The stored checkpoint of ``size`` events (the latest if None, else the smallest
        at least that large), or None."""
        import sqlalchemy as sa

        from .models import AuditCheckpoint

        with self._read() as session:
            query = sa.select(AuditCheckpoint.note)
            if size is None:
                query = query.order_by(AuditCheckpoint.size.desc())
            else:
                query = query.where(AuditCheckpoint.size >= size).order_by(AuditCheckpoint.size)
            return session.execute(query.limit(1)).scalar()

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
            "adding it again does not change them (`vtreg key set` does)"
        )
    return existing


def _key_row(session: Session, keyid: str) -> Key:
    from .models import Key

    row = session.get(Key, keyid)
    if row is None:
        raise NotFoundError(f"no key {keyid} in the registry")
    return row


def _new_plugin_row(
    verified: _Accepted, threshold: int, pin: bool, at: datetime, actor: str
) -> Plugin:
    from .models import Plugin, PluginPlatform, PluginSigner

    return Plugin(
        name=verified.name,
        version=verified.version,
        version_key=SemVer.parse(verified.version).sort_key(),
        content_digest=verified.content_digest,
        platform_rows=[PluginPlatform(platform=p) for p in verified.platforms],
        library=verified.library,
        envelope=verified.envelope,
        signature_expires=verified.expires,
        threshold=threshold,
        pinned=pin,
        trusted_at=at,
        trusted_by=actor,
        signers=[PluginSigner(keyid=k) for k in verified.signers],
    )


def _history_row(row: Plugin, verified: _Accepted, at: datetime, actor: str) -> PluginEnvelope:
    from .models import PluginEnvelope

    return PluginEnvelope(
        plugin_id=row.id,
        envelope=verified.envelope,
        signers=" ".join(sorted(verified.signers)),
        accepted_at=at,
        accepted_by=actor,
    )


def _rivals(session: Session, verified: _Accepted) -> list[Plugin]:
    """Trusted, unrevoked contents of the same name and version as ``verified`` that
    cover one of its platforms."""
    import sqlalchemy as sa

    from .models import Plugin, PluginPlatform

    covers = sa.exists().where(
        PluginPlatform.plugin_id == Plugin.id, PluginPlatform.platform.in_(verified.platforms)
    )
    return list(
        session.execute(
            sa.select(Plugin).where(
                Plugin.name == verified.name,
                Plugin.version == verified.version,
                covers,
                Plugin.revoked_at.is_(None),
                Plugin.content_digest != verified.content_digest,
            )
        ).scalars()
    )


def _newer_floor(state: TrustState, accepted: _Accepted) -> str | None:
    """The newest trusted version of the name, on a platform this content covers, if
    this content is older (its loads there are refused unless pinned)."""
    version = SemVer.parse(accepted.version)
    floors = [state.floors.get((accepted.name, p)) for p in accepted.platforms]
    newer = [SemVer.parse(f) for f in floors if f is not None and version < SemVer.parse(f)]
    return str(max(newer)) if newer else None


def _version_conflict(verified: _Accepted, rivals: Sequence[Plugin]) -> PolicyError:
    others = ", ".join(short_digest(r.content_digest) for r in rivals)
    return PolicyError(
        f"{verified.name} {verified.version} ({platform_label(verified.platforms)}) is already "
        "trusted with "
        f"other content ({others}); this is {short_digest(verified.content_digest)}: "
        "trust it with --replace to stop trusting the other",
        code="version-conflict",
        keyids=verified.signature_keyids,
        subject=verified.subject,
    )


def _check_trusted_threshold(row: Plugin, verified: _Accepted) -> None:
    """An envelope for a trusted content must meet the threshold it was trusted with."""
    if len(verified.signers) < row.threshold:
        raise SignatureError(
            f"signed by {len(verified.signers)}/{row.threshold} trusted keys required "
            f"when {verified.name} {verified.version} was trusted",
            code="threshold",
            keyids=verified.signature_keyids,
            subject=verified.subject,
        )


def _raise_terms(row: Plugin, threshold: int, pin: bool) -> bool:
    """Raise a trusted row's pin and threshold; say whether they changed."""
    if (pin and not row.pinned) or threshold > row.threshold:
        row.pinned = row.pinned or pin
        row.threshold = max(row.threshold, threshold)
        return True
    return False


def _take_envelope(row: Plugin, verified: _Accepted) -> None:
    """Make ``verified``'s envelope the row's current one, its counted signers the row's."""
    from .models import PluginSigner

    row.envelope = verified.envelope
    row.signature_expires = verified.expires
    wanted = set(verified.signers)
    row.signers = [s for s in row.signers if s.keyid in wanted]
    kept = {s.keyid for s in row.signers}
    row.signers.extend(PluginSigner(keyid=k) for k in sorted(wanted - kept))


def _content_event(action: str, row: Plugin, reason: str, target: str) -> AuditEvent:
    return AuditEvent(
        action,
        "ok",
        plugin=row.name,
        version=row.version,
        digest=row.content_digest,
        keyids=tuple(s.keyid for s in row.signers),
        reason=reason,
        details={"target": target},
    )


def _target_text(name: str | None, version: str | None, digest: str | None) -> str:
    if (digest is None) == (name is None):
        raise UsageError("give NAME, NAME@VERSION or --digest DIGEST (exactly one)")
    return digest or (f"{name}@{version}" if version else str(name))


def _targets(
    session: Session, name: str | None, version: str | None, digest: str | None
) -> list[Plugin]:
    """The contents NAME, NAME@VERSION or a digest (or its prefix) names, revoked ones too."""
    import sqlalchemy as sa

    from .models import Plugin

    target = _target_text(name, version, digest)
    stmt = sa.select(Plugin).order_by(Plugin.name, Plugin.trusted_at)
    if digest is not None:
        stmt = stmt.where(digest_condition(Plugin.content_digest, digest))
    else:
        stmt = stmt.where(Plugin.name == name)
        if version is not None:
            stmt = stmt.where(Plugin.version == version)
    rows = list(session.execute(stmt).scalars())
    if digest is not None and len(rows) > 1:
        raise UsageError(f"digest prefix {target} matches several contents; give more digits")
    return rows


def _trusted_content(row: Plugin) -> TrustedContent:
    return TrustedContent(
        name=row.name,
        version=row.version,
        platforms=row.platforms,
        content_digest=row.content_digest,
        threshold=row.threshold,
        pinned=row.pinned,
        revoked=(row.revoked_reason or "") if row.revoked_at is not None else None,
        revoked_at=row.revoked_at,
    )


def _stored_time(value: datetime | str) -> datetime:
    found = time_in(value)
    assert found is not None  # noqa: S101 - the column is NOT NULL
    return found


def _record(cursor: Cursor, digest: str, at: datetime) -> PluginInfo | None:
    """:meth:`Registry.lookup` on ``cursor``: the record :meth:`Registry._infos` makes."""
    rows = cursor.rows(cursor.sql.record, (digest,))
    if not rows:
        return None
    (plugin_id, name, version, digest, threshold, pinned, trusted_at, trusted_by) = rows[0][:8]
    revoked_at, revoked_reason, envelope, platforms = rows[0][8:]
    content = TrustedContent(
        name=name,
        version=version,
        platforms=tuple(sorted(platforms.split())) if platforms else (),
        content_digest=digest,
        threshold=int(threshold),
        pinned=bool(pinned),
        revoked=(revoked_reason or "") if revoked_at is not None else None,
        revoked_at=time_in(revoked_at),
    )
    signers = tuple(sorted(k for (k,) in cursor.rows(cursor.sql.signers, (plugin_id,))))
    former = {
        k for (s,) in cursor.rows(cursor.sql.accepted_signers, (plugin_id,)) for k in s.split()
    }
    status = _status(envelope, state_for_contents(cursor, [content]), at)
    return PluginInfo(
        name=name,
        version=version,
        content_digest=digest,
        platforms=content.platforms,
        signers=signers,
        threshold=content.threshold,
        pinned=content.pinned,
        trusted_at=_stored_time(trusted_at),
        trusted_by=trusted_by,
        revoked_at=content.revoked_at,
        revoked_reason=revoked_reason,
        status=status,
        former_signers=tuple(sorted(former - set(signers))),
    )


def _former_signers(session: Session, plugin_ids: Sequence[int]) -> dict[int, set[str]]:
    """Every key that signed an envelope accepted for each of ``plugin_ids``."""
    import sqlalchemy as sa

    from .models import PluginEnvelope

    found: dict[int, set[str]] = {}
    for low in range(0, len(plugin_ids), 500):  # bounded IN lists on every engine
        chunk = plugin_ids[low : low + 500]
        for plugin_id, signers in session.execute(
            sa.select(PluginEnvelope.plugin_id, PluginEnvelope.signers).where(
                PluginEnvelope.plugin_id.in_(chunk)
            )
        ):
            found.setdefault(plugin_id, set()).update(signers.split())
    return found


def _status(envelope: bytes, state: TrustState, at: datetime) -> str:
    """What a load of the content ``envelope`` signs would meet now: LOADABLE, or a code."""
    try:
        decide_envelope(bytes(envelope), state, at=at)
    except VerificationError as e:
        return e.code
    except VtregError:
        return "undecided"
    return LOADABLE
