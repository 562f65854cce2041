"""Users' tables: uploads read into Arrow, then kept by the catalog."""

from __future__ import annotations

from epe.data import Catalog, TableInfo
from epe.data.ingest import read_upload
from epe.data.names import check_table_name


def upload(catalog: Catalog, owner: str, name: str, body: bytes, content_type: str,
           overwrite: bool) -> TableInfo:
    """Create (or with ``overwrite`` replace) table ``name`` from an uploaded file
    (blocking: run it off the event loop)."""
    check_table_name(name)
    return catalog.put(owner, name, read_upload(body, content_type), overwrite)
