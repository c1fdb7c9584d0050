#!/usr/bin/env bash
# The main job, end to end, on the embedded SQLite registry:
#   build the example plugin, make a publisher key, sign, verify offline,
#   trust the key and the plugin, run it, tamper with it, watch it be refused,
#   and read both decisions in the audit log.
#
#   examples/demo.sh [WORKDIR]        (needs `vtreg` on PATH, a C compiler and make)
#
# Everything it writes goes under WORKDIR (default: ./demo-output), including
# the registry: VTREG_HOME points there, so your own registry is not touched.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-demo-output}"
rm -rf "$work"
mkdir -p "$work/keys" "$work/plugins"
work="$(cd "$work" && pwd)"
chmod 755 "$work/plugins"  # a trusted directory must be writable by its owner only
export VTREG_HOME="$work/home"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
refused() {  # run a command that must be refused (exit code 1)
    printf '$ %s\n' "$*"
    set +e
    "$@"
    local code=$?
    set -e
    if [ "$code" -ne 1 ]; then
        echo "expected a refusal (exit code 1), got $code" >&2
        exit 1
    fi
    echo "(refused, exit code 1)"
}

step "1. Build the example plugin (C, VT Code ABI v1)"
run make -s -C "$here/hello" libhello.so
mkdir -m 755 "$work/plugins/hello"
cp "$here/hello/plugin.json" "$here/hello/libhello.so" "$work/plugins/hello/"

step "2. The publisher makes a key (encrypted with a passphrase) and signs"
export VTREG_PASSPHRASE="demo passphrase, use a real one"
run vtreg keygen publisher --out "$work/keys"
run vtreg sign "$work/plugins/hello" --key "$work/keys/publisher.key"

step "3. Anyone can verify offline against the publisher's public key"
run vtreg verify "$work/plugins/hello" --key "$work/keys/publisher.pub"

step "4. The operator trusts the key and this exact plugin in the registry"
run vtreg key add "$work/keys/publisher.pub" --scope 'hello*'
run vtreg trust "$work/plugins/hello"
run vtreg list

step "5. Verified load and one call (in this process, then in an isolated child)"
run vtreg run "$work/plugins/hello" --input '{"name": "Ada"}'
run vtreg run "$work/plugins/hello" --input '{"name": "Grace"}' --isolate --timeout 5

step "6. Someone changes one byte of the library"
python3 - "$work/plugins/hello/libhello.so" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(4000)
    byte = f.read(1)[0]
    f.seek(4000)
    f.write(bytes([byte ^ 0xFF]))  # flip every bit of one byte
PY
refused vtreg verify "$work/plugins/hello"
refused vtreg run "$work/plugins/hello" --input '{"name": "Mallory"}'

step "7. The audit log shows every decision, and its hash chain is intact"
run vtreg audit --plugin hello
run vtreg audit verify

step "Done"
echo "Everything is in $work (registry: $VTREG_HOME/registry.db)"
