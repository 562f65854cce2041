"""Names that reach SQL or the file system: checked first, always quoted."""

from __future__ import annotations

import re

from epe.core.names import TABLE_NAME, checked_name

# Owners are normalized user names (epe.core.names); this narrower check guards the file
# name built from them, whoever calls.
_OWNER = re.compile(r"[A-Za-z0-9_$#]{1,128}")


def check_table_name(name: str) -> str:
    return checked_name(name, TABLE_NAME, "table",
                        "use a letter or _ followed by letters, digits or _ (at most 128)")


def check_owner(owner: str) -> str:
    if not _OWNER.fullmatch(owner):
        raise ValueError(f"not a user name: {owner!r}")
    return owner


def quote(identifier: str) -> str:
    """A SQL identifier in double quotes, safe whatever it holds."""
    return '"' + identifier.replace('"', '""') + '"'
