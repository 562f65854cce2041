"""User tables (docs/tables.md): one embedded DuckDB database per user.

``Catalog`` is the whole surface: upload, list, describe and drop a user's
tables, and run a user's read-only ``input`` query as Arrow.
"""

from epe.data.catalog import Catalog, ColumnInfo, TableInfo

__all__ = ["Catalog", "ColumnInfo", "TableInfo"]
