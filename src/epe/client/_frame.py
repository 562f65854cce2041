"""OML's DataFrame proxy and its column types, lazy, on Ibis (docs/client.md#what-a-proxy-does).

A ``DataFrame`` is a relation (an Ibis table expression over the user's tables) and
the columns it shows, each an Ibis value over that relation. Selecting, deriving and
concatenating columns of the same rows only edits that list; filtering, sorting,
joining and the rest make a new relation. Nothing runs until rows or a figure are
asked for (``pull``, ``head`` shown, ``len``, ``describe``...): then the expression is
compiled to the server's SQL and sent through ``POST /query`` (``_sql``).

Columns are ``Float`` (numbers), ``String``, ``Boolean``, ``Bytes`` and ``Datetime``
(dates and times), OML's types. What pandas has and a proxy has not raises
``Unsupported`` (a ``NotImplementedError``) naming the operation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from epe.client._connection import Connection
from epe.client._errors import Unsupported
from epe.client._sql import POSITION, Sources, compile_sql, dialect_of, fetch, ibis

_REPR_ROWS = 10
_REPR_VALUES = 20


def unsupported(what: str, hint: str = "") -> Unsupported:
    """The error for what OML's proxies (or epe's) do not do: it names the operation."""
    return Unsupported(
        f"{what} is not supported by epe's data proxies"
        + (f": {hint}" if hint else "; .pull() the rows and use pandas"))


class Lazy(ABC):
    """What every proxy has: the session, the relation its rows come from, the users'
    queries that relation reads, and the pushed tables it keeps alive."""

    _connection: Connection
    _rel: Any  # ibis.Table
    _sources: Sources
    _keep: tuple[Any, ...]

    @abstractmethod
    def _expr(self) -> Any:
        """The Ibis expression this proxy stands for."""

    def _compiled(self, expr: Any) -> str:
        return compile_sql(expr, dialect_of(self._connection), self._sources)

    @property
    def sql(self) -> str:
        """The query whose rows this proxy stands for (the ``input`` of run requests)."""
        return self._compiled(self._expr())

    @property
    def native(self) -> bool:
        """Whether its SQL is all the backend's own (no user query in Oracle's dialect)."""
        return not self._sources.queries

    def _run(self, expr: Any) -> pa.Table:
        return plain_numbers(fetch(self._connection, self._compiled(expr),
                                   native=self.native).table)

    def _scalar(self, expr: Any) -> Any:
        return self._run(expr.as_table()).column(0)[0].as_py()

    def _same_rows(self, other: Lazy, what: str) -> None:
        if other._connection is not self._connection:
            raise ValueError(f"{what}: the proxies belong to different sessions")
        if other._rel is not self._rel and not other._rel.equals(self._rel):
            raise ValueError(
                f"{what} needs columns of the same rows: derive them from one proxy "
                "(without filtering, sorting or head in between), or merge the proxies")

    def __bool__(self) -> bool:
        raise TypeError("the truth value of an oml proxy is ambiguous: compare values "
                        "after .pull(), or filter with proxy[condition, :]")

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_") and (hasattr(pd.DataFrame, name)
                                         or hasattr(pd.Series, name)):
            raise unsupported(f"{type(self).__name__}.{name}")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def plain_numbers(table: pa.Table) -> pa.Table:
    """Decimal columns as int64 (scale 0) or float64: the backends sum integers into
    128-bit decimals (DuckDB) or numerics (PostgreSQL), which pandas would hold as
    Python objects."""
    for i, f in enumerate(table.schema):
        if pa.types.is_decimal(f.type):
            kind = pa.int64() if f.type.scale == 0 and f.type.precision <= 38 else pa.float64()
            try:
                column = table.column(i).cast(kind)
            except pa.ArrowInvalid:  # beyond int64
                column = table.column(i).cast(pa.float64())
            table = table.set_column(i, f.name, column)
    return table


# -- columns ----------------------------------------------------------------------------


class Series(Lazy):
    """One column of a proxy: OML's ``oml.Float``, ``oml.String`` and the others.

    Arithmetic, comparisons and functions give new columns of the same rows;
    aggregates (``min``, ``mean``...) run at once and give a value; ``pull()`` gives
    the values as a list, as OML's does.
    """

    _value: Any  # an ibis value over _rel
    _name: str | None  # None for a comparison's result (concat names it COLn)
    _order: tuple[Any, ...]  # sort keys over _rel, as its DataFrame's

    @classmethod
    def _of(cls, source: Lazy, rel: Any, value: Any, name: str | None,
            order: tuple[Any, ...] = ()) -> Series:
        kind = column_class(value.type())
        column = kind.__new__(kind)
        column._connection, column._rel = source._connection, rel
        column._sources, column._keep = source._sources, source._keep
        column._value, column._name, column._order = value, name, order
        return column

    def _derived(self, value: Any, keep_name: bool = True) -> Series:
        return Series._of(self, self._rel, value, self._name if keep_name else None,
                          self._order)

    def _expr(self) -> Any:
        rel = self._rel.order_by(list(self._order)) if self._order else self._rel
        return rel.select(self._value.name(self._name or "COL1"))

    @property
    def name(self) -> str | None:
        """The column's name (None for a comparison's result)."""
        return self._name

    @property
    def shape(self) -> tuple[int]:
        """(rows,), counted in the database."""
        return (len(self),)

    def __len__(self) -> int:
        return int(self._scalar(self._rel.count()))

    def pull(self) -> list[Any]:
        """The values, as a list (missing ones None)."""
        return list(self._run(self._expr()).column(0).to_pylist())

    def __iter__(self) -> Iterator[Any]:
        return iter(self.pull())

    def __repr__(self) -> str:
        values = self._run(self._expr().limit(_REPR_VALUES + 1)).column(0).to_pylist()
        more = ", ..." if len(values) > _REPR_VALUES else ""
        return "[" + ", ".join(map(repr, values[:_REPR_VALUES])) + more + "]"

    # -- operators: new columns of the same rows -----------------------------------------

    def _other(self, other: Any, what: str) -> Any:
        if isinstance(other, Series):
            self._same_rows(other, what)
            return other._value
        if isinstance(other, Lazy):
            raise TypeError(f"{what}: combine a column with a column or a value, "
                            f"not a {type(other).__name__}")
        return other

    def _binary(self, other: Any, op: str, what: str, boolean: bool = False) -> Series:
        value = getattr(self._value, op)(self._other(other, what))
        if value is NotImplemented:
            raise TypeError(f"{what} is not defined for {type(self).__name__} and "
                            f"{type(other).__name__}")
        return self._derived(value, keep_name=not boolean)

    def __add__(self, o: Any) -> Series: return self._binary(o, "__add__", "+")
    def __radd__(self, o: Any) -> Series: return self._binary(o, "__radd__", "+")
    def __sub__(self, o: Any) -> Series: return self._binary(o, "__sub__", "-")
    def __rsub__(self, o: Any) -> Series: return self._binary(o, "__rsub__", "-")
    def __mul__(self, o: Any) -> Series: return self._binary(o, "__mul__", "*")
    def __rmul__(self, o: Any) -> Series: return self._binary(o, "__rmul__", "*")
    def __truediv__(self, o: Any) -> Series: return self._binary(o, "__truediv__", "/")
    def __rtruediv__(self, o: Any) -> Series: return self._binary(o, "__rtruediv__", "/")
    def __floordiv__(self, o: Any) -> Series: return self._binary(o, "__floordiv__", "//")
    def __mod__(self, o: Any) -> Series: return self._binary(o, "__mod__", "%")
    def __pow__(self, o: Any) -> Series: return self._binary(o, "__pow__", "**")
    def __neg__(self) -> Series: return self._derived(-self._value)
    def __abs__(self) -> Series: return self._derived(self._value.abs())

    def __lt__(self, o: Any) -> Series: return self._binary(o, "__lt__", "<", True)
    def __le__(self, o: Any) -> Series: return self._binary(o, "__le__", "<=", True)
    def __gt__(self, o: Any) -> Series: return self._binary(o, "__gt__", ">", True)
    def __ge__(self, o: Any) -> Series: return self._binary(o, "__ge__", ">=", True)
    def __eq__(self, o: Any) -> Series: return self._binary(o, "__eq__", "==", True)  # type: ignore[override]
    def __ne__(self, o: Any) -> Series: return self._binary(o, "__ne__", "!=", True)  # type: ignore[override]
    __hash__ = None  # type: ignore[assignment]

    def isnull(self) -> Series:
        """Whether each value is missing."""
        return self._derived(self._value.isnull(), keep_name=False)

    def notnull(self) -> Series:
        """Whether each value is present."""
        return self._derived(self._value.notnull(), keep_name=False)

    isna, notna = isnull, notnull  # pandas' other names

    def isin(self, values: Sequence[Any]) -> Series:
        """Whether each value is one of ``values``."""
        return self._derived(self._value.isin(list(values)), keep_name=False)

    # -- rows ----------------------------------------------------------------------------

    def _frame(self) -> DataFrame:
        return DataFrame._of(self, self._rel, {self._name or "COL1": self._value},
                             order=self._order)

    def head(self, n: int = 5) -> Series:
        """A column of the first ``n`` rows."""
        return self._frame().head(n)._column(self._name or "COL1")

    def tail(self, n: int = 5) -> Series:
        """A column of the last ``n`` rows."""
        return self._frame().tail(n)._column(self._name or "COL1")

    def sort_values(self, ascending: bool = True, na_position: str = "last") -> Series:
        """The values sorted; missing ones last (or ``'first'``)."""
        frame = self._frame()
        return frame.sort_values(frame.columns[0], ascending=ascending,
                                 na_position=na_position)._column(frame.columns[0])

    def drop_duplicates(self) -> Series:
        """Each value once."""
        return self._frame().drop_duplicates()._column(self._name or "COL1")

    def dropna(self) -> Series:
        """Without the missing values."""
        return self._frame().dropna()._column(self._name or "COL1")

    def unique(self) -> list[Any]:
        """The distinct values, as a list."""
        return self.drop_duplicates().pull()

    def append(self, other: Series) -> Series:
        """The values of ``other`` after these (a column of the two's common type)."""
        if not isinstance(other, Series):
            raise TypeError("append takes another column of a proxy")
        name = self._name or "COL1"
        frame = self._frame().append(DataFrame._of(other, other._rel, {name: other._value}))
        return frame._column(name)

    # -- aggregates: a value, computed in the database -----------------------------------

    def _aggregate(self, how: str) -> Any:
        value = getattr(self._value, how)() if how != "median" else self._value.quantile(0.5)
        return self._scalar(value)

    def count(self) -> int:
        """How many values are present."""
        return int(self._aggregate("count"))

    def nunique(self) -> int:
        """How many distinct values are present."""
        return int(self._aggregate("nunique"))

    def min(self) -> Any:
        """The smallest value."""
        return _numpy(self._aggregate("min"))

    def max(self) -> Any:
        """The largest value."""
        return _numpy(self._aggregate("max"))

    def describe(self) -> pd.Series:
        """pandas' ``describe`` of the column, computed in the database."""
        from epe.client._summary import describe

        return describe(self._frame(), include="all").iloc[:, 0].dropna()


class Float(Series):
    """A numeric column (OML's ``oml.Float``: integers too)."""

    def sum(self) -> Any:
        """The sum, computed in the database."""
        return _numpy(self._aggregate("sum"))
    def mean(self) -> np.float64:
        """The mean, computed in the database."""
        return np.float64(self._aggregate("mean"))
    def median(self) -> np.float64:
        """The median (interpolated, as pandas'), computed in the database."""
        return np.float64(self._aggregate("median"))
    def std(self) -> np.float64:
        """The sample standard deviation, computed in the database."""
        return np.float64(self._aggregate("std"))
    def var(self) -> np.float64:
        """The sample variance, computed in the database."""
        return np.float64(self._aggregate("var"))

    def skew(self) -> np.float64:
        """The skewness (pandas' bias-corrected one), computed in the database."""
        from epe.client._summary import moments

        return np.float64(moments(self._frame(), "skew").iloc[0])

    def kurtosis(self) -> np.float64:
        """The excess kurtosis (pandas' bias-corrected one), computed in the database."""
        from epe.client._summary import moments

        return np.float64(moments(self._frame(), "kurtosis").iloc[0])

    kurt = kurtosis

    def cumsum(self) -> Series:
        """The running sum, in the proxy's order."""
        return self._frame().cumsum()._column(self._name or "COL1")

    def round(self, decimals: int = 0) -> Series:
        """Each value rounded to ``decimals`` places."""
        return self._derived(self._value.round(decimals))
    def ceil(self) -> Series:
        """Each value rounded up."""
        return self._derived(self._value.ceil())
    def floor(self) -> Series:
        """Each value rounded down."""
        return self._derived(self._value.floor())
    def exp(self) -> Series:
        """e to the power of each value."""
        return self._derived(self._value.exp())
    def log(self, base: float | None = None) -> Series:
        """Each value's natural logarithm (or to ``base``)."""
        return self._derived(self._value.ln() if base is None else self._value.log(base))
    def sqrt(self) -> Series:
        """Each value's square root."""
        return self._derived(self._value.sqrt())
    def abs(self) -> Series:
        """Each value's absolute value."""
        return self._derived(self._value.abs())


class String(Series):
    """A text column (OML's ``oml.String``)."""

    def len(self) -> Series:
        """Each string's length."""
        return self._derived(self._value.length())

    def find(self, sub: str, start: int = 0) -> Series:
        """Where ``sub`` first starts (from 0), or -1, as ``str.find``."""
        if start:
            return self._derived(self._value.find(sub, start))
        return self._derived(self._value.find(sub))

    def count_pattern(self, pat: str) -> Series:
        """How many times the regular expression ``pat`` matches, without overlaps."""
        return self._derived(self._value.re_split(pat).length() - 1)

    def upper(self) -> Series:
        """Each string in upper case."""
        return self._derived(self._value.upper())
    def lower(self) -> Series:
        """Each string in lower case."""
        return self._derived(self._value.lower())
    def strip(self) -> Series:
        """Each string without its leading and trailing blanks."""
        return self._derived(self._value.strip())

    def startswith(self, prefix: str) -> Series:
        """Whether each string starts with ``prefix``."""
        return self._derived(self._value.startswith(prefix), keep_name=False)

    def endswith(self, suffix: str) -> Series:
        """Whether each string ends with ``suffix``."""
        return self._derived(self._value.endswith(suffix), keep_name=False)

    def contains(self, pat: str, regex: bool = True) -> Series:
        """Whether each string holds ``pat`` (a regular expression unless ``regex=False``)."""
        test = self._value.re_search(pat) if regex else self._value.contains(pat)
        return self._derived(test, keep_name=False)


class Boolean(Series):
    """A column of truth values (OML's ``oml.Boolean``): combine with ``&``, ``|``, ``~``."""

    def __and__(self, o: Any) -> Series: return self._binary(o, "__and__", "&", True)
    def __or__(self, o: Any) -> Series: return self._binary(o, "__or__", "|", True)
    def __xor__(self, o: Any) -> Series: return self._binary(o, "__xor__", "^", True)
    def __invert__(self) -> Series: return self._derived(~self._value, keep_name=False)

    def sum(self) -> Any:
        """The sum, computed in the database."""
        return _numpy(self._scalar(self._value.cast("int32").cast("int64").sum()))
    def mean(self) -> np.float64:
        """The mean, computed in the database."""
        return np.float64(self._scalar(self._value.cast("float64").mean()))


class Bytes(Series):
    """A column of bytes (OML's ``oml.Bytes``)."""


class Datetime(Series):
    """A column of dates or timestamps (OML's ``oml.Datetime``)."""


def column_class(dtype: Any) -> type[Series]:
    """OML's column type of an Ibis type."""
    if dtype.is_boolean():
        return Boolean
    if dtype.is_numeric():
        return Float
    if dtype.is_string():
        return String
    if dtype.is_binary():
        return Bytes
    if dtype.is_temporal():
        return Datetime
    return Series


def _numpy(value: Any) -> Any:
    """A number as numpy's scalar (OML's values have ``.round()``); others as they are."""
    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, int):
        return np.int64(value)
    if isinstance(value, float):
        return np.float64(value)
    return value


