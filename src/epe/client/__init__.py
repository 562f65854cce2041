"""The machinery behind ``from epe import oml`` (docs/client.md); private modules.

``_connection`` logs in and keeps the token fresh, ``_errors`` turns error bodies
back into ``epe.errors`` classes, ``_proxy`` holds the data proxies, ``_functions``
ships functions, ``_embed`` runs them, ``_jobs`` follows async jobs, ``_scripts``
and ``_datastores`` are ``oml.script`` and ``oml.ds``. The public surface is
``epe.oml``; the CLI (``epe.cli_client``) uses these modules directly.
"""
