"""``python -m epe`` is the ``epe`` command."""

from epe.cli import main

main()
