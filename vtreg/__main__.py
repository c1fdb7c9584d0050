"""``python -m vtreg`` runs the ``vtreg`` command line."""

from vtreg.registry.cli import main

main()
