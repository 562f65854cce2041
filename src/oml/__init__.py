"""``import oml``: OML4Py's module name for epe's Python client, which is ``epe.oml``.

Notebooks written for OML4Py start with ``import oml`` and define functions that
``import oml`` too; with epe installed the same lines work here, connected with
``oml.connect(url, user, password)``, and inside epe's workers, where ``import oml`` is
the worker's own module (its folder comes first on the workers' ``sys.path``).
"""

import sys

from epe import oml as _client

sys.modules[__name__] = _client
