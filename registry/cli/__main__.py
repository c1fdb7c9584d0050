"""``python -m vtreg.registry.cli`` runs the ``vtreg`` command line."""

from vtreg.registry.cli import main

main()
