"""The metadata store: users, revoked tokens, scripts, grants, jobs, datastores.

``open_store(url)`` is the one way in: it opens the database a URL names,
migrates it to the newest schema and returns a ``Store``: ``sqlite:///PATH`` (the
embedded default) or ``postgresql://...`` (several servers may share it; docs/deploy.md).
Each passes ``tests/integration/test_store_conformance.py``.

One error convention holds for every part of the store:

- a lookup (``get_*``, ``find_*``, ``readable``) returns ``None`` when there is
  nothing the caller may see;
- a delete or a revoke returns whether (or how much) it removed, ``None`` where
  the object itself does not exist;
- a create raises ``epe.errors.Conflict`` when the object exists already.

Refusing a request for what the caller may not do is the services' job
(``epe.service``), which turn ``None`` into a ``NotFound`` that names the object.
"""

from epe.store.grants import Grantee
from epe.store.open import open_store
from epe.store.store import ScriptRecord, Store, UserRecord

__all__ = ["Grantee", "ScriptRecord", "Store", "UserRecord", "open_store"]
