"""Users' tables: the ``Catalog`` protocol and the backend ``EPE_DATA_URL`` names.

``open_catalog`` is the one way in. Only ``duckdb:///FOLDER`` (the default: one
embedded DuckDB file per user in the data folder) is built in today.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from epe.data.catalog import Catalog, ColumnInfo, TableInfo
from epe.errors import InvalidSetting

__all__ = ["Catalog", "ColumnInfo", "TableInfo", "open_catalog"]


def open_catalog(url: str, query_timeout: float) -> Catalog:
    """The catalog at ``url``; its backend is imported only when chosen."""
    parts = urlsplit(url)
    if parts.scheme != "duckdb":
        raise InvalidSetting(f"the data URL {url!r} names a place epe cannot keep tables in; "
                             "use duckdb:///FOLDER")
    if not parts.path:
        raise InvalidSetting(f"the data URL {url!r} names no folder: use duckdb:///FOLDER")
    from epe.data.duckdb.catalog import DuckDBCatalog

    return DuckDBCatalog(Path(parts.path), query_timeout)
