"""The script repository: who may see, run, create and delete which script.

Private scripts are their owner's; global ones (owner ``PYQSYS``) anyone may
run, and only their creator or an admin may replace or delete; a private
script granted to a user (or to everyone) is theirs to run, reached by naming
its owner. Without an owner a name means the caller's own script first, then
the global one (OML).
"""

from __future__ import annotations

import hashlib
from typing import Any

from epe.core.names import GLOBAL_OWNER, check_object_name, iso_date, normalize_user
from epe.core.requests import ScriptCreate
from epe.core.scripts import parse_script
from epe.errors import Conflict, NotFound
from epe.service.audit import AuditTrail
from epe.service.sessions import Caller
from epe.store import ScriptRecord, Store


def describe(script: ScriptRecord, with_source: bool = False) -> dict[str, Any]:
    info: dict[str, Any] = {"name": script.name, "owner": script.owner,
                            "description": script.description,
                            "date": iso_date(script.updated), "isGlobal": script.is_global}
    if with_source:
        info["script"] = script.source
    return info


def visible(store: Store, caller: Caller) -> list[dict[str, Any]]:
    """Scripts the caller may run: their own, global ones, and those granted to them or
    a group of theirs. The caller's own private scripts also say whom they are granted
    to (users, and groups)."""
    granted = store.grants.grantees("pyqscript", caller.name)
    to_groups = store.grants.grantees("pyqscript", caller.name, "group")
    listed = []
    for script in store.visible_scripts(caller.name):
        info = describe(script)
        if script.owner == caller.name:
            info["grantees"] = granted.get(script.name, [])
            info["groupGrantees"] = to_groups.get(script.name, [])
        listed.append(info)
    return listed


def create(store: Store, audit: AuditTrail, caller: Caller, body: ScriptCreate) -> ScriptRecord:
    parse_script(body.script)
    owner = GLOBAL_OWNER if body.is_global else caller.name
    existing = store.get_script(owner, check_object_name(body.name, "script"))
    if existing and body.is_global and existing.created_by != caller.name \
            and not caller.user.is_admin:
        raise Conflict(f"a global script {body.name} exists and belongs to another user")
    # Checked again as the script is written: another user's global script created
    # meanwhile is not replaced.
    others_not_replaced = body.is_global and not caller.user.is_admin
    script = store.put_script(owner=owner, name=body.name, source=body.script,
                              description=body.description, is_global=body.is_global,
                              created_by=caller.name, overwrite=body.overwrite,
                              replaced_only_by=caller.name if others_not_replaced else None)
    audit.record("script", "replace" if existing else "create", caller.name, owner=owner,
                 name=body.name, scriptHash=source_hash(body.script))
    return script


def delete(store: Store, audit: AuditTrail, caller: Caller, name: str, is_global: bool) -> None:
    owner = GLOBAL_OWNER if is_global else caller.name
    script = store.get_script(owner, name)
    if script is None or (is_global and script.created_by != caller.name
                          and not caller.user.is_admin):
        raise NotFound(f"no such script {name}" + (" (global)" if is_global else ""))
    store.delete_script(owner, name)
    audit.record("script", "delete", caller.name, owner=owner, name=name)


def source_hash(source: str) -> str:
    """A script's source as a SHA-256: the same for one version of one script."""
    return hashlib.sha256(source.encode()).hexdigest()


def find(store: Store, caller: str, name: str, owner: str | None) -> ScriptRecord:
    """The script ``caller`` may run by that name (and owner); NotFound otherwise."""
    owner_name = None if owner is None else normalize_user(owner, check=False)
    script = store.find_script(caller, name, owner_name)
    if script is None:
        whose = f" of {owner_name}" if owner_name else ""
        raise NotFound(f"no script named {name}{whose} that you may run")
    return script
