"""What a DataFrame proxy computes in the database: statistics, tables of counts, joins
and splits (docs/client.md#what-a-proxy-does). Each is one query (a few for ``describe``'s
``top`` values and for margins); only the answer comes back, reshaped with pandas
where OML's answer is a pandas object.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from epe.client._errors import Unsupported
from epe.client._sql import POSITION, ibis, md5

# The proxy (``_frame.DataFrame``) calls these with itself; they make new proxies with
# its own constructor, ``type(frame)._of``, so this module does not import it.
DataFrame = Any

QUANTILES = (0.25, 0.5, 0.75)


def _is_float(value: Any) -> bool:
    """An ``oml.Float`` column: numbers, not booleans."""
    dtype = value.type()
    return bool(dtype.is_numeric() and not dtype.is_boolean())


def _is_summable(value: Any) -> bool:
    """A Float or Boolean column (what ``sum`` and ``cumsum`` take, as pandas')."""
    return _is_float(value) or bool(value.type().is_boolean())


def _numeric(frame: DataFrame) -> list[str]:
    return [c for c, v in frame._cols.items() if _is_float(v)]


def _aggregate(frame: DataFrame, measures: dict[str, Any]) -> dict[str, Any]:
    """One row of aggregates over the frame's rows, by name."""
    if not measures:
        return {}
    row = frame._run(frame._expr().aggregate(**measures))
    return {name: row.column(name)[0].as_py() for name in row.column_names}


def _measure(value: Any, how: str) -> Any:
    if how == "median":
        return value.quantile(0.5)
    if how in ("sum", "mean") and value.type().is_boolean():
        return getattr(value.cast("int32").cast("int64"), how)()
    return getattr(value, how)()


def column_stats(frame: DataFrame, how: str, skipna: bool = True) -> pd.Series:
    """``how`` of each column that has it, as pandas' ``numeric_only``: Float columns
    (and Boolean ones for ``sum``); every column for ``count``, ``nunique``, ``min``,
    ``max``."""
    expr = frame._expr()
    if how in ("count", "nunique"):
        names = frame.columns
    elif how == "sum":
        names = [c for c, v in frame._cols.items() if _is_summable(v)]
    else:
        names = _numeric(frame)
    measures = {f"m{i}": _measure(expr[c], how) for i, c in enumerate(names)}
    if not skipna and how not in ("count", "nunique"):
        measures |= {f"n{i}": expr[c].isnull().any() for i, c in enumerate(names)}
    got = _aggregate(frame, measures)
    values = [np.nan if not skipna and got.get(f"n{i}") else got[f"m{i}"]
              for i in range(len(names))]
    if how in ("count", "nunique"):
        return pd.Series(values, index=names, dtype="int64")
    floats = [np.nan if v is None else float(v) for v in values]
    return pd.Series(floats, index=names, dtype="float64")


def moments(frame: DataFrame, how: str) -> pd.Series:
    """pandas' bias-corrected ``skew`` and ``kurtosis`` (Fisher's, 0 for a normal) of the
    Float columns, from central moments taken in one pass over the rows."""
    names = _numeric(frame)
    expr = frame._expr()
    whole = ibis().window()
    measures: dict[str, Any] = {}
    centred = expr.mutate(**{f"d{i}": expr[c] - expr[c].mean().over(whole)
                             for i, c in enumerate(names)})
    for i, c in enumerate(names):
        d = centred[f"d{i}"]
        measures |= {f"n{i}": centred[c].count(), f"s2_{i}": (d * d).sum(),
                     f"s3_{i}": (d * d * d).sum(), f"s4_{i}": (d * d * d * d).sum()}
    row = frame._run(centred.aggregate(**measures)) if measures else None
    out = []
    for i in range(len(names)):
        assert row is not None
        n, s2, s3, s4 = (row.column(k)[0].as_py() for k in
                         (f"n{i}", f"s2_{i}", f"s3_{i}", f"s4_{i}"))
        out.append(_skew(n, s2, s3) if how == "skew" else _kurtosis(n, s2, s4))
    return pd.Series(out, index=names, dtype="float64")


def _skew(n: int, s2: float | None, s3: float | None) -> float:
    if n < 3 or s2 is None or s3 is None:
        return np.nan
    m2, m3 = s2 / n, s3 / n
    if m2 == 0:
        return 0.0
    return float((n * (n - 1)) ** 0.5 / (n - 2) * m3 / m2 ** 1.5)


def _kurtosis(n: int, s2: float | None, s4: float | None) -> float:
    if n < 4 or s2 is None or s4 is None:
        return np.nan
    if s2 == 0:
        return 0.0
    numerator = n * (n + 1) * (n - 1) * s4
    denominator = (n - 2) * (n - 3) * s2 ** 2
    return float(numerator / denominator - 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))


