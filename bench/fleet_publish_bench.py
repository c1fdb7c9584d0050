"""Time one full fleet publish alone, in wall and CPU (user+sys) time.

    python bench/fleet_publish_bench.py [--contents 1000000] [--bin-bits N] [--again]

The state is built in memory as ``fleet_bench.py`` builds it (4 versions per
name) and published once into a fresh repository; without ``--bin-bits`` the
repository has ``fleet init``'s default. ``--again`` then times a second full
publish of the same state (``publish --full`` with nothing changed: every bin
read back and compared, none written). Copied into an older tree, it measures
that tree's publish the same way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleet_bench import _contents
from vtreg.registry.fleet._signer import VtregSigner
from vtreg.registry.fleet.repository import Repository, init_repository, publish
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.trust import TrustedKey, TrustState

DAY = timedelta(days=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contents", type=int, default=1_000_000)
    parser.add_argument("--bin-bits", type=int, default=None)
    parser.add_argument("--again", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vtreg-fleet-publish-"))
    try:
        online = SigningKey.generate("online")
        settings = {} if args.bin_bits is None else {"bin_bits": args.bin_bits}
        init_repository(
            work / "repo", [SigningKey.generate("root")], 1, online, str(work / "online.key"),
            expires=datetime.now(UTC) + 365 * DAY, **settings,
        )  # fmt: skip
        author = TrustedKey(SigningKey.generate("author").public_key)
        state = TrustState.build([author], _contents(args.contents, 4, "linux-x86_64"))
        repo = Repository(work / "repo")
        for what in ("full publish", "full publish again")[: 2 if args.again else 1]:
            before, start = os.times(), time.perf_counter()
            publish(repo, state, VtregSigner(online), at=datetime.now(UTC),
                    timestamp_expires=DAY, snapshot_expires=7 * DAY, targets_expires=90 * DAY,
                    seq=1)  # fmt: skip
            wall, after = time.perf_counter() - start, os.times()
            cpu = after.user - before.user + after.system - before.system
            bins = sum(1 for p in (work / "repo").iterdir() if ".bins-" in p.name)
            print(f"{what} of {args.contents:,} contents, {bins} bin files: "
                  f"{wall:.2f} s wall, {cpu:.2f} s CPU (user+sys)")  # fmt: skip
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
