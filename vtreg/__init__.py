"""vtreg: a signed-plugin registry and verifier for VT Code native plugins (ABI v1).

Everything lives under this one namespace, so a host's own ``registry.py`` or
``loader/`` can never stand in for vtreg's:

* :mod:`vtreg.verifier` -- pure checks and the trust decision;
* :mod:`vtreg.loader` -- the verify-then-load ctypes loader;
* :mod:`vtreg.registry` -- the SQL trust store, audit log and ``vtreg`` CLI;
* :mod:`vtreg.migrations` -- the registry's Alembic migrations.

``python -m vtreg`` runs the command line.
"""

__version__ = "0.1.0"
