"""How things are named and shown: identifiers, owners, dates.

Pure: the patterns every layer checks names against (the server, its CLI and
the client alike), the two owner names OML reserves, and the ISO date form
listings use.
"""

from __future__ import annotations

import datetime as dt
import re

from epe.errors import InvalidRequest

# Global scripts belong to OML's system owner; a grant to PUBLIC is a grant to everyone.
GLOBAL_OWNER = "PYQSYS"
PUBLIC = "PUBLIC"
# Admins are a group of this name (docs/sign-in.md#groups).
ADMIN_GROUP = "ADMIN"
RESERVED_USERS = frozenset({GLOBAL_OWNER, PUBLIC})

# Oracle-style identifiers: a letter, then letters, digits, _ $ #.
USER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_$#]{0,127}")
# Script and datastore names travel in URL paths: characters that need no escaping.
OBJECT_NAME = re.compile(r"[A-Za-z0-9_.$#-]{1,128}")
# Table names are SQL identifiers that need no quoting to be typed in a query.
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Environment names are folder names: never a dot first, never a path separator.
ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def normalize_user(name: str, check: bool = True) -> str:
    """User names are case-insensitive and shown upper-case, as OML shows them."""
    upper = name.strip().upper()
    if check and not USER_NAME.fullmatch(upper):
        raise InvalidRequest(f"invalid user name {name!r}: use a letter followed by letters, "
                             "digits, _, $ or # (at most 128)")
    if check and upper in RESERVED_USERS:
        raise InvalidRequest(f"{upper} is a reserved name")
    return upper


def checked_name(name: object, pattern: re.Pattern[str], what: str, rule: str) -> str:
    """``name``, if ``pattern`` matches all of it; otherwise a 400 that says what names of
    ``what`` may be (``rule``)."""
    if not isinstance(name, str) or not pattern.fullmatch(name):
        raise InvalidRequest(f"invalid {what} name {name!r}: {rule}")
    return name


# Group names come from directories and providers (cn, a path, a GUID): any printable
# text without a slash, which would split the URL paths that carry them.
GROUP_NAME = re.compile(r"[^\x00-\x1f\x7f/]{1,128}")


def normalize_group(name: str) -> str:
    """Group names, like user names, are case-insensitive and shown upper-case."""
    upper = name.strip().upper()
    if not GROUP_NAME.fullmatch(upper):
        raise InvalidRequest(f"invalid group name {name!r}: 1 to 128 characters, no control "
                             "characters or slashes")
    if upper == PUBLIC:
        raise InvalidRequest("PUBLIC is everyone, not a group: grant to {\"user\": null}")
    return upper


def user_name_from(external: str) -> str | None:
    """The epe user name of a name a directory or a provider gives (``jane.doe``,
    ``jane@example.org``): upper-case, every character a user name cannot have made
    ``_``; None when it does not start with a letter."""
    mapped = re.sub(r"[^A-Z0-9_$#]", "_", external.strip().upper())[:128]
    return mapped if USER_NAME.fullmatch(mapped) and mapped not in RESERVED_USERS else None


def check_object_name(name: object, what: str) -> str:
    """A script's or datastore's name, checked (``what`` says which, for the message)."""
    return checked_name(name, OBJECT_NAME, what, "use letters, digits, _ . $ # - (at most 128)")


def iso_date(ts: float) -> str:
    """A timestamp as ISO-8601 in UTC, to the second."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def iso_instant(ts: float) -> str:
    """A timestamp as ISO-8601 in UTC, to the millisecond: ``2026-01-02T03:04:05.678Z``."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def parse_instant(text: str, what: str) -> float:
    """UNIX seconds, or an ISO-8601 date or date and time (UTC unless it names its
    offset), as UNIX seconds; ``what`` names the field for the message."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{what} must be UNIX seconds or an ISO-8601 date or time, such "
                             f"as 2026-01-31 or 2026-01-31T12:00:00Z; not {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()
