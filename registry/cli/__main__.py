"""``python -m registry.cli`` runs the ``vtreg`` command line."""

from registry.cli import main

main()
