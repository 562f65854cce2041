"""Groups kept by epe for local users; admins change them. Admin is the group ADMIN:
adding a user to it gives the admin role, removing takes it (never one's own)."""

from __future__ import annotations

from epe.core.names import ADMIN_GROUP, normalize_group, normalize_user
from epe.errors import InvalidRequest, NotFound
from epe.service.services import Services
from epe.service.sessions import Caller


def _local_user(services: Services, user: str) -> str:
    name = normalize_user(user, check=False)
    found = services.store.get_user(name)
    if found is None:
        raise NotFound(f"no such user {name}")
    if not found.local:
        raise InvalidRequest(f"{name}'s groups come from the {found.source} sign-in "
                             "(docs/sign-in.md): change them there")
    return name


def add_member(services: Services, admin: Caller, group: str, user: str) -> tuple[str, str]:
    shown, name = normalize_group(group), _local_user(services, user)
    services.store.identity.add_member(shown, name)
    services.audit.record("group", "add", admin.name, name=shown, member=name)
    return shown, name


def remove_member(services: Services, admin: Caller, group: str,
                  user: str) -> tuple[str, str]:
    shown, name = normalize_group(group), _local_user(services, user)
    if shown == ADMIN_GROUP and name == admin.name:
        raise InvalidRequest("you cannot take your own admin role")
    if not services.store.identity.remove_member(shown, name):
        raise NotFound(f"{name} is not a member of {shown}")
    services.audit.record("group", "remove", admin.name, name=shown, member=name)
    return shown, name
