"""epe: Embedded Python Execution, an OML4Py-compatible server."""

from importlib.metadata import PackageNotFoundError, version

try:
    # The one version number is pyproject.toml's; an installed epe carries it in its
    # metadata (CHANGELOG.md records which commit each release is).
    __version__ = version("epe")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
