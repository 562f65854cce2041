"""The embedded catalog: one DuckDB file per user (``databases``), read-only
queries as Arrow (``query``), the ``Catalog`` protocol over both (``catalog``)."""
