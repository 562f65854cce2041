"""The metadata store: users, revoked tokens, scripts, grants and jobs."""

from epe.store.store import Grantee, ScriptRecord, Store, UserRecord

__all__ = ["Grantee", "ScriptRecord", "Store", "UserRecord"]
