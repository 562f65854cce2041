"""epe: Embedded Python Execution, an OML4Py-compatible server."""

__version__ = "0.1.0"
