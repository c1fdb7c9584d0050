"""Sign with a key on a PKCS#11 token, named by an RFC 7512 ``pkcs11:`` URI.

``pkcs11:token=vtreg;object=release?module-path=/usr/lib/softhsm/libsofthsm2.so``
names the token (``token``, ``serial``, ``manufacturer``, ``model``) and the
key (``object`` = CKA_LABEL, ``id`` = CKA_ID, ``type=private``). The module is
``module-path`` or ``$VTREG_PKCS11_MODULE``; the PIN is ``pin-value``, the
first line of the file ``pin-source`` names, ``$VTREG_PKCS11_PIN``, or the
caller's prompt, in that order. The key never leaves the token: an ed25519
key signs with CKM_EDDSA, an ECDSA P-256 or P-384 key with CKM_ECDSA over the
SHA-256 or SHA-384 of the message (computed here: not every token hashes for
ECDSA, SoftHSM2 2.6 does not), its raw ``r || s`` written DER-encoded as vtreg
verifies it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote_to_bytes

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .errors import KeyFileError, NotFoundError, PassphraseError
from .files import read_bounded
from .keyrefs import DelegatedKey
from .keys import PublicKey
from .text import printable

if TYPE_CHECKING:
    import pkcs11
    from pkcs11._pkcs11 import lib as Pkcs11Library

__all__ = ["MODULE_ENV", "PIN_ENV", "Pkcs11Uri", "parse_uri", "token_key"]

MODULE_ENV = "VTREG_PKCS11_MODULE"
PIN_ENV = "VTREG_PKCS11_PIN"
_PATH_ATTRIBUTES = {"token", "serial", "manufacturer", "model", "object", "id", "type"}
_QUERY_ATTRIBUTES = {"module-path", "pin-value", "pin-source"}
_MAX_PIN_FILE = 4096


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 URI that name a token, a key, a module and a PIN."""

    path: dict[str, bytes]
    query: dict[str, bytes]

    def text(self, name: str) -> str | None:
        """A path or query attribute as text (they are UTF-8 once percent-decoded)."""
        value = self.path.get(name, self.query.get(name))
        return None if value is None else value.decode("utf-8", errors="replace")


def parse_uri(uri: str) -> Pkcs11Uri:
    """Parse ``pkcs11:path-attributes[?query-attributes]`` (RFC 7512 §2.3).

    An attribute this module does not know is refused rather than ignored:
    the RFC says such a URI matches nothing, and ignoring, say, a misspelt
    ``object`` would pick whatever key the token holds first.

    Raises:
        KeyFileError: not such a URI, a repeated or unknown attribute, or no key named.
    """
    body = uri.removeprefix("pkcs11:")
    path_part, _, query_part = body.partition("?")
    path = _attributes(path_part, ";", _PATH_ATTRIBUTES, uri)
    query = _attributes(query_part, "&", _QUERY_ATTRIBUTES, uri)
    if path.get("type", b"private") != b"private":
        raise KeyFileError(f"{printable(uri)}: a signing key is type=private")
    if "object" not in path and "id" not in path:
        raise KeyFileError(f"{printable(uri)}: name the key with object= or id=")
    return Pkcs11Uri(path, query)


