"""The one function of OML's private modules that OML4Py's sample notebooks call:
``oml.core.methods.__checkRole(role)``, whether the signed-in user holds a role."""

from __future__ import annotations

from epe.client._connection import current, result_of

# OML4Py's role for administering the script repository and datastores: epe's admin.
PYQADMIN = "PYQADMIN"


def check_role(role: str) -> bool:
    """Whether the connected user holds ``role``: ``PYQADMIN`` is epe's admin; any other
    name is a group the user is in (as ``users/me`` lists them, ``ADMIN`` for an admin)."""
    if not isinstance(role, str) or not role.strip():
        raise TypeError("a role is a non-empty string, such as 'PYQADMIN'")
    me = result_of(current().request("GET", "/omlusers/api/v1/users/me", api=False))
    wanted = role.strip().upper()
    if wanted == PYQADMIN:
        return bool(me["admin"])
    return wanted in {group.upper() for group in me["groups"]}