# -- tables -----------------------------------------------------------------------------


class DataFrame(Lazy):
    """A proxy for rows on the server: a table, a query, or what was derived from one.

    ``oml.DataFrame(proxy["COL"])`` makes a proxy of the column(s), as OML4Py's
    constructor does; that is the ``index`` of ``oml.group_apply``.
    """

    _cols: dict[str, Any]
    _order: tuple[Any, ...]  # sort keys over _rel, kept until a new relation is made
    _table: str | None

    def __init__(self, other: Lazy) -> None:
        if isinstance(other, Series):
            other = other._frame()
        if not isinstance(other, DataFrame):
            raise TypeError("oml.DataFrame(x) takes another proxy (e.g. proxy['COL']); use "
                            "oml.push(df) or oml.create(df, table=...) for a pandas DataFrame")
        self.__dict__.update(other.__dict__)
        self._cols = dict(other._cols)

    @classmethod
    def _of(cls, source: Lazy | Connection, rel: Any, cols: dict[str, Any] | None = None,
            sources: Sources | None = None, keep: tuple[Any, ...] = (),
            table: str | None = None, order: tuple[Any, ...] = ()) -> DataFrame:
        frame = cls.__new__(cls)
        if isinstance(source, Lazy):
            frame._connection, frame._sources = source._connection, source._sources
            frame._keep = source._keep
        else:
            frame._connection, frame._sources, frame._keep = source, Sources(), ()
        if sources is not None:
            frame._sources = sources
        frame._keep = frame._keep + tuple(keep)
        frame._rel, frame._table, frame._order = rel, table, order
        frame._cols = cols if cols is not None else {c: rel[c] for c in rel.columns}
        return frame

    def _with(self, cols: dict[str, Any]) -> DataFrame:
        """The same rows, other columns."""
        return DataFrame._of(self, self._rel, cols, order=self._order)

    def _expr(self) -> Any:
        rel = self._rel.order_by(list(self._order)) if self._order else self._rel
        if list(self._cols) == list(self._rel.columns) and all(
                v.equals(self._rel[c]) for c, v in self._cols.items()):
            return rel
        return rel.select(**self._cols)

    def _materialized(self, expr: Any | None = None) -> DataFrame:
        """A new relation: these rows and columns (or ``expr``, made from them)."""
        return DataFrame._of(self, self._expr() if expr is None else expr)

    # -- what it is ----------------------------------------------------------------------

    @property
    def table(self) -> str | None:
        """The table's name when the proxy is a whole table, else None."""
        return self._table if self._table is not None and self._expr() is self._rel else None

    @property
    def columns(self) -> list[str]:
        """The column names, in order."""
        return list(self._cols)

    @property
    def dtypes(self) -> pd.Series:
        """Each column's OML type (``oml.Float``, ``oml.String``...)."""
        return pd.Series({c: column_class(v.type()) for c, v in self._cols.items()},
                         dtype=object)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns); the rows are counted in the database."""
        return len(self), len(self._cols)

    def __len__(self) -> int:
        return int(self._scalar(self._rel.count()))

    def __iter__(self) -> Iterator[str]:
        return iter(self._cols)

    # -- rows ----------------------------------------------------------------------------

    def pull(self) -> pd.DataFrame:
        """All the rows, as a pandas DataFrame (through an Arrow stream)."""
        return self._run(self._expr()).to_pandas()

    def head(self, n: int = 5) -> DataFrame:
        """A proxy of the first ``n`` rows; ``.pull()`` it, or just show it."""
        return self._materialized(self._expr().limit(int(n)))

    def tail(self, n: int = 5) -> DataFrame:
        """A proxy of the last ``n`` rows, in their order (the sort's, if sorted)."""
        order = list(self._order)
        number = ibis().row_number().over(order_by=order) if order else ibis().row_number()
        numbered = self._rel.mutate(**{POSITION: number})
        total = numbered.count().as_scalar()
        last = numbered.filter(numbered[POSITION] >= total - int(n)).order_by(POSITION)
        return self._materialized(last.select(**self._cols))

    # -- columns -------------------------------------------------------------------------

    def _resolve(self, names: Sequence[Any]) -> list[str]:
        """The columns as the proxy spells them; matched ignoring case, as SQL does."""
        by_lower: dict[str, str] = {}
        for c in self._cols:
            by_lower.setdefault(c.lower(), c)
        found = []
        for n in names:
            if isinstance(n, str) and n in self._cols:
                found.append(n)
            elif isinstance(n, str) and n.lower() in by_lower:
                found.append(by_lower[n.lower()])
            else:
                raise KeyError(f"no column {n!r} in this proxy; its columns are "
                               f"{', '.join(self._cols)}")
        return found

    def _select(self, key: Any) -> DataFrame | Series:
        if isinstance(key, str):
            name = self._resolve([key])[0]
            return Series._of(self, self._rel, self._cols[name], name, self._order)
        if isinstance(key, slice):
            names = self.columns[key]
        elif isinstance(key, list | tuple) and all(isinstance(k, str) for k in key):
            names = self._resolve(list(key))
        elif isinstance(key, list | tuple) and all(isinstance(k, int) for k in key):
            names = [self.columns[k] for k in key]
        else:
            raise TypeError("select columns by name, list of names, position or slice "
                            "(proxy['COL'], proxy[['A', 'B']], proxy[:, 1:4])")
        if not names:
            raise ValueError("select at least one column")
        return self._with({n: self._cols[n] for n in names})

    def _column(self, name: str) -> Series:
        chosen = self._select(name)
        assert isinstance(chosen, Series)
        return chosen

    def select(self, names: Sequence[str]) -> DataFrame:
        """A proxy of some of the columns, in the order given."""
        chosen = self._select([names] if isinstance(names, str) else list(names))
        assert isinstance(chosen, DataFrame)
        return chosen

    def _filter(self, condition: Any) -> DataFrame:
        if not isinstance(condition, Boolean):
            raise TypeError("filter rows with a Boolean column of the same proxy, e.g. "
                            "proxy[proxy['X'] > 1, :]")
        self._same_rows(condition, "filtering")
        return DataFrame._of(self, self._rel.filter(condition._value), dict(self._cols),
                             order=self._order)

    def __getitem__(self, key: Any) -> DataFrame | Series:
        """``proxy["COL"]`` (a column), ``proxy[["A", "B"]]``, ``proxy[:, 1:4]``,
        ``proxy[condition, :]`` and ``proxy[condition, ["A", "B"]]``."""
        if isinstance(key, tuple) and len(key) == 2:
            rows, cols = key
            frame = self if isinstance(rows, slice) and rows == slice(None) \
                else self._filter(rows)
            return frame if isinstance(cols, slice) and cols == slice(None) \
                else frame._select(cols)
        if isinstance(key, Boolean):
            return self._filter(key)
        return self._select(key)

    def drop(self, columns: str | Sequence[str]) -> DataFrame:
        """Without the columns named."""
        names = set(self._resolve([columns] if isinstance(columns, str) else list(columns)))
        return self._with({c: v for c, v in self._cols.items() if c not in names})

    def rename(self, columns: dict[str, str] | Sequence[str]) -> DataFrame:
        """Rename columns (a dict old -> new, or every new name in order), in place as
        OML does; returns the proxy."""
        if isinstance(columns, dict):
            old = {self._resolve([k])[0]: v for k, v in columns.items()}
            names = [old.get(c, c) for c in self._cols]
        else:
            names = list(columns)
            if len(names) != len(self._cols):
                raise ValueError(f"give {len(self._cols)} names, one per column")
        if len(set(names)) != len(names):
            raise ValueError("column names must be distinct")
        self._cols = dict(zip(names, self._cols.values(), strict=True))
        self._table = None
        return self

    def select_types(self, include: Sequence[type] | None = None,
                     exclude: Sequence[type] | None = None) -> DataFrame:
        """The columns of the OML types in ``include`` (all by default), less those in
        ``exclude``."""
        chosen = {c: v for c, v in self._cols.items()
                  if (include is None or column_class(v.type()) in include)
                  and not (exclude and column_class(v.type()) in exclude)}
        if not chosen:
            raise ValueError("no column of those types")
        return self._with(chosen)

    def concat(self, other: Any, auto_name: bool = False) -> DataFrame:
        """These columns and those of ``other`` (a proxy, a column, a list of them, or a
        dict of name -> column or name prefix -> proxy), of the same rows."""
        cols = dict(self._cols)
        for name, value in _named_columns(self, other):
            if name is None:
                name = f"COL{len(cols) + 1}"
            elif name in cols:
                if not auto_name:
                    raise ValueError(f"column {name!r} is already in the proxy; rename it "
                                     "or pass auto_name=True")
                name = f"{name}{len(cols) + 1}"
            cols[name] = value
        return self._with(cols)

    def append(self, other: DataFrame) -> DataFrame:
        """The rows of ``other`` after these, column by position, in the two's common
        types (as OML's ``append``)."""
        if not isinstance(other, DataFrame) or len(other._cols) != len(self._cols):
            raise ValueError("append takes a proxy with as many columns as this one")
        if other._connection is not self._connection:
            raise ValueError("append: the proxies belong to different sessions")
        mine, theirs = self._expr(), other._expr()
        dt = ibis().expr.datatypes
        casts_a, casts_b = {}, {}
        for a, b in zip(mine.columns, theirs.columns, strict=True):
            ta, tb = mine[a].type(), theirs[b].type()
            common = ta if ta == tb else dt.highest_precedence([ta, tb])
            casts_a[a] = mine[a].cast(common)
            casts_b[a] = theirs[b].cast(common)
        union = mine.select(**casts_a).union(theirs.select(**casts_b))
        return DataFrame._of(self, union, sources=self._sources | other._sources,
                             keep=other._keep)

    # -- rows: filters, order, joins ------------------------------------------------------

    def dropna(self, how: str = "any", thresh: int | None = None,
               subset: Sequence[str] | None = None) -> DataFrame:
        """Without the rows missing any (``how='any'``) or all (``'all'``) of the values
        of ``subset`` (every column by default), or with fewer than ``thresh``."""
        names = self._resolve(list(subset)) if subset is not None else self.columns
        present = [self._cols[n].notnull() for n in names]
        if thresh is not None:
            counted = sum((p.cast("int32").cast("int64") for p in present), ibis().literal(0))
            condition = counted >= thresh
        elif how == "any":
            condition = ibis().and_(*present)
        elif how == "all":
            condition = ibis().or_(*present)
        else:
            raise ValueError("how must be 'any' or 'all'")
        return DataFrame._of(self, self._rel.filter(condition), dict(self._cols),
                             order=self._order)

    def drop_duplicates(self, subset: Sequence[str] | None = None) -> DataFrame:
        """One row per distinct value of ``subset`` (every column by default): the first,
        in the proxy's order, as pandas keeps."""
        expr = self._expr()
        if subset is None:
            return self._materialized(expr.distinct())
        keys = self._resolve(list(subset))
        numbered = expr.mutate(**{POSITION: ibis().row_number()})
        first = ibis().row_number().over(group_by=[numbered[k] for k in keys],
                                         order_by=numbered[POSITION])
        kept = numbered.filter(first == 0).order_by(POSITION).drop(POSITION)
        return self._materialized(kept)

    def sort_values(self, by: str | Sequence[str], ascending: bool | Sequence[bool] = True,
                    na_position: str = "last") -> DataFrame:
        """Sorted by the columns ``by``; missing values last (or ``'first'``)."""
        names = self._resolve([by] if isinstance(by, str) else list(by))
        ups = [ascending] * len(names) if isinstance(ascending, bool) else list(ascending)
        if len(ups) != len(names):
            raise ValueError("give one ascending flag per column of by")
        if na_position not in ("first", "last"):
            raise ValueError("na_position must be 'first' or 'last'")
        first = na_position == "first"
        keys = tuple((ibis().asc if up else ibis().desc)(self._cols[n], nulls_first=first)
                     for n, up in zip(names, ups, strict=True))
        return DataFrame._of(self, self._rel, dict(self._cols), order=keys)

    def merge(self, other: DataFrame, on: str | Sequence[str] | None = None,
              left_on: str | Sequence[str] | None = None,
              right_on: str | Sequence[str] | None = None, how: str = "inner",
              suffixes: Sequence[str] = ("_l", "_r")) -> DataFrame:
        """A join in the database, named as OML names it: every column that is not an
        ``on`` key gets its side's suffix (a cross join without keys)."""
        from epe.client._summary import merge

        return merge(self, other, on, left_on, right_on, how, tuple(suffixes))

    def split(self, ratio: Sequence[float] = (0.7, 0.3), seed: int = 12345,
              hash_cols: Sequence[str] | None = None, strata_cols: Sequence[str] | None = None,
              use_hash: bool = True) -> list[DataFrame]:
        """Disjoint parts of the rows in the proportions ``ratio`` (docs/client.md)."""
        from epe.client._summary import split

        return split(self, ratio, seed, hash_cols, strata_cols, use_hash)

    def KFold(self, n_splits: int = 3, seed: int = 12345,
              hash_cols: Sequence[str] | None = None, strata_cols: Sequence[str] | None = None,
              use_hash: bool = True) -> list[tuple[DataFrame, DataFrame]]:
        """``n_splits`` (train, test) pairs whose tests are disjoint and cover the rows."""
        if not isinstance(n_splits, int) or n_splits < 2:
            raise ValueError("n_splits must be an int of at least 2")
        parts = self.split([1 / n_splits] * n_splits, seed, hash_cols, strata_cols, use_hash)
        pairs = []
        for i, test in enumerate(parts):
            rest = [p for j, p in enumerate(parts) if j != i]
            train = rest[0]
            for p in rest[1:]:
                train = train.append(p)
            pairs.append((train, test))
        return pairs

    # -- statistics, computed in the database --------------------------------------------

    def describe(self, percentiles: Sequence[float] | None = None, include: Any = None,
                 exclude: Any = None) -> pd.DataFrame:
        """pandas' ``describe``: count, mean, std, min, quartiles, max of the numeric
        columns; count, unique, top, freq of the others (``include='all'``)."""
        from epe.client._summary import describe

        return describe(self, include=include, exclude=exclude, percentiles=percentiles)

    def _stat(self, how: str, skipna: bool = True) -> pd.Series:
        from epe.client._summary import column_stats

        return column_stats(self, how, skipna)

    def count(self) -> pd.Series:
        """How many values are present."""
        return self._stat("count")
    def nunique(self) -> pd.Series:
        """How many distinct values are present."""
        return self._stat("nunique")
    def sum(self, skipna: bool = True) -> pd.Series:
        """The sum, computed in the database."""
        return self._stat("sum", skipna)
    def mean(self, skipna: bool = True) -> pd.Series:
        """The mean, computed in the database."""
        return self._stat("mean", skipna)
    def median(self, skipna: bool = True) -> pd.Series:
        """The median (interpolated, as pandas'), computed in the database."""
        return self._stat("median", skipna)
    def min(self, skipna: bool = True) -> pd.Series:
        """The smallest value."""
        return self._stat("min", skipna)
    def max(self, skipna: bool = True) -> pd.Series:
        """The largest value."""
        return self._stat("max", skipna)
    def std(self, skipna: bool = True) -> pd.Series:
        """The sample standard deviation, computed in the database."""
        return self._stat("std", skipna)
    def var(self, skipna: bool = True) -> pd.Series:
        """The sample variance, computed in the database."""
        return self._stat("var", skipna)

    def skew(self, skipna: bool = True) -> pd.Series:
        """Each Float column's skewness (pandas' bias-corrected one)."""
        from epe.client._summary import moments

        return moments(self, "skew")

    def kurtosis(self, skipna: bool = True) -> pd.Series:
        """Each Float column's excess kurtosis (pandas' bias-corrected one)."""
        from epe.client._summary import moments

        return moments(self, "kurtosis")

    kurt = kurtosis

    def cumsum(self, by: str | Sequence[str] | None = None,
               ascending: bool = True) -> DataFrame:
        """Running sums of the Float and Boolean columns, in the order of ``by`` (the
        proxy's own order by default); a missing value stays missing."""
        from epe.client._summary import cumsum

        return cumsum(self, by, ascending)

    def corr(self, method: str = "pearson", min_periods: int = 1,
             skipna: bool = True) -> pd.DataFrame:
        """Pearson correlations of the Float columns (each pair over the rows where both
        are present; with ``skipna=False``, NaN for a column with missing values)."""
        from epe.client._summary import corr

        return corr(self, method, min_periods, skipna)

    def crosstab(self, index: Any, columns: Any = None, values: str | None = None,
                 aggfunc: Any = None, rownames: Any = None, colnames: Any = None,
                 pivot: bool = False, margins: bool = False, dropna: bool = True,
                 normalize: Any = False) -> Any:
        """Counts of each combination of ``index`` and ``columns`` values: a proxy of
        (index, columns, count) rows, or with ``pivot=True`` a table of one row per
        ``index`` value and a ``count_(v)`` column per ``columns`` value."""
        from epe.client._summary import crosstab

        return crosstab(self, index, columns, values, aggfunc, pivot, margins, dropna,
                        normalize)

    def pivot_table(self, index: Any, columns: Any = None, values: Any = None,
                    aggfunc: Any = "mean", margins: bool = False, dropna: bool = True,
                    fill_value: Any = None) -> pd.DataFrame:
        """``aggfunc(values)`` per ``index`` value and ``columns`` value, as OML names
        them: ``mean(SPEED)_(L)``."""
        from epe.client._summary import pivot_table

        return pivot_table(self, index, columns, values, aggfunc, margins, dropna,
                           fill_value)

    # -- display -------------------------------------------------------------------------

    def _preview(self) -> tuple[pd.DataFrame, int] | None:
        try:
            return self.head(_REPR_ROWS).pull(), len(self)
        except Exception:
            return None

    def __repr__(self) -> str:
        preview = self._preview()
        if preview is None:
            return f"oml.DataFrame(columns={self.columns!r})"
        frame, rows = preview
        more = f"\n... ({rows} rows in all)" if rows > len(frame) else ""
        return f"{frame!r}{more}\n[oml.DataFrame: {rows} rows x {len(frame.columns)} columns]"

    def _repr_html_(self) -> str:
        preview = self._preview()
        if preview is None:
            return f"<pre>oml.DataFrame(columns={self.columns!r})</pre>"
        frame, rows = preview
        return (frame.to_html(index=False)
                + f"<p>oml.DataFrame: {rows} rows &times; {len(frame.columns)} columns</p>")

    def __eq__(self, other: object) -> bool:
        raise unsupported("DataFrame == (compare columns: proxy['A'] == x)")

    __hash__ = object.__hash__


def _named_columns(frame: DataFrame, other: Any) -> list[tuple[str | None, Any]]:
    """(name, value) of what ``concat`` adds, checked to be of the frame's rows."""
    if isinstance(other, Series):
        frame._same_rows(other, "concat")
        return [(other._name, other._value)]
    if isinstance(other, DataFrame):
        frame._same_rows(other, "concat")
        return list(other._cols.items())
    if isinstance(other, dict):
        out: list[tuple[str | None, Any]] = []
        for name, value in other.items():
            if isinstance(value, Series):
                frame._same_rows(value, "concat")
                out.append((str(name), value._value))
            elif isinstance(value, DataFrame):
                frame._same_rows(value, "concat")
                out += [(f"{name}{c}", v) for c, v in value._cols.items()]
            else:
                raise TypeError("concat's dict maps names to columns or proxies")
        return out
    if isinstance(other, list | tuple):
        return [pair for item in other for pair in _named_columns(frame, item)]
    raise TypeError("concat takes a proxy, a column, a list of them, or a dict of them")