def _attributes(part: str, separator: str, known: set[str], uri: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for item in filter(None, part.split(separator)):
        name, equals, value = item.partition("=")
        if not equals or name not in known:
            raise KeyFileError(
                f"{printable(uri)}: unknown or malformed attribute {printable(item)!r} "
                f"(vtreg reads {', '.join(sorted(known))})"
            )
        if name in found:
            raise KeyFileError(f"{printable(uri)}: attribute {name} is given twice")
        found[name] = unquote_to_bytes(value)
    return found


def token_key(uri: str, prompt: Callable[[str], bytes] | None) -> DelegatedKey:
    """The ed25519 or ECDSA P-256/P-384 key the URI names, signing on its token.

    Raises:
        KeyFileError: no module, no such token or key, or a key of another type or curve.
        PassphraseError: no PIN, or a wrong one.
    """
    parsed = parse_uri(uri)
    try:
        import pkcs11
    except ImportError as e:
        raise KeyFileError("PKCS#11 keys need python-pkcs11: pip install 'vtreg[pkcs11]'") from e
    token = _token(_module(parsed), parsed)
    where = f"PKCS#11 token {printable(token.label)!r}"
    pin = _pin(parsed, where, prompt)
    with _Session(token, pin, where) as session:
        private = _object(session, parsed, pkcs11.ObjectClass.PRIVATE_KEY, where)
        if private.key_type not in (pkcs11.KeyType.EC_EDWARDS, pkcs11.KeyType.EC):
            raise KeyFileError(
                f"{where}: key {_key_name(parsed)} is {private.key_type.name}; "
                "vtreg signs with ed25519 (EC_EDWARDS) or ECDSA P-256/P-384 (EC) keys"
            )
        found = _object(session, parsed, pkcs11.ObjectClass.PUBLIC_KEY, where)
        if private.key_type == pkcs11.KeyType.EC_EDWARDS:
            public = _eddsa_public_key(found, where)
        else:
            found_public = cast("pkcs11.PublicKey", found)  # _object found a PUBLIC_KEY
            public = _ecdsa_public_key(found_public, f"{where}: key {_key_name(parsed)}")

    def sign(message: bytes) -> bytes:
        with _Session(token, pin, where) as session:
            key = _object(session, parsed, pkcs11.ObjectClass.PRIVATE_KEY, where)
            if not isinstance(key, pkcs11.SignMixin):
                raise KeyFileError(f"{where}: key {_key_name(parsed)} cannot sign")
            return _signature(key, public, message)

    return DelegatedKey(public, sign, f"{where} key {_key_name(parsed)}")


def _module(parsed: Pkcs11Uri) -> Pkcs11Library:
    import pkcs11

    path = parsed.text("module-path") or os.environ.get(MODULE_ENV)
    if not path:
        raise KeyFileError(f"no PKCS#11 module: give module-path= in the URI or set {MODULE_ENV}")
    try:
        return pkcs11.lib(path)
    except (RuntimeError, OSError) as e:
        raise KeyFileError(f"cannot load PKCS#11 module {printable(path)}") from e


def _token(lib: Pkcs11Library, parsed: Pkcs11Uri) -> pkcs11.Token:
    import pkcs11

    wanted = {
        "token": lambda t: t.label,
        "serial": lambda t: t.serial.decode("utf-8", errors="replace").strip(),
        "manufacturer": lambda t: t.manufacturer_id,
        "model": lambda t: t.model,
    }
    try:
        tokens = list(lib.get_tokens())
    except pkcs11.PKCS11Error as e:
        raise KeyFileError(f"the PKCS#11 module lists no tokens ({type(e).__name__})") from e
    given = {name: parsed.text(name) for name in wanted if parsed.text(name)}
    found = [t for t in tokens if all(wanted[n](t).strip() == v for n, v in given.items())]
    named = ", ".join(f"{n}={printable(v or '')}" for n, v in given.items())
    if not found:
        raise KeyFileError(f"no PKCS#11 token matches {named or 'the URI'} ({len(tokens)} present)")
    if len(found) > 1:
        raise KeyFileError(f"{len(found)} PKCS#11 tokens match {named or 'the URI'}; name one")
    token: pkcs11.Token = found[0]
    return token


def _pin(parsed: Pkcs11Uri, where: str, prompt: Callable[[str], bytes] | None) -> bytes:
    if "pin-value" in parsed.query:
        return parsed.query["pin-value"]
    source = parsed.text("pin-source")
    if source is not None:
        path = source.removeprefix("file:")
        try:
            data = read_bounded(path, _MAX_PIN_FILE, f"PIN file {printable(path)}")
        except NotFoundError as e:
            raise PassphraseError(str(e)) from e
        return data.split(b"\n", 1)[0].removesuffix(b"\r")
    env = os.environ.get(PIN_ENV)
    if env:
        return env.encode("utf-8")
    if prompt is None:
        raise PassphraseError(f"{where} needs a PIN: set {PIN_ENV} or pin-source= in the URI")
    return prompt(f"PIN for {where}: ")


class _Session:
    """A logged-in session, with the token's errors said in one line."""

    def __init__(self, token: pkcs11.Token, pin: bytes, where: str) -> None:
        self._token, self._pin, self._where = token, pin, where
        self._session: pkcs11.Session | None = None

    def __enter__(self) -> pkcs11.Session:
        import pkcs11

        try:
            pin = self._pin.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PassphraseError(f"the PIN for {self._where} is not UTF-8 text") from e
        try:
            self._session = self._token.open(user_pin=pin)
        except (pkcs11.PinIncorrect, pkcs11.PinLenRange) as e:
            raise PassphraseError(f"wrong PIN for {self._where}") from e
        except pkcs11.PinLocked as e:
            raise PassphraseError(f"the PIN of {self._where} is locked") from e
        except pkcs11.PKCS11Error as e:
            raise KeyFileError(f"cannot log in to {self._where} ({type(e).__name__})") from e
        return self._session

    def __exit__(self, *exc: object) -> None:
        if self._session is not None:
            self._session.close()


def _object(
    session: pkcs11.Session, parsed: Pkcs11Uri, kind: pkcs11.ObjectClass, where: str
) -> pkcs11.Key:
    import pkcs11

    match: dict[str, object] = {"object_class": kind}
    if "object" in parsed.path:
        match["label"] = parsed.text("object")
    if "id" in parsed.path:
        match["id"] = parsed.path["id"]
    what = "private" if kind == pkcs11.ObjectClass.PRIVATE_KEY else "public"
    try:
        return session.get_key(**match)  # type: ignore[arg-type] # keyword filters
    except pkcs11.NoSuchKey as e:
        raise KeyFileError(f"{where} holds no {what} key {_key_name(parsed)}") from e
    except pkcs11.MultipleObjectsReturned as e:
        raise KeyFileError(f"{where} holds several {what} keys {_key_name(parsed)}") from e
    except pkcs11.PKCS11Error as e:
        raise KeyFileError(f"{where}: cannot find key {_key_name(parsed)}") from e


def _signature(key: pkcs11.SignMixin, public: PublicKey, message: bytes) -> bytes:
    """The token's signature of ``message``, as vtreg writes it for ``public``'s type."""
    import pkcs11

    algorithm = public.ecdsa_hash
    if algorithm is None:
        return bytes(key.sign(message, mechanism=pkcs11.Mechanism.EDDSA))
    digest = hashes.Hash(algorithm)
    digest.update(message)
    raw = bytes(key.sign(digest.finalize(), mechanism=pkcs11.Mechanism.ECDSA))
    half = len(raw) // 2  # r and s, each as long as the curve's order
    return encode_dss_signature(int.from_bytes(raw[:half]), int.from_bytes(raw[half:]))


def _ecdsa_public_key(key: pkcs11.PublicKey, what: str) -> PublicKey:
    """The key from CKA_EC_PARAMS and CKA_EC_POINT, refused unless on P-256 or P-384."""
    from pkcs11.util.ec import encode_ec_public_key

    try:
        loaded = serialization.load_der_public_key(encode_ec_public_key(key))
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise KeyFileError(f"{what}: its public key is not a readable EC key") from e
    if not isinstance(loaded, ec.EllipticCurvePublicKey):
        raise KeyFileError(f"{what}: its public key is not an EC key")
    try:
        return PublicKey(
            loaded.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    except KeyFileError as e:
        raise KeyFileError(
            f"{what} is ECDSA {printable(loaded.curve.name)}; "
            "vtreg signs with ed25519 or ECDSA P-256/P-384 keys"
        ) from e


def _eddsa_public_key(key: pkcs11.Key, where: str) -> PublicKey:
    """The raw ed25519 key from CKA_EC_POINT: a DER OCTET STRING, or (some tokens) bare."""
    import pkcs11

    point = bytes(key[pkcs11.Attribute.EC_POINT])
    if len(point) == 34 and point[:2] == b"\x04\x20":
        point = point[2:]
    if len(point) != 32:
        raise KeyFileError(f"{where}: its public key is not a 32-byte ed25519 point")
    return PublicKey(point)


def _key_name(parsed: Pkcs11Uri) -> str:
    parts = []
    if "object" in parsed.path:
        parts.append(f"object={printable(parsed.text('object') or '')}")
    if "id" in parsed.path:
        parts.append(f"id={parsed.path['id'].hex()}")
    return ";".join(parts)
