"""The services: what the server does, whoever asks (HTTP, the CLI, a function's
``import oml`` calls). Below the HTTP edge, above the backends.

``services`` builds them from settings; ``sessions`` says who is calling;
``runs`` runs one request; ``jobs`` runs them in the background; ``scripts``,
``grants``, ``datastores``, ``tables`` and ``users`` keep the owner rules of each
noun; ``calls`` answers user code's calls back to the server.
"""