# -- describe ---------------------------------------------------------------------------


def _described_columns(frame: DataFrame, include: Any, exclude: Any) -> list[str]:
    if include == "all":
        return frame.columns
    if include is None and exclude is None:
        numeric = _numeric(frame)
        return numeric or frame.columns
    kinds = {c: frame.dtypes[c] for c in frame._cols}
    return [c for c, k in kinds.items()
            if (include is None or k in include) and not (exclude and k in exclude)]


def describe(frame: DataFrame, include: Any = None, exclude: Any = None,
             percentiles: Sequence[float] | None = None) -> pd.DataFrame:
    """pandas' ``DataFrame.describe``, computed in the database."""
    names = _described_columns(frame, include, exclude)
    if not names:
        raise ValueError("no column to describe")
    quantiles = tuple(sorted(set(percentiles))) if percentiles is not None else QUANTILES
    if any(frame._cols[c].type().is_temporal() for c in names):
        raise Unsupported("describe of a Datetime column is not supported by epe's "
                                  "data proxies; describe the other columns, or .pull()")
    numeric = [c for c in names if _is_float(frame._cols[c])]
    other = [c for c in names if not _is_float(frame._cols[c])]
    expr = frame._expr()
    measures: dict[str, Any] = {}
    for i, c in enumerate(numeric):
        v = expr[c]
        measures |= {f"count{i}": v.count(), f"mean{i}": v.mean(), f"std{i}": v.std(),
                     f"min{i}": v.min(), f"max{i}": v.max()}
        measures |= {f"q{j}_{i}": v.quantile(q) for j, q in enumerate(quantiles)}
    for i, c in enumerate(other):
        measures |= {f"ocount{i}": expr[c].count(), f"unique{i}": expr[c].nunique()}
    got = _aggregate(frame, measures)
    labels = [f"{q * 100:g}%" for q in quantiles]
    stats: dict[str, dict[str, Any]] = {}
    for i, c in enumerate(numeric):
        stats[c] = {"count": float(got[f"count{i}"]), "mean": got[f"mean{i}"],
                    "std": got[f"std{i}"], "min": got[f"min{i}"],
                    **{label: got[f"q{j}_{i}"] for j, label in enumerate(labels)},
                    "max": got[f"max{i}"]}
    for i, c in enumerate(other):
        top, freq = _top(frame, c)
        stats[c] = {"count": got[f"ocount{i}"], "unique": got[f"unique{i}"],
                    "top": top, "freq": freq}
    rows = (["count", "unique", "top", "freq"] if other else ["count"]) \
        + (["mean", "std", "min", *labels, "max"] if numeric else [])
    out = pd.DataFrame({c: [stats[c].get(r, np.nan) for r in rows] for c in names},
                       index=rows)
    if not other:
        out = out.astype("float64")
    return out


def _top(frame: DataFrame, name: str) -> tuple[Any, Any]:
    """The most frequent value, ties going to the one seen first (as pandas picks it)."""
    expr = frame._expr().mutate(**{POSITION: ibis().row_number()})
    present = expr.filter(expr[name].notnull())
    counts = present.group_by(name).aggregate(freq=present.count(),
                                              first=present[POSITION].min())
    best = counts.order_by([ibis().desc("freq"), "first"]).limit(1)
    row = frame._run(best)
    if row.num_rows == 0:
        return np.nan, np.nan
    return row.column(name)[0].as_py(), row.column("freq")[0].as_py()


# -- running sums, correlations --------------------------------------------------------


def cumsum(frame: DataFrame, by: Any, ascending: bool) -> DataFrame:
    names = [c for c, v in frame._cols.items() if _is_summable(v)]
    order = frame._resolve([by] if isinstance(by, str) else list(by)) if by is not None else []
    base = frame._expr()
    # The sort keys as copies: the running sums take their columns' names.
    expr = base.mutate(**{POSITION: ibis().row_number()},
                       **{f"__epe_key{i}": base[c] for i, c in enumerate(order)})

    def keys(rel: Any) -> list[Any]:
        # Ties in ``by`` keep the proxy's order, as pandas' stable sort does.
        sort = [ibis().asc(rel[f"__epe_key{i}"]) if ascending
                else ibis().desc(rel[f"__epe_key{i}"]) for i in range(len(order))]
        return [*sort, rel[POSITION]]

    running = ibis().window(order_by=keys(expr), rows=(None, 0))
    sums = {}
    for c in names:
        v = expr[c].cast("int32").cast("int64") if expr[c].type().is_boolean() else expr[c]
        sums[c] = ibis().ifelse(v.isnull(), ibis().null(v.type()), v.sum().over(running))
    summed = expr.mutate(**sums)
    return type(frame)._of(frame, summed.order_by(keys(summed)).select(*names))


