"""Users' tables: the ``Catalog`` protocol and the backend ``EPE_DATA_URL`` names.

``open_catalog`` is the one way in: ``duckdb:///FOLDER`` (the default: one embedded
DuckDB file per user in the data folder) or ``postgresql://USER@HOST:PORT/DATABASE``
(a schema and a role per user in that database). Each backend is imported only when
chosen.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from epe.data.catalog import Catalog, ColumnInfo, TableInfo
from epe.errors import InvalidSetting

__all__ = ["Catalog", "ColumnInfo", "TableInfo", "open_catalog"]

_POSTGRES = ("postgresql", "postgres")


def open_catalog(url: str, query_timeout: float, role_prefix: str = "epe_") -> Catalog:
    """The catalog at ``url``; ``role_prefix`` begins the names of the roles and schemas
    a PostgreSQL catalog makes for users."""
    parts = urlsplit(url)
    if parts.scheme in _POSTGRES:
        if not parts.hostname and "host=" not in parts.query:
            raise InvalidSetting(f"the data URL {shown(url)!r} names no server: use "
                                 "postgresql://USER@HOST:PORT/DATABASE")
        from epe.data.postgres.catalog import PostgresCatalog

        return PostgresCatalog(url, query_timeout, role_prefix)
    if parts.scheme != "duckdb":
        raise InvalidSetting(f"the data URL {shown(url)!r} names a place epe cannot keep "
                             "tables in; "
                             "use duckdb:///FOLDER or postgresql://USER@HOST:PORT/DATABASE")
    if not parts.path:
        raise InvalidSetting(f"the data URL {url!r} names no folder: use duckdb:///FOLDER")
    from epe.data.duckdb.catalog import DuckDBCatalog

    return DuckDBCatalog(Path(parts.path), query_timeout)


def is_shared(url: str) -> bool:
    """Whether the catalog at ``url`` is one every server that names it shares (a
    database server), rather than files of this server's own."""
    return urlsplit(url).scheme in _POSTGRES


def shown(url: str) -> str:
    """``url`` with its password masked, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
