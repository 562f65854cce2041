"""Names that reach SQL or the file system: checked first, always quoted."""

from __future__ import annotations

import re

from epe.core.names import TABLE_NAME
from epe.errors import InvalidRequest

# Owners are normalized user names (epe.core.names); this narrower check guards the file
# name built from them, whoever calls.
_OWNER = re.compile(r"[A-Za-z0-9_$#]{1,128}")


def check_table_name(name: str) -> str:
    if not TABLE_NAME.fullmatch(name):
        raise InvalidRequest(f"invalid table name {name!r}: use a letter or _ followed by "
                             "letters, digits or _ (at most 128)")
    return name


def check_owner(owner: str) -> str:
    if not _OWNER.fullmatch(owner):
        raise ValueError(f"not a user name: {owner!r}")
    return owner


def quote(identifier: str) -> str:
    """A SQL identifier in double quotes, safe whatever it holds."""
    return '"' + identifier.replace('"', '""') + '"'