def corr(frame: DataFrame, method: str, min_periods: int, skipna: bool) -> pd.DataFrame:
    if method != "pearson":
        raise Unsupported(f"corr(method={method!r}) is not supported by epe's data "
                                  "proxies: Pearson's only")
    names = _numeric(frame)
    expr = frame._expr()
    measures: dict[str, Any] = {}
    for i, a in enumerate(names):
        measures[f"n{i}"] = expr[a].isnull().any()
        for j in range(i + 1, len(names)):
            measures[f"c{i}_{j}"] = expr[a].corr(expr[names[j]], how="pop")
            both = expr[a].notnull() & expr[names[j]].notnull()
            measures[f"p{i}_{j}"] = both.cast("int32").cast("int64").sum()
    got = _aggregate(frame, measures)
    matrix = np.eye(len(names))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            value = got[f"c{i}_{j}"]
            if value is None or got[f"p{i}_{j}"] < max(min_periods, 2) \
                    or (not skipna and (got[f"n{i}"] or got[f"n{j}"])):
                value = np.nan
            matrix[i, j] = matrix[j, i] = value
    return pd.DataFrame(matrix, index=names, columns=names)


# -- tables of counts and aggregates ------------------------------------------------------


def _names(frame: DataFrame, value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return frame._resolve([value])
    if isinstance(value, list | tuple):
        return frame._resolve(list(value))
    raise TypeError(f"{what} must be a column name or a list of them")


def _sorted_keys(keys: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Group keys in order, a missing value after the others (as OML lists None)."""
    return sorted(set(keys), key=lambda k: tuple((v is None, "" if v is None else v)
                                                 for v in k))


def _label(key: tuple[Any, ...]) -> str:
    return ",".join("None" if v is None else str(v) for v in key)


def crosstab(frame: DataFrame, index: Any, columns: Any, values: Any, aggfunc: Any,
             pivot: bool, margins: bool, dropna: bool, normalize: Any) -> Any:
    rows = _names(frame, index, "index")
    cols = _names(frame, columns, "columns")
    if not rows:
        raise ValueError("crosstab needs an index column")
    expr = frame._expr()
    if values is not None:
        how = _agg_name(aggfunc or "count")
        value = frame._resolve([values])[0]
        measure, label = _measure(expr[value], how), f"{how}({value})"
    else:
        measure, label = expr.count(), "count"
    grouped = expr.group_by([*rows, *cols]).aggregate(**{label: measure})
    if not pivot:
        return type(frame)._of(frame, grouped.order_by([*rows, *cols]))
    if not cols:
        raise ValueError("crosstab(pivot=True) needs columns")
    table = frame._run(grouped).to_pylist()
    return _pivot_counts(table, rows, cols, label, margins, normalize)


def _pivot_counts(records: list[dict[str, Any]], rows: list[str], cols: list[str],
                  label: str, margins: bool, normalize: Any) -> pd.DataFrame:
    row_keys = _sorted_keys([tuple(r[c] for c in rows) for r in records])
    col_keys = _sorted_keys([tuple(r[c] for c in cols) for r in records])
    cells = np.zeros((len(row_keys), len(col_keys)))
    where_row = {k: i for i, k in enumerate(row_keys)}
    where_col = {k: j for j, k in enumerate(col_keys)}
    for r in records:
        cells[where_row[tuple(r[c] for c in rows)], where_col[tuple(r[c] for c in cols)]] \
            += r[label] or 0
    row_totals, col_totals, total = cells.sum(axis=1), cells.sum(axis=0), cells.sum()
    kind = _normalization(normalize)
    if kind == "index":
        cells = cells / row_totals[:, None]
        margin_row = col_totals / total
    elif kind == "columns":
        cells = cells / col_totals[None, :]
        margin_row = col_totals / col_totals
    elif kind == "all":
        cells, margin_row = cells / total, col_totals / total
    else:
        margin_row = col_totals
    out = pd.DataFrame({c: [k[i] for k in row_keys] for i, c in enumerate(rows)})
    for j, key in enumerate(col_keys):
        out[f"{label}_({_label(key)})"] = cells[:, j]
    if margins:
        if kind not in ("index",):
            all_col = row_totals / (total if kind == "all" else 1)
            out[f"{label}_(All)"] = all_col if kind != "columns" else row_totals / total
        if kind != "columns":
            extra = {rows[0]: "All", **{c: None for c in rows[1:]}}
            values = list(margin_row) + ([1.0 if kind == "all" else total]
                                         if kind not in ("index",) else [])
            extra |= dict(zip(out.columns[len(rows):], values, strict=False))
            out = pd.concat([out, pd.DataFrame([extra])], ignore_index=True)
    return out


def _normalization(normalize: Any) -> str | None:
    # True == 1 and False == 0 in Python: the booleans first.
    if normalize is True or normalize == "all":
        return "all"
    if normalize is False or normalize is None:
        return None
    if normalize in (0, "index"):
        return "index"
    if normalize in (1, "columns"):
        return "columns"
    raise ValueError("normalize must be False, True, 'all', 0, 'index', 1 or 'columns'")


AGGREGATES = ("count", "sum", "mean", "median", "min", "max", "std", "var", "nunique")


def _agg_name(aggfunc: Any) -> str:
    name = aggfunc if isinstance(aggfunc, str) else getattr(aggfunc, "__name__", None)
    if name not in AGGREGATES:
        raise Unsupported(f"aggfunc {aggfunc!r} is not supported by epe's data "
                                  f"proxies: use one of {', '.join(AGGREGATES)}")
    return str(name)


def pivot_table(frame: DataFrame, index: Any, columns: Any, values: Any, aggfunc: Any,
                margins: bool, dropna: bool, fill_value: Any) -> pd.DataFrame:
    rows = _names(frame, index, "index")
    cols = _names(frame, columns, "columns")
    if values is None:
        targets = sorted(c for c in _numeric(frame) if c not in rows and c not in cols)
    else:
        targets = _names(frame, values, "values")
    funcs = [_agg_name(f) for f in (aggfunc if isinstance(aggfunc, list | tuple)
                                    else [aggfunc])]
    expr = frame._expr()
    measures = {f"{f}({v})": _measure(expr[v], f) for f in funcs for v in targets}

    def grouped(keys: list[str]) -> list[dict[str, Any]]:
        rel = expr.group_by(keys).aggregate(**measures) if keys \
            else expr.aggregate(**measures)
        return list(frame._run(rel).to_pylist())

    cells = grouped([*rows, *cols])
    row_keys = _sorted_keys([tuple(r[c] for c in rows) for r in cells])
    col_keys = _sorted_keys([tuple(r[c] for c in cols) for r in cells])
    by_cell = {(tuple(r[c] for c in rows), tuple(r[c] for c in cols)): r for r in cells}
    by_row = {tuple(r[c] for c in rows): r for r in grouped(rows)} if margins else {}
    by_col = {tuple(r[c] for c in cols): r for r in grouped(cols)} if margins and cols else {}
    overall = grouped([])[0] if margins else {}
    out: dict[str, list[Any]] = {c: [k[i] for k in row_keys] for i, c in enumerate(rows)}
    for measure in measures:
        for key in col_keys:
            out[f"{measure}_({_label(key)})" if cols else measure] = [
                by_cell.get((r, key), {}).get(measure) for r in row_keys]
        if margins and cols:
            out[f"{measure}_(All)"] = [by_row[r][measure] for r in row_keys]
    table = pd.DataFrame(out)
    if margins:
        extra: dict[str, Any] = {rows[0]: "All", **{c: None for c in rows[1:]}}
        for measure in measures:
            for key in col_keys:
                name = f"{measure}_({_label(key)})" if cols else measure
                extra[name] = (by_col[key] if cols else overall)[measure]
            if cols:
                extra[f"{measure}_(All)"] = overall[measure]
        table = pd.concat([table, pd.DataFrame([extra])], ignore_index=True)
    value_columns = table.columns[len(rows):]
    table[value_columns] = table[value_columns].astype("float64")
    if fill_value is not None:
        table[value_columns] = table[value_columns].fillna(fill_value)
    return table


# -- joins --------------------------------------------------------------------------------


def merge(left: DataFrame, right: DataFrame, on: Any, left_on: Any, right_on: Any,
          how: str, suffixes: tuple[str, ...]) -> DataFrame:
    if not isinstance(right, type(left)):
        raise TypeError("merge takes another proxy")
    if right._connection is not left._connection:
        raise ValueError("merge: the proxies belong to different sessions")
    if how not in ("inner", "left", "right", "outer", "full"):
        raise ValueError("how must be 'inner', 'left', 'right' or 'outer'")
    if len(suffixes) != 2:
        raise ValueError("suffixes must be two strings")
    keys = _names(left, on, "on")
    lkeys = keys or _names(left, left_on, "left_on")
    rkeys = _names(right, keys, "on") if keys else _names(right, right_on, "right_on")
    if len(lkeys) != len(rkeys):
        raise ValueError("left_on and right_on must name as many columns")
    lname = {c: c if c in keys else c + suffixes[0] for c in left.columns}
    rname = {c: f"__epe_key_{c}" if c in rkeys and keys else c + suffixes[1]
             for c in right.columns}
    lexpr = left._expr().rename({new: old for old, new in lname.items()})
    rexpr = right._expr().rename({new: old for old, new in rname.items()}).view()
    if lkeys:
        predicates = [lexpr[lname[a]] == rexpr[rname[b]] for a, b in zip(lkeys, rkeys,
                                                                          strict=True)]
        joined = lexpr.join(rexpr, predicates, how="outer" if how == "full" else how)
    else:
        joined = lexpr.cross_join(rexpr)
    selected: dict[str, Any] = {}
    for c in left.columns:
        if c in keys:
            mine, theirs = joined[lname[c]], joined[rname[c]]
            selected[c] = theirs if how == "right" else \
                mine.coalesce(theirs) if how in ("outer", "full") else mine
        else:
            selected[lname[c]] = joined[lname[c]]
    selected |= {rname[c]: joined[rname[c]] for c in right.columns if c not in rkeys or not keys}
    return type(left)._of(left, joined.select(**selected), sources=left._sources | right._sources,
                         keep=right._keep)


# -- splits -------------------------------------------------------------------------------


def split(frame: DataFrame, ratio: Sequence[float], seed: int,
          hash_cols: Sequence[str] | None, strata_cols: Sequence[str] | None,
          use_hash: bool) -> list[DataFrame]:
    """Disjoint parts by a hash of each row (or of ``hash_cols``), salted by ``seed``
    (``use_hash=False``: by a fresh random salt): the same split every time the parts are
    queried. With ``strata_cols`` each stratum is cut in the proportions exactly."""
    parts = [float(r) for r in ratio]
    if not parts or any(r <= 0 for r in parts) or sum(parts) > 1 + 1e-9:
        raise ValueError("ratio must be positive fractions adding up to at most 1")
    expr = frame._expr()
    hashed = _names(frame, hash_cols, "hash_cols") or frame.columns
    salt = str(seed) if use_hash else secrets.token_hex(8)
    pieces = [ibis().literal(salt)]
    for c in hashed:
        pieces += [ibis().literal("|"), expr[c].cast("string").fill_null("\x01")]
    text = pieces[0].concat(*pieces[1:])
    digest = md5()(text).substr(0, 8)
    bounds = list(np.cumsum(parts))
    strata = _names(frame, strata_cols, "strata_cols")
    if strata:
        keyed = expr.mutate(__epe_h=digest, **{POSITION: ibis().row_number()})
        place = ibis().row_number().over(group_by=[keyed[c] for c in strata],
                                         order_by=[keyed["__epe_h"], keyed[POSITION]])
        size = keyed.count().over(group_by=[keyed[c] for c in strata])
        ranked = keyed.mutate(__epe_f=place.cast("float64") / size.cast("float64"))
        at = ranked["__epe_f"]
        out, low = [], 0.0
        for high in bounds:
            part = ranked.filter((at >= low) & (at < high - 1e-12 if high < 1 - 1e-9
                                                else at < 2))
            out.append(type(frame)._of(frame, part.select(*frame.columns)))
            low = high
        return out
    out, low_hex = [], None
    for high in bounds:
        high_hex = None if high >= 1 - 1e-9 else f"{int(high * 16 ** 8):08x}"
        condition = None
        if low_hex is not None:
            condition = digest >= low_hex
        if high_hex is not None:
            below = digest < high_hex
            condition = below if condition is None else condition & below
        part = expr if condition is None else expr.filter(condition)
        out.append(type(frame)._of(frame, part))
        low_hex = high_hex
    return out
