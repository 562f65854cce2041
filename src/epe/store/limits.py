"""Per-user limits an admin set in place of the defaults (docs/operations.md#limits).

A row per user with an override; a NULL column is that limit's default. Only the
overrides are here: ``epe.service.limits`` combines them with the settings.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Engine, RowMapping, delete, select

from epe.core.limits import FIELDS
from epe.store import schema
from epe.store.engine import upsert, writing

_L = schema.user_limits


class LimitStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def overrides(self, user: str) -> dict[str, int]:
        """The limits an admin set for ``user``: field name -> value."""
        with self.engine.connect() as conn:
            row = conn.execute(select(_L).where(_L.c.user_name == user)).first()
        return {} if row is None else _set(row._mapping)

    def every_override(self, limit: int) -> dict[str, dict[str, int]]:
        """The overrides of every user who has some (up to ``limit`` users)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_L).limit(limit)).all()
        return {row.user_name: _set(row._mapping) for row in rows}

    def change(self, user: str, changes: Mapping[str, int | None]) -> dict[str, int]:
        """Set (a value) or clear (None) some of ``user``'s overrides; all of them after."""
        if changes:
            with writing(self.engine) as conn:
                conn.execute(upsert(conn, _L).values(user_name=user, **changes)
                             .on_conflict_do_update(index_elements=[_L.c.user_name],
                                                    set_=dict(changes)))
                conn.execute(delete(_L).where(
                    _L.c.user_name == user, *(_L.c[f].is_(None) for f in FIELDS)))
        return self.overrides(user)


def _set(row: RowMapping) -> dict[str, int]:
    return {str(k): int(v) for k, v in row.items() if k in FIELDS and v is not None}
