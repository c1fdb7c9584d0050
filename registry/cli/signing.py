"""Publisher-side and offline commands: ``keygen``, ``sign``, ``verify``, ``key pub``,
``key passphrase``."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import click

from ._app import Report, Settings, cli, vtreg_command
from ._params import (
    NAME,
    NEW_PASSPHRASE_ENV,
    STDIN_NAMES,
    TIME_OR_DURATION,
    PassphraseSource,
    ask_pin,
    passphrase_reader,
    utc_now,
)
from .fleet import fleet_option, grace_option, verify_with_fleet
from .trust import key_group

if TYPE_CHECKING:
    from collections.abc import Callable

    from vtreg.registry.service import Registry
    from vtreg.verifier.keyrefs import Signer
    from vtreg.verifier.keys import PublicKey, SigningKey
    from vtreg.verifier.signatures import VerifiedPlugin
    from vtreg.verifier.signing import SignResult
    from vtreg.verifier.tree import PendingCapture, PluginTree

__all__ = ["KEYREF_HELP", "key_passphrase", "key_pub", "keygen", "open_keyref", "sign", "verify"]

T = TypeVar("T")
_TRIES = 3  # passphrase prompts at a terminal before giving up, as ssh-keygen does
KEYREF_HELP = (
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
@click.argument("directories", nargs=-1, required=True, type=click.Path(), metavar="DIR...")
@click.option("--key", "key_ref", required=True, metavar="KEYREF", help=KEYREF_HELP)
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
@click.option(
    "--exclude",
    "exclude",
    multiple=True,
    metavar="GLOB",
    help="Leave paths matching GLOB out of the signature (repeatable; '*' also matches '/'; "
    "a matching directory is left out whole). The patterns are signed. Without it, the "
    "patterns of the plugin.sig there are kept unless --fresh.",
)
@_passphrase_file
def sign(
    settings: Settings,
    directories: tuple[str, ...],
    key_ref: str,
    expires: datetime | None,
    fresh: bool,
    exclude: tuple[str, ...],
    passphrase_file: str | None,
) -> Report:
    """Sign plugin directories, writing (or co-signing) DIR/plugin.sig in each.

    Every file is signed except those --exclude leaves out; each platform's
    library (lib<name>.so, lib<name>.dylib, <name>.dll...) is signed and named
    in the statement. Several directories are signed in one process with one
    passphrase; `-` reads their paths from stdin, one a line.
    """
    from ._batch import STDIN, batch, single
    from ._batch import directories as named

    if STDIN in directories and passphrase_file in STDIN_NAMES:
        from vtreg.verifier.errors import UsageError

        raise UsageError("stdin can give the directories or the passphrase, not both")
    names = named(directories)
    patterns = _exclude_patterns(exclude)
    terms = _SignTerms(expires, fresh, patterns)

    def read_key() -> Signer:
        return open_keyref(key_ref, passphrase_file)

    if single(directories, names):
        return _sign_one(names[0], read_key, terms)
    key = read_key()
    return batch(names, lambda d: _sign_one(d, lambda: key, terms), done="signed")


class _SignTerms(NamedTuple):
    """What ``vtreg sign`` asks for besides the key: --expires, --fresh, --exclude."""

    expires: datetime | None
    fresh: bool
    exclude: tuple[str, ...] | None  # None: keep the existing plugin.sig's (unless fresh)


def _exclude_patterns(given: tuple[str, ...]) -> tuple[str, ...] | None:
    """The --exclude patterns, checked and without a trailing ``/``; None if none given."""
    from vtreg.verifier.errors import UsageError
    from vtreg.verifier.exclude import MAX_EXCLUDES, check_exclude_pattern

    if not given:
        return None
    if len(given) > MAX_EXCLUDES:
        raise UsageError(f"at most {MAX_EXCLUDES} --exclude patterns, got {len(given)}")
    try:
        return tuple(dict.fromkeys(check_exclude_pattern(p.rstrip("/") or p) for p in given))
    except ValueError as e:
        raise UsageError(f"--exclude: {e}") from e


def _sign_one(directory: str, read_key: Callable[[], Signer], terms: _SignTerms) -> Report:
    from vtreg.verifier.files import atomic_write, remove_stale_temporaries
    from vtreg.verifier.layout import SIGNATURE_FILE
    from vtreg.verifier.signing import sign as sign_tree
    from vtreg.verifier.tree import capture, claimed_exclude

    sig_path = Path(directory) / SIGNATURE_FILE
    # Before the capture: a temporary a killed sign left inside the directory
    # (when its parent was not writable) would otherwise be signed as content.
    remove_stale_temporaries(sig_path)
    exclude = terms.exclude
    old = _replaced_signature(directory) if terms.fresh else None
    if exclude is None and not terms.fresh:
        # A co-signer need not repeat them: the statement it signs is kept byte for byte.
        exclude = claimed_exclude(_signature_to_keep(directory))
    tree = capture(directory, exclude=exclude or (), signature=old)
    key = read_key()  # after the capture: a bad directory fails before any prompt
    result = sign_tree(tree, key, at=utc_now(), expires=terms.expires, fresh=terms.fresh)
    if not result.already_signed:
        atomic_write(sig_path, result.envelope, 0o644)
    return _sign_report(tree, result, key, sig_path, terms.fresh)


def _signature_to_keep(directory: str) -> bytes | None:
    """plugin.sig, read to co-sign it; one too large to read says how to replace it."""
    from vtreg.verifier.errors import FormatError
    from vtreg.verifier.tree import read_signature

    try:
        return read_signature(directory)
    except FormatError as e:
        raise FormatError(f"{e}; sign a fresh statement to replace it (vtreg sign --fresh)") from e


def _replaced_signature(directory: str) -> bytes | None:
    """For --fresh: the plugin.sig it replaces, read only to say whether the content
    changed. One too large to read (as older vtreg could write) is replaced unread:
    ``b""`` stands for it, which reads as no statement."""
    from vtreg.verifier.errors import FormatError
    from vtreg.verifier.tree import read_signature

    try:
        return read_signature(directory)
    except FormatError:
        return b""


def _sign_report(
    tree: PluginTree, result: SignResult, key: Signer, sig_path: Path, fresh: bool
) -> Report:
    """What ``vtreg sign`` did to one directory, for people and as JSON."""
    from vtreg.verifier.envelope import parse_envelope, parse_statement
    from vtreg.verifier.platforms import platform_label
    from vtreg.verifier.text import path_text, printable

    before = _signed_content(tree.signature)
    # Only what was compared is claimed: None when there was no readable statement before.
    content_changed = None if before is None else before != result.content_digest
    predicate = parse_statement(parse_envelope(result.envelope).payload_bytes()).predicate
    files = sorted(tree.files)
    signed = f"{predicate.name} {predicate.version} ({platform_label(predicate.platforms)})"
    return Report(
        data={
            "signature_file": str(sig_path),
            "keyid": key.keyid,
            "content_digest": result.content_digest,
            "signatures": result.signatures,
            "created": tree.signature is None,
            "changed": not result.already_signed,
            "replaced": result.replaced,
            "content_changed": content_changed,
            "name": predicate.name,
            "version": predicate.version,
            "platform": predicate.platform,
            "platforms": list(predicate.platforms),
            "libraries": predicate.platform_libraries,
            "files": [path_text(name) for name in files],
            "exclude": list(predicate.exclude or ()),
            "excluded": [path_text(name) for name in tree.excluded],
        },
        text=f"{_what_sign_did(result, sig_path, key, fresh, content_changed)}\n"
        f"signed  {printable(signed)}: {len(files)} files "
        f"({printable(', '.join(map(path_text, files)))})"
        + _left_out(tree.exclude, tree.excluded)
        + f"\ncontent {result.content_digest}\nkeyid   {key.keyid}",
        warnings=_sign_warnings(files, result.replaced and not fresh, content_changed),
    )


def _left_out(patterns: tuple[str, ...], excluded: tuple[str, ...]) -> str:
    """The human line saying what --exclude left out of the signature, if anything."""
    from vtreg.verifier.text import path_text, printable

    if not patterns:
        return ""
    shown = ", ".join(map(path_text, excluded)) or "nothing here"
    return f"\nleft out {printable(' '.join(patterns))}: {printable(shown)}"


def _sign_warnings(files: list[str], dropped: bool, content_changed: bool | None) -> list[str]:
    """Files that look like sources or build leftovers, and why signatures were dropped."""
    from vtreg.verifier.text import path_text

    warnings = [
        f"{path_text(name)} looks like a source or build leftover, and is signed as part "
        "of the plugin (remove it, or leave it out with --exclude, if it should not ship)"
        for name in files
        if _looks_like_leftover(name)
    ]
    if dropped:
        why = "the content changed" if content_changed else "it could not be co-signed"
        warnings.append(f"earlier signatures were dropped because {why}")
    return warnings


def _what_sign_did(
    result: SignResult, sig_path: Path, key: Signer, fresh: bool, content_changed: bool | None
) -> str:
    if result.already_signed:
        return f"already signed by {key.public_key.short_id}; {sig_path} unchanged"
    if result.cosigned:
        return f"added a signature to {sig_path} ({result.signatures} signatures)"
    if not result.replaced:
        return f"wrote {sig_path}"
    if fresh:
        content = {True: "; the content changed", False: "; the content is unchanged"}
        said = "" if content_changed is None else content[content_changed]
        return f"signed a fresh statement: replaced {sig_path} (earlier signatures dropped{said})"
    if content_changed:
        return f"content changed since the last signature: replaced {sig_path}"
    return f"replaced {sig_path}: its statement could not be co-signed (earlier signatures dropped)"


def _signed_content(envelope: bytes | None) -> str | None:
    """The content digest the statement in ``envelope`` signs, if it can be read at all."""
    from vtreg.verifier.envelope import parse_envelope, parse_statement
    from vtreg.verifier.errors import VtregError
    from vtreg.verifier.signatures import content_digest

    if envelope is None:
        return None
    try:
        statement = parse_statement(parse_envelope(envelope).payload_bytes())
    except VtregError:
        return None
    files = {s.name: s.digest.get("sha256") for s in statement.subject}
    sha256 = {name: digest for name, digest in files.items() if digest is not None}
    if len(sha256) != len(files):
        return None
    return content_digest(statement.predicate.name, statement.predicate.version, sha256)


# What a build leaves beside the library: sources, objects, editor swap and backup files.
_LEFTOVERS = (
    *("*.c", "*.h", "*.cc", "*.cpp", "*.o", "*.obj", "*.a", "Makefile", "CMakeLists.txt"),
    *("*.swp", "*.swo", "*~", ".#*", "#*#", ".DS_Store"),
)


def _looks_like_leftover(path: str) -> bool:
    import fnmatch

    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in _LEFTOVERS)


@vtreg_command(cli)
@click.argument("directories", nargs=-1, required=True, type=click.Path(), metavar="DIR...")
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
@fleet_option
@grace_option
def verify(
    settings: Settings,
    directories: tuple[str, ...],
    key_files: tuple[str, ...],
    threshold: int,
    db_url: str | None,
    fleet_state: str | None,
    grace: timedelta | None,
) -> Report:
    """Verify plugin directories: offline with --key, else against the registry.

    Against the registry the plugin must be signed by enough trusted, unexpired,
    unrevoked keys whose scope covers it, its content must be trusted and not
    revoked, and it must not be older than the newest trusted version (unless
    pinned). The decision is recorded in the audit log.

    Several directories are verified in one process; `-` reads their paths from
    stdin, one a line. Then each gets one line (with --json: a result each) and
    a summary, and the exit code is the worst of theirs.
    """
    from ._batch import batch, single
    from ._batch import directories as named

    names = named(directories)
    if key_files and db_url:
        from vtreg.verifier.errors import UsageError

        raise UsageError("--key verifies offline; --db verifies against a registry: pick one")
    if fleet_state is not None and (key_files or db_url):
        from vtreg.verifier.errors import UsageError

        raise UsageError("--fleet decides from the fleet state alone: drop --key and --db")
    if grace is not None and fleet_state is None:
        from vtreg.verifier.errors import UsageError

        raise UsageError("--grace applies to --fleet only")
    with contextlib.ExitStack() as stack:
        if fleet_state is not None:
            state_path = fleet_state

            def check(directory: str, pending: PendingCapture | None) -> Report:
                return _verify_with_fleet(state_path, grace, threshold, directory, pending)
        elif key_files:
            keys = _trusted_keys(key_files, threshold)

            def check(directory: str, pending: PendingCapture | None) -> Report:
                return _verify_with_keys(keys, threshold, directory, pending)
        else:
            from vtreg.registry.service import Registry

            registry = stack.enter_context(Registry.open(db_url, create=False))

            def check(directory: str, pending: PendingCapture | None) -> Report:
                return _verify_with_registry(registry, threshold, directory, pending)

        if single(directories, names):
            # Hashing started before the imports (registry.cli.main) or starts now,
            # so that reading a large library overlaps the imports and the key reads.
            pending = settings.take_capture(names[0])
            try:
                return check(names[0], pending)
            finally:
                pending.cancel()  # a no-op once the result is in
        # Many directories: each is captured when its turn comes (an early capture is a
        # process of its own, which costs more than it saves on a small plugin).
        settings.take_capture(names[0]).cancel()
        return batch(names, lambda directory: check(directory, None), done="verified")


def _trusted_keys(key_files: tuple[str, ...], threshold: int) -> list[PublicKey]:
    from vtreg.verifier.errors import UsageError
    from vtreg.verifier.keyrefs import read_public_key_ref

    keys = [read_public_key_ref(ref) for ref in key_files]
    distinct = len({k.keyid for k in keys})
    if threshold > distinct:
        raise UsageError(
            f"threshold {threshold} can never be met with {distinct} distinct --key file(s)"
        )
    return keys


def _verify_with_keys(
    keys: list[PublicKey], threshold: int, directory: str, pending: PendingCapture | None
) -> Report:
    from vtreg.verifier.signatures import verify, verify_envelope
    from vtreg.verifier.tree import capture, read_signature

    at = utc_now()
    # plugin.sig is checked first; the early capture counts only if it read what was signed.
    signature = read_signature(directory)
    signed = verify_envelope(signature, keys, at=at, threshold=threshold)
    early = pending.result(signature, signed.expected) if pending is not None else None
    tree = early or capture(
        directory, expect=signed.expected, algorithms=signed.algorithms, exclude=signed.exclude
    )
    result = verify(tree, keys, at=at, threshold=threshold)
    return _verified_report(result, threshold)


def _verify_with_fleet(
    fleet_state: str,
    grace: timedelta | None,
    threshold: int,
    directory: str,
    pending: PendingCapture | None,
) -> Report:
    return _verified_report(
        verify_with_fleet(fleet_state, grace, threshold, directory, pending), threshold
    )


def _verify_with_registry(
    registry: Registry, threshold: int, directory: str, pending: PendingCapture | None
) -> Report:
    from vtreg.verifier.envelope import format_time

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
    from vtreg.verifier.platforms import platform_label
    from vtreg.verifier.text import printable

    signers = ", ".join(k[:16] for k in result.signers)
    expires = format_time(result.expires) if result.expires else "never"
    text = "\n".join(
        [
            f"verified {result.name} {result.version} ({platform_label(result.platforms)})",
            f"  content    {result.content_digest}",
            f"  loads here {_host_library(result)}",
            f"  signed by  {signers} ({len(result.signers)}/{threshold} required)",
            f"  signed at  {format_time(result.signed_at)}, expires {expires}",
            f"  files      {len(result.files)}"
            + (f" (left out: {printable(' '.join(result.exclude))})" if result.exclude else ""),
        ]
    )
    return Report(data={"verified": True, "plugin": _verified_json(result)}, text=text)


def _host_library(result: VerifiedPlugin) -> str:
    """The library this host would load, or that it has none (a load here is refused)."""
    from vtreg.verifier.platforms import host_platform, library_for

    here = host_platform()
    chosen = library_for(result.libraries or {result.platform: result.library}, here)
    return chosen[1] if chosen else f"nothing: no library for {here} (wrong-platform)"


def _verified_json(result: VerifiedPlugin) -> dict[str, object]:
    """The verified plugin in the --json vocabulary (docs/json.md): ``expires_at``, and
    every file's digest as ``sha256:HEX``."""
    renamed = {"expires": "expires_at"}
    summary = {renamed.get(k, k): v for k, v in result.summary().items()}
    summary["files"] = {path: f"sha256:{d['sha256']}" for path, d in result.files.items()}
    return summary


def open_keyref(ref: str, passphrase_file: str | None) -> Signer:
    """The signing key ``ref`` names (a KEYREF: a key file, ``ssh-agent:...``, ``pkcs11:...``);
    a passphrase mistyped at a terminal is asked again."""
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

    public = open_keyref(keyref, passphrase_file).public_key
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
