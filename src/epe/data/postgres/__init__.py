"""Users' tables in PostgreSQL: a role and a schema per user (``owners``), ADBC
connections and PostgreSQL's errors (``connections``), the ``Catalog`` over both
(``catalog``)."""
