"""Publisher-side and offline commands: ``keygen``, ``sign``, ``verify``, ``key pub``,
``key passphrase``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from ._app import Report, Settings, cli, vtreg_command
from ._params import (
    NAME,
    NEW_PASSPHRASE_ENV,
    TIME_OR_DURATION,
    PassphraseSource,
    ask_pin,
    passphrase_reader,
    utc_now,
)
from .trust import key_group

if TYPE_CHECKING:
    from vtreg.verifier.keyrefs import Signer
    from vtreg.verifier.keys import SigningKey
    from vtreg.verifier.signatures import VerifiedPlugin
    from vtreg.verifier.tree import PendingCapture

__all__ = ["key_passphrase", "key_pub", "keygen", "sign", "verify"]

T = TypeVar("T")
_TRIES = 3  # passphrase prompts at a terminal before giving up, as ssh-keygen does
_KEYREF_HELP = (
    "Signing key: a private key file (vtreg or OpenSSH), ssh-agent:PUBFILE, "
    "ssh-agent:SHA256:FINGERPRINT, or a pkcs11: URI."
)

_passphrase_file = click.option(
    "--passphrase-file",
    type=click.Path(),
    help="Read the passphrase from the first line of this file (else $VTREG_PASSPHRASE, "
    "else a prompt).",
)


@vtreg_command(cli)
@click.argument("name", type=NAME)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(),
    default=".",
    show_default=True,
    help="Directory to write NAME.key and NAME.pub into.",
)
@click.option(
    "--unencrypted", is_flag=True, help="Write the private key without a passphrase (not advised)."
)
@_passphrase_file
def keygen(
    settings: Settings, name: str, out_dir: str, unencrypted: bool, passphrase_file: str | None
) -> Report:
    """Generate an ed25519 key pair: NAME.key (private, 0600) and NAME.pub."""
    from vtreg.verifier.errors import NotFoundError
    from vtreg.verifier.files import create_files_exclusive, refuse_existing, remove_half_made
    from vtreg.verifier.keys import SigningKey

    out = Path(out_dir)
    if not out.is_dir():
        raise NotFoundError(f"output directory {out} does not exist")
    # The public half is linked first, so a pair cut short never leaves a lone
    # secret; a pair an interrupted keygen left half-made is removed here.
    pub_path, key_path = out / f"{name}.pub", out / f"{name}.key"
    remove_half_made([pub_path, key_path])
    refuse_existing([pub_path, key_path])  # before asking for a passphrase
    passphrase = (
        None
        if unencrypted
        else passphrase_reader(passphrase_file, confirm=True, what=f"{key_path} (new)")()
    )
    key = SigningKey.generate(name)
    create_files_exclusive(
        [
            (pub_path, key.public_key.to_file_bytes(), 0o644),
            (key_path, key.to_pem(passphrase), 0o600),
        ]
    )
    warnings = []
    if unencrypted:
        warnings.append(f"{key_path} is not encrypted: anyone who can read it can sign as you")
    return Report(
        data={
            "name": name,
            "keyid": key.keyid,
            "private_key": str(key_path),
            "public_key": str(pub_path),
            "encrypted": not unencrypted,
        },
        text=(
            f"wrote {key_path} (private, {'unencrypted' if unencrypted else 'encrypted'}) "
            f"and {pub_path}\nkeyid {key.keyid}"
        ),
        warnings=warnings,
    )


@vtreg_command(cli)
@click.argument("directory", type=click.Path())
@click.option("--key", "key_ref", required=True, metavar="KEYREF", help=_KEYREF_HELP)
@click.option(
    "--expires",
    type=TIME_OR_DURATION,
    help="Signature expiry: a duration from now (90d, 12h, 2w, 1y) or a date.",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Sign a new statement, dropping the signatures already in plugin.sig.",
)
@_passphrase_file
def sign(
    settings: Settings,
    directory: str,
    key_ref: str,
    expires: datetime | None,
    fresh: bool,
    passphrase_file: str | None,
) -> Report:
    """Sign a plugin directory, writing (or co-signing) DIRECTORY/plugin.sig."""
    from vtreg.verifier.files import atomic_write, remove_stale_temporaries
    from vtreg.verifier.layout import SIGNATURE_FILE
    from vtreg.verifier.signing import sign as sign_tree
    from vtreg.verifier.tree import capture

    sig_path = Path(directory) / SIGNATURE_FILE
    # Before the capture: a temporary a killed sign left inside the directory
    # (when its parent was not writable) would otherwise be signed as content.
    remove_stale_temporaries(sig_path)
    tree = capture(directory)
    key = _open_signer(key_ref, passphrase_file)
    result = sign_tree(tree, key, at=utc_now(), expires=expires, fresh=fresh)
    if not result.already_signed:
        atomic_write(sig_path, result.envelope, 0o644)
    if result.already_signed:
        what = f"already signed by {key.public_key.short_id}…; {sig_path} unchanged"
    elif result.cosigned:
        what = f"added a signature to {sig_path} ({result.signatures} signatures)"
    elif result.replaced:
        what = f"content changed since the last signature: replaced {sig_path}"
    else:
        what = f"wrote {sig_path}"
    return Report(
        data={
            "signature_file": str(sig_path),
            "keyid": key.keyid,
            "content_digest": result.content_digest,
            "signatures": result.signatures,
            "cosigned": result.cosigned,
            "replaced": result.replaced,
            "already_signed": result.already_signed,
        },
        text=f"{what}\ncontent {result.content_digest}\nkeyid   {key.keyid}",
        warnings=(
            ["earlier signatures were dropped because the content changed"]
            if result.replaced
            else []
        ),
    )


@vtreg_command(cli)
@click.argument("directory", type=click.Path())
@click.option(
    "--key",
    "key_files",
    multiple=True,
    type=click.Path(),
    help="Trusted public key (repeatable): a file, or an ssh-ed25519 line; verify offline, "
    "without the registry.",
)
@click.option(
    "--threshold",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Distinct trusted keys that must have signed.",
)
@click.option(
    "--db",
    "db_url",
    metavar="URL",
    help="Registry to decide against when no --key is given (default: $VTREG_DATABASE_URL, "
    "else SQLite in $VTREG_HOME).",
)
def verify(
    settings: Settings,
    directory: str,
    key_files: tuple[str, ...],
    threshold: int,
    db_url: str | None,
) -> Report:
    """Verify a plugin directory: offline with --key, else against the registry.

    Against the registry the plugin must be signed by enough trusted, unexpired,
    unrevoked keys whose scope covers it, its content must be trusted and not
    revoked, and it must not be older than the newest trusted version (unless
    pinned). The decision is recorded in the audit log.
    """
    # Hashing started before the imports (registry.cli.main) or starts now,
    # so that reading a large library overlaps the imports below.
    pending = settings.take_capture(directory)
    try:
        if key_files and db_url:
            from vtreg.verifier.errors import UsageError

            raise UsageError("--key verifies offline; --db verifies against a registry: pick one")
        if not key_files:
            return _verify_with_registry(db_url, threshold, directory, pending)
        return _verify_with_keys(key_files, threshold, directory, pending)
    finally:
        pending.cancel()  # a no-op once the result is in


def _verify_with_keys(
    key_files: tuple[str, ...], threshold: int, directory: str, pending: PendingCapture
) -> Report:
    from vtreg.verifier.errors import UsageError
    from vtreg.verifier.keyrefs import read_public_key_ref
    from vtreg.verifier.signatures import verify, verify_envelope
    from vtreg.verifier.tree import capture, read_signature

    keys = [read_public_key_ref(ref) for ref in key_files]
    distinct = len({k.keyid for k in keys})
    if threshold > distinct:
        raise UsageError(
            f"threshold {threshold} can never be met with {distinct} distinct --key file(s)"
        )
    at = utc_now()
    # plugin.sig is checked first; the early capture counts only if it read what was signed.
    signature = read_signature(directory)
    signed = verify_envelope(signature, keys, at=at, threshold=threshold)
    tree = pending.result(signature, signed.expected) or capture(
        directory, expect=signed.expected, algorithms=signed.algorithms
    )
    result = verify(tree, keys, at=at, threshold=threshold)
    return _verified_report(result, threshold)


def _verify_with_registry(
    db_url: str | None, threshold: int, directory: str, pending: PendingCapture
) -> Report:
    from vtreg.registry.service import Registry
    from vtreg.verifier.envelope import format_time

    with Registry.open(db_url) as registry:
        at = utc_now()
        tree = registry.capture_signed(
            "plugin.verify", directory, at=at, threshold=threshold, pending=pending
        )
        result = registry.verify_plugin(tree, at=at, threshold=threshold)
        record = registry.lookup(result.content_digest)
    report = _verified_report(result, threshold)
    if record is not None:
        report.text += (
            f"\n  trusted    since {format_time(record.trusted_at)} by {record.trusted_by}"
        )
        report.data["trust"] = record.to_json()
    return report


def _verified_report(result: VerifiedPlugin, threshold: int) -> Report:
    from vtreg.verifier.envelope import format_time

    signers = ", ".join(k[:16] for k in result.signers)
    expires = format_time(result.expires) if result.expires else "never"
    text = "\n".join(
        [
            f"verified {result.name} {result.version} ({result.platform})",
            f"  content    {result.content_digest}",
            f"  signed by  {signers} ({len(result.signers)}/{threshold} required)",
            f"  signed at  {format_time(result.signed_at)}, expires {expires}",
            f"  files      {len(result.files)}",
        ]
    )
    return Report(data={"verified": True, "plugin": result.summary()}, text=text)


def _open_signer(ref: str, passphrase_file: str | None) -> Signer:
    """The signing key ``ref`` names; a passphrase mistyped at a terminal is asked again."""
    from vtreg.verifier.keyrefs import open_signer

    return _with_retries(ref, passphrase_file, lambda source: open_signer(ref, source, ask_pin()))


def _open_key_file(path: str, passphrase_file: str | None) -> SigningKey:
    from vtreg.verifier.keyrefs import read_private_key_ref

    return _with_retries(path, passphrase_file, lambda source: read_private_key_ref(path, source))


def _with_retries(
    ref: str, passphrase_file: str | None, open_key: Callable[[PassphraseSource], T]
) -> T:
    from vtreg.verifier.errors import PassphraseError
    from vtreg.verifier.text import printable

    source = passphrase_reader(passphrase_file, what=ref)
    for _ in range(_TRIES - 1):
        try:
            return open_key(source)
        except PassphraseError as e:
            if not source.prompted:
                raise
            click.echo(f"vtreg: {printable(str(e))}; try again", err=True)
    return open_key(source)  # the last try: its error is the answer


@vtreg_command(key_group, "pub")
@click.argument("keyref")
@click.option("--openssh", is_flag=True, help="An OpenSSH line (ssh-ed25519 AAAA... name).")
@click.option(
    "--out", "out_file", type=click.Path(), help="Write it to this new file instead of stdout."
)
@_passphrase_file
def key_pub(
    settings: Settings,
    keyref: str,
    openssh: bool,
    out_file: str | None,
    passphrase_file: str | None,
) -> Report:
    """Print or write the public key of KEYREF (a key file, ssh-agent:... or pkcs11:...)."""
    from vtreg.verifier.files import create_files_exclusive
    from vtreg.verifier.ssh import fingerprint, public_blob, public_line

    public = _open_signer(keyref, passphrase_file).public_key
    text = public_line(public) + "\n" if openssh else public.to_file_bytes().decode("ascii")
    if out_file is not None:
        create_files_exclusive([(out_file, text.encode("ascii"), 0o644)])
    data = {
        "keyid": public.keyid,
        "fingerprint": fingerprint(public_blob(public)),
        "openssh": public_line(public),
        "pem": public.to_pem().decode("ascii"),
        "public_key": out_file,
    }
    shown = f"wrote {out_file}\nkeyid {public.keyid}" if out_file else text.rstrip("\n")
    return Report(data=data, text=shown)


@vtreg_command(key_group, "passphrase")
@click.argument("keyfile", type=click.Path())
@_passphrase_file
@click.option(
    "--new-passphrase-file",
    type=click.Path(),
    help=f"Read the new passphrase from the first line of this file (else ${NEW_PASSPHRASE_ENV}, "
    "else a prompt, asked twice).",
)
@click.option("--unencrypted", is_flag=True, help="Remove the passphrase (not advised).")
def key_passphrase(
    settings: Settings,
    keyfile: str,
    passphrase_file: str | None,
    new_passphrase_file: str | None,
    unencrypted: bool,
) -> Report:
    """Change the passphrase of a private key file in place, keeping its format."""
    from vtreg.verifier.files import atomic_write
    from vtreg.verifier.keys import is_openssh_private_key

    key = _open_key_file(keyfile, passphrase_file)
    new = None
    if not unencrypted:
        new = passphrase_reader(
            new_passphrase_file, confirm=True, what=f"{keyfile} (new)", env=NEW_PASSPHRASE_ENV
        )()
    with open(keyfile, "rb") as f:  # already read once: this only tells its format
        openssh = is_openssh_private_key(f.read(64))
    atomic_write(keyfile, key.to_openssh(new) if openssh else key.to_pem(new), 0o600)
    state = "unencrypted" if unencrypted else "encrypted with the new passphrase"
    return Report(
        data={"private_key": keyfile, "keyid": key.keyid, "encrypted": not unencrypted},
        text=f"{keyfile} is now {state}\nkeyid {key.keyid}",
        warnings=[f"{keyfile} is not encrypted: anyone who can read it can sign as you"]
        if unencrypted
        else [],
    )
