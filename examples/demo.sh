#!/usr/bin/env bash
# The main job, end to end, on a fresh machine: build the example plugin,
# make a publisher key, sign, verify, and watch a tampered copy be refused.
#
#   examples/demo.sh [WORKDIR]        (needs `vtreg` on PATH and a C compiler)
#
# Everything it writes goes under WORKDIR (default: ./demo-output).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-demo-output}"
rm -rf "$work"
mkdir -p "$work/keys" "$work/plugins"
work="$(cd "$work" && pwd)"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "1. Build the example plugin (C, VT Code ABI v1)"
run make -s -C "$here/hello" libhello.so
mkdir -p "$work/plugins/hello"
cp "$here/hello/plugin.json" "$here/hello/libhello.so" "$work/plugins/hello/"

step "2. Make a publisher key (encrypted with a passphrase)"
export VTREG_PASSPHRASE="demo passphrase, use a real one"
run vtreg keygen publisher --out "$work/keys"

step "3. Sign the plugin directory"
run vtreg sign "$work/plugins/hello" --key "$work/keys/publisher.key"

step "4. Verify it offline against the publisher's public key"
run vtreg verify "$work/plugins/hello" --key "$work/keys/publisher.pub"

step "5. Tamper with a copy: one byte of the library changes"
cp -r "$work/plugins/hello" "$work/plugins/hello-tampered"
python3 - "$work/plugins/hello-tampered/libhello.so" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(4000)
    byte = f.read(1)[0]
    f.seek(4000)
    f.write(bytes([byte ^ 0xFF]))  # flip every bit of one byte
PY
set +e
run vtreg verify "$work/plugins/hello-tampered" --key "$work/keys/publisher.pub"
code=$?
set -e
if [ "$code" -ne 1 ]; then
    echo "expected the tampered copy to be refused with exit code 1, got $code" >&2
    exit 1
fi
echo "refused, exit code $code: as it should be"

step "Done"
echo "Outputs are in $work"
