"""Users' tables: uploads read into Arrow, then kept by the catalog, each counted in its
owner's storage (docs/operations.md#storage)."""

from __future__ import annotations

import pyarrow as pa

from epe.data import Catalog, TableInfo
from epe.data.ingest import read_upload
from epe.data.names import check_table_name
from epe.service.limits import UserLimits
from epe.store import Store


def upload(catalog: Catalog, store: Store, limits: UserLimits, *, owner: str, name: str,
           body: bytes, content_type: str, overwrite: bool) -> TableInfo:
    """Create (or with ``overwrite`` replace) table ``name`` from an uploaded file
    (blocking: run it off the event loop)."""
    check_table_name(name)
    return keep(catalog, store, limits, owner=owner, name=name,
                table=read_upload(body, content_type), overwrite=overwrite)


def keep(catalog: Catalog, store: Store, limits: UserLimits, *, owner: str, name: str,
         table: pa.Table, overwrite: bool) -> TableInfo:
    """Store ``table`` as ``name`` if its Arrow size fits the owner's storage quota with
    everything else they store (a table it replaces no longer counts); nothing is kept
    otherwise (blocking)."""
    sizes = store.storage
    before = sizes.reserve_table(owner, name, table.nbytes, limits.for_user(owner).storage)
    try:
        return catalog.put(owner, name, table, overwrite)
    except BaseException:
        sizes.restore_table(owner, name, before)
        raise


def drop(catalog: Catalog, store: Store, owner: str, name: str) -> None:
    catalog.drop(owner, name)
    store.storage.drop_table(owner, name)
