"""Models and their endpoints (docs/models.md): rows of ``models`` and ``deployments``.

A model's bytes are read only when a worker asks for them (``data``); every other
read leaves them in the database. Lookups on the scoring path (an endpoint, its
model, whether a grant lets a user score it) are cached briefly, like users and
scripts: a deletion or a revoke through another server holds here within the cache's
lifetime; one through this server, or a change of a user's groups, at once
(``forget_grants``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Engine, delete, insert, or_, select
from sqlalchemy.exc import IntegrityError

from epe.errors import Conflict
from epe.store import schema
from epe.store.cache import TTLCache
from epe.store.engine import writing
from epe.store.grants import drop_object_grants, matching

_M, _D, _G = schema.models, schema.deployments, schema.grants
_FIELDS = [c for c in _M.c if c.name != "data"]


@dataclass(frozen=True)
class ModelRecord:
    id: str
    owner: str
    name: str
    version: str
    namespace: str
    model_type: str
    function: str
    description: str
    shared: bool
    created: float
    signature: str  # JSON
    spec: str  # JSON
    script: str | None
    size: int
    digest: str


@dataclass(frozen=True)
class DeploymentRecord:
    uri: str
    model_id: str
    owner: str
    created: float


class ModelStore:
    def __init__(self, engine: Engine, cache_ttl: float) -> None:
        self.engine = engine
        self._models: TTLCache[ModelRecord] = TTLCache(cache_ttl)
        self._endpoints: TTLCache[DeploymentRecord] = TTLCache(cache_ttl)
        self._granted: TTLCache[bool] = TTLCache(cache_ttl)

    # -- models ------------------------------------------------------------------------

    def add(self, record: ModelRecord, data: bytes) -> None:
        """Store a model; Conflict if the owner has one of that name, version and
        namespace."""
        try:
            with writing(self.engine) as conn:
                conn.execute(insert(_M).values(**vars(record), data=data))
        except IntegrityError:
            raise Conflict(f"a model {record.name} version {record.version}"
                           f"{' in namespace ' + record.namespace if record.namespace else ''}"
                           " exists already") from None

    def get(self, model_id: str) -> ModelRecord | None:
        if (cached := self._models.get(model_id)) is not None:
            return cached
        with self.engine.connect() as conn:
            row = conn.execute(select(*_FIELDS).where(_M.c.id == model_id)).first()
        if row is None:
            return None
        found = ModelRecord(**row._mapping)
        self._models.put(model_id, found)
        return found

    def data(self, model_id: str) -> bytes | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(_M.c.data).where(_M.c.id == model_id)).scalar()
        return None if value is None else bytes(value)

    def open_to(self, model: ModelRecord, user: str) -> bool:
        """Whether ``user`` may see and score ``model``: its owner, anyone when it is
        shared, and whom it is granted to (a user, a group of theirs, everyone)."""
        if model.shared or model.owner == user:
            return True
        key = (model.id, user)
        if (known := self._granted.get(key)) is not None:
            return known
        with self.engine.connect() as conn:
            granted = conn.execute(select(_G.c.id).where(
                matching("model", model.owner, model.id, user))).first() is not None
        self._granted.put(key, granted)
        return granted

    def forget_grants(self) -> None:
        """A grant or a user's groups changed: look grants up anew."""
        self._granted.clear()

    def visible(self, user: str, filters: dict[str, str | None]) -> list[ModelRecord]:
        """The models ``user`` may see (``open_to``), matching ``filters`` (column ->
        value)."""
        query = select(*_FIELDS).where(_open(user))
        for column, value in filters.items():
            if value is not None:
                query = query.where(_M.c[column] == value)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(_M.c.name, _M.c.version, _M.c.created))
            return [ModelRecord(**r._mapping) for r in rows]

    def delete(self, model: ModelRecord) -> bool:
        """The model and its grants."""
        with writing(self.engine) as conn:
            gone = conn.execute(delete(_M).where(_M.c.id == model.id)).rowcount
            drop_object_grants(conn, "model", model.owner, model.id)
        self._models.drop(model.id)
        self.forget_grants()
        return bool(gone)

    # -- endpoints ---------------------------------------------------------------------

    def deploy(self, record: DeploymentRecord) -> None:
        """Conflict if the URI is taken or the model deployed already."""
        try:
            with writing(self.engine) as conn:
                conn.execute(insert(_D).values(**vars(record)))
        except IntegrityError:
            raise Conflict(f"the uri {record.uri} is taken, or model {record.model_id} is "
                           "deployed already") from None

    def endpoint(self, uri: str) -> DeploymentRecord | None:
        if (cached := self._endpoints.get(uri)) is not None:
            return cached
        with self.engine.connect() as conn:
            row = conn.execute(select(_D).where(_D.c.uri == uri)).first()
        if row is None:
            return None
        found = DeploymentRecord(**row._mapping)
        self._endpoints.put(uri, found)
        return found

    def endpoint_of(self, model_id: str) -> DeploymentRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(_D).where(_D.c.model_id == model_id)).first()
        return None if row is None else DeploymentRecord(**row._mapping)

    def endpoints(self, user: str) -> list[tuple[DeploymentRecord, ModelRecord]]:
        """Endpoints of the models the user may score (``open_to``)."""
        query = select(_D, *[c.label(f"m_{c.name}") for c in _FIELDS]) \
            .join(_M, _M.c.id == _D.c.model_id) \
            .where(_open(user)).order_by(_D.c.uri)
        with self.engine.connect() as conn:
            return [_pair(r._mapping) for r in conn.execute(query)]

    def undeploy(self, uri: str) -> bool:
        with writing(self.engine) as conn:
            gone = conn.execute(delete(_D).where(_D.c.uri == uri)).rowcount
        self._endpoints.drop(uri)
        return bool(gone)

    # -- a user going away ---------------------------------------------------------------

    def drop_owner(self, conn: Any, owner: str) -> None:
        """Within the caller's transaction: the owner's endpoints, then their models
        (others' scoring jobs naming them go too, with their runs)."""
        owned = select(_M.c.id).where(_M.c.owner == owner)
        conn.execute(delete(_D).where(or_(_D.c.owner == owner, _D.c.model_id.in_(owned))))
        j = schema.scoring_jobs
        conn.execute(delete(j).where(or_(j.c.owner == owner, j.c.model_id.in_(owned))))
        conn.execute(delete(_M).where(_M.c.owner == owner))
        self._models.clear()
        self._endpoints.clear()
        self.forget_grants()


def _open(user: str) -> ColumnElement[bool]:
    """``open_to`` as SQL over ``models``' columns."""
    granted = select(_G.c.id).where(matching("model", _M.c.owner, _M.c.id, user)).exists()
    return or_(_M.c.owner == user, _M.c.shared, granted)


def _pair(values: Any) -> tuple[DeploymentRecord, ModelRecord]:
    deployment = DeploymentRecord(values["uri"], values["model_id"], values["owner"],
                                  values["created"])
    model = ModelRecord(**{c.name: values[f"m_{c.name}"] for c in _FIELDS})
    return deployment, model


def filters(name: str | None, version: str | None,
            namespace: str | None) -> dict[str, str | None]:
    return {"name": name, "version": version, "namespace": namespace}


def new_model(**values: Any) -> ModelRecord:
    return ModelRecord(created=time.time(), **values)


__all__ = ["DeploymentRecord", "ModelRecord", "ModelStore", "filters", "new_model"]
