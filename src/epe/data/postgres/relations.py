"""Relations handed with a query (OML's PYQ views, ``pyq*Eval`` results) as PostgreSQL
reads them: a WITH clause of VALUES, added to the query's tree.

A query runs in a READ ONLY transaction, as the user's role, prepared: no temporary
table can hold the rows, so they travel inside the statement. Every value is a
typed literal node (sqlglot writes and escapes it; nothing is pasted into the text),
each cast to its column's type so that an empty or all-null column is typed too.
The relations' names are ours, quoted; the query already names them so.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from epe.errors import InvalidRequest

if TYPE_CHECKING:
    from sqlglot import exp


def _type(kind: pa.DataType) -> str:
    if pa.types.is_boolean(kind):
        return "BOOLEAN"
    if pa.types.is_integer(kind):
        return "BIGINT"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "DOUBLE PRECISION"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMPTZ" if kind.tz else "TIMESTAMP"
    if pa.types.is_date(kind):
        return "DATE"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "BYTEA"
    return "TEXT"


def _literal(value: Any, kind: str) -> exp.Expr:
    from sqlglot import exp

    target = exp.DataType.build(kind, dialect="postgres")
    if value is None:
        node: exp.Expr = exp.null()
    elif isinstance(value, bool):
        node = exp.Boolean(this=value)
    elif isinstance(value, int):
        node = exp.Literal.number(value)
    elif isinstance(value, float):
        node = exp.Literal.number(repr(value)) if math.isfinite(value) else \
            exp.Literal.string("NaN" if math.isnan(value) else
                               ("Infinity" if value > 0 else "-Infinity"))
    elif isinstance(value, bytes):
        node = exp.Literal.string("\\x" + value.hex())
    elif isinstance(value, dt.datetime | dt.date):
        node = exp.Literal.string(value.isoformat())
    else:
        node = exp.Literal.string(str(value))
    return exp.cast(node, target)


def _select(table: pa.Table) -> exp.Select:
    """The table's rows as ``SELECT * FROM (VALUES ...) AS v(columns)``, or for no rows,
    one typed row of nulls filtered away."""
    from sqlglot import exp

    names = table.column_names
    if len(set(names)) != len(names) or not names:
        raise InvalidRequest("a computed relation needs distinct column names")
    kinds = [_type(f.type) for f in table.schema]
    columns = [exp.to_identifier(n, quoted=True) for n in names]
    if table.num_rows == 0:
        nulls = [exp.alias_(_literal(None, k), c) for k, c in zip(kinds, columns, strict=True)]
        return exp.select(*nulls).where(exp.false())
    rows = table.to_pylist()
    values = exp.Values(
        expressions=[exp.Tuple(expressions=[_literal(row[n], k)
                                            for n, k in zip(names, kinds, strict=True)])
                     for row in rows],
        alias=exp.TableAlias(this=exp.to_identifier("v"), columns=columns))
    return exp.select("*").from_(values)


def with_relations(sql: str, relations: Mapping[str, pa.Table] | None) -> str:
    """``sql`` reading each relation by its name, in PostgreSQL's dialect."""
    if not relations:
        return sql
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError

    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except ParseError as e:
        raise InvalidRequest(f"invalid SQL in input: {e}") from None
    if not isinstance(tree, exp.Query):
        raise InvalidRequest("input must be one query that returns rows")
    for name, table in relations.items():
        tree = tree.with_(exp.to_identifier(name, quoted=True), as_=_select(table))
    return tree.sql(dialect="postgres")
