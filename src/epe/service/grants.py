"""Granting: one set of rules for REST (``/scripts/{name}/grants``,
``/datastores/{name}/grants``, ``/omlmod/v1/models/{modelId}/grants``) and for
``oml.grant``/``oml.revoke`` in functions.

Only an object's owner grants or revokes it: a private script of theirs, a datastore
of theirs saved with ``grantable=True``, or a model of theirs (an admin may also
grant and revoke any user's model, as its owner would). The grantee is a user that
exists, everyone (``None`` or ``PUBLIC``), or a group (whether it has members yet or
not: a directory's groups are known here only once a member has signed in), on both
grant and revoke.
"""

from __future__ import annotations

from epe.core.models import MODEL_ID
from epe.core.names import PUBLIC, check_object_name, normalize_group, normalize_user
from epe.errors import Forbidden, InvalidRequest, NotFound
from epe.service.audit import AuditTrail
from epe.store import Store
from epe.store.grants import ObjectType

# OML4Py's ``typ`` argument names the object types so.
TYPES: dict[str, ObjectType] = {"pyqscript": "pyqscript", "datastore": "datastore"}
# How each type is named in messages and in the audit trail.
_SHOWN: dict[ObjectType, str] = {"pyqscript": "script", "datastore": "datastore",
                                 "model": "model"}


def object_type(typ: str) -> ObjectType:
    if typ not in TYPES:
        raise InvalidRequest("typ must be 'datastore' or 'pyqscript'")
    return TYPES[typ]


class Grants:
    """Grant rules; every grant and revoke made is recorded in the audit trail."""

    def __init__(self, store: Store, audit: AuditTrail) -> None:
        self.store = store
        self.audit = audit

    def grant(self, caller: str, kind: ObjectType, name: str, user: str | None) -> str:
        """Let ``user`` (None: everyone) use the caller's object; the grantee as shown."""
        owner = self._check_target(caller, kind, name)
        grantee = self._grantee(user)
        self.store.grants.grant(kind, owner, name, grantee)
        self._record("grant", caller, kind, owner, name, grantee=grantee or PUBLIC)
        return grantee or PUBLIC

    def revoke(self, caller: str, kind: ObjectType, name: str, user: str | None) -> str:
        """Take a grant back; NotFound if there was none. The grantee as shown."""
        owner = self._check_target(caller, kind, name)
        grantee = self._grantee(user)
        if not self.store.grants.revoke(kind, owner, name, grantee):
            raise NotFound(f"{_SHOWN[kind]} {name} is not granted to {grantee or PUBLIC}")
        self._record("revoke", caller, kind, owner, name, grantee=grantee or PUBLIC)
        return grantee or PUBLIC

    def grant_group(self, caller: str, kind: ObjectType, name: str, group: str) -> str:
        """Let the members of ``group`` use the caller's object; the group as shown."""
        owner = self._check_target(caller, kind, name)
        shown = normalize_group(group)
        self.store.grants.grant(kind, owner, name, shown, "group")
        self._record("grant", caller, kind, owner, name, group=shown)
        return shown

    def revoke_group(self, caller: str, kind: ObjectType, name: str, group: str) -> str:
        """Take a grant to a group back; NotFound if there was none."""
        owner = self._check_target(caller, kind, name)
        shown = normalize_group(group)
        if not self.store.grants.revoke(kind, owner, name, shown, "group"):
            raise NotFound(f"{_SHOWN[kind]} {name} is not granted to group {shown}")
        self._record("revoke", caller, kind, owner, name, group=shown)
        return shown

    def grantees(self, caller: str, kind: ObjectType, name: str) -> tuple[list[str], list[str]]:
        """Whom the caller's object is granted to: users (``PUBLIC``: everyone), groups."""
        owner = self._check_target(caller, kind, name)
        users = self.store.grants.grantees(kind, owner).get(name, [])
        return users, self.store.grants.grantees(kind, owner, "group").get(name, [])

    def _record(self, action: str, caller: str, kind: ObjectType, owner: str, name: str,
                **grantee: str) -> None:
        self.audit.record(_SHOWN[kind], action, caller, owner=owner, name=name, **grantee)

    def _check_target(self, caller: str, kind: ObjectType, name: str) -> str:
        """The owner of the object the caller may grant; NotFound if there is none."""
        if kind == "model":
            return self._model_owner(caller, name)
        if kind == "pyqscript":
            if self.store.get_script(caller, name) is None:
                raise NotFound(f"you have no private script named {name}")
            return caller
        info = self.store.datastores.find(caller, check_object_name(name, "datastore"))
        if info is None:
            raise NotFound(f"you have no datastore named {name}")
        if not info.grantable:
            raise Forbidden(f"datastore {name} was saved with grantable=False; save it with "
                            "grantable=True to share it")
        return caller

    def _model_owner(self, caller: str, model_id: str) -> str:
        model = self.store.models.get(model_id) if MODEL_ID.fullmatch(model_id) else None
        if model is not None and model.owner != caller:
            user = self.store.get_user(caller)
            model = model if user is not None and user.is_admin else None
        if model is None:
            raise NotFound(f"no model {model_id} of yours")
        return model.owner

    def _grantee(self, user: str | None) -> str | None:
        if user is None or user.strip().upper() == PUBLIC:
            return None
        name = normalize_user(user, check=False)
        if self.store.get_user(name) is None:
            raise NotFound(f"no such user {name}")
        return name
