"""One of several processes hammering the same registry (run by test_concurrency.py).

    python -m tests.registry.concurrency_worker URL PLUGINS_DIR WORKER ITERATIONS

For each iteration it trusts a new version, verifies it (allowed), revokes it,
and verifies it again (refused): four audit events. It prints one JSON line:
how many operations it completed and every unexpected error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vtreg.registry.service import Registry
from vtreg.verifier.errors import PolicyError
from vtreg.verifier.tree import capture


def main() -> None:
    url, plugins, worker, iterations = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    done, errors = 0, []
    with Registry.open(url) as registry:
        for i in range(iterations):
            plugin = plugins / f"w{worker}" / f"v{i}"
            try:
                registry.trust(capture(plugin))
                done += 1
                registry.verify_plugin(capture(plugin))
                done += 1
                registry.revoke(name=f"w{worker}", version=f"1.0.{i}", reason="test")
                done += 1
                try:
                    registry.verify_plugin(capture(plugin))
                    errors.append(f"iteration {i}: a revoked plugin verified")
                except PolicyError:
                    done += 1
            except Exception as e:
                errors.append(f"iteration {i}: {type(e).__name__}: {e}")
    print(json.dumps({"worker": worker, "done": done, "errors": errors}))


if __name__ == "__main__":
    main()
