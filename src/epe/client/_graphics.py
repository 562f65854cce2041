"""``oml.graphics``: OML's ``hist`` and ``boxplot`` of a proxy, their numbers computed
in the database and drawn here with matplotlib (docs/client.md#what-a-proxy-does).

``hist`` counts each bin's rows in one query; ``boxplot`` takes each column's quartiles,
mean, whiskers' ends and the outliers beyond them. matplotlib then draws from those
numbers (``Axes.hist`` with weights, ``Axes.bxp``), as it would from the rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from epe.client._errors import Unsupported
from epe.client._frame import DataFrame, Float, Series
from epe.client._sql import ibis

__all__ = ["boxplot", "hist"]


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.gca()


def hist(x: Series, bins: int = 10, range: tuple[float, float] | None = None,
         ax: Any = None, **kwargs: Any) -> Any:
    """A histogram of a Float column: ``bins`` equal bins from its min to its max (or
    ``range``), as ``matplotlib.pyplot.hist`` draws the pulled values."""
    if not isinstance(x, Float):
        raise TypeError("oml.graphics.hist takes a Float column of a proxy, e.g. "
                        "oml.graphics.hist(IRIS['SEPAL_LENGTH'])")
    if not isinstance(bins, int) or bins < 1:
        raise Unsupported("oml.graphics.hist with bins other than a number of bins "
                                  "is not supported by epe's data proxies")
    value = x._value
    if range is None:
        low, high = (x._scalar(a) for a in (value.min(), value.max()))
    else:
        low, high = range
    if low is None:  # no values
        low, high = 0.0, 1.0
    edges = np.linspace(float(low), float(high), bins + 1)
    if high == low:
        edges = np.linspace(float(low) - 0.5, float(high) + 0.5, bins + 1)
    # A value's bin is how many inner edges it reaches: [edge, next edge), the last bin
    # holding its right edge too, exactly as numpy and matplotlib cut them.
    bucket = sum(((value >= float(e)).cast("int32").cast("int64") for e in edges[1:-1]),
                 ibis().literal(0))
    inside = (value >= float(edges[0])) & (value <= float(edges[-1]))
    rel = x._rel.filter(inside).mutate(__epe_bin=bucket)
    counts = rel.group_by("__epe_bin").aggregate(n=rel.count())
    weights = np.zeros(bins)
    for row in x._run(counts).to_pylist():
        weights[int(row["__epe_bin"])] = row["n"]
    return _axes(ax).hist(edges[:-1], bins=edges, weights=weights, **kwargs)


def boxplot(x: DataFrame | Series, notch: bool = False, sym: str | None = None,
            vert: bool | None = None, whis: float = 1.5, showmeans: bool = False,
            meanline: bool = False, patch_artist: bool = False, labels: Any = None,
            ax: Any = None, **kwargs: Any) -> Any:
    """Box plots of the Float columns of a proxy (or of one column), as
    ``matplotlib.pyplot.boxplot`` draws them from the pulled values."""
    columns = x._frame().columns if isinstance(x, Series) else x.columns
    frame = x._frame() if isinstance(x, Series) else x
    if not isinstance(whis, int | float):
        raise Unsupported("oml.graphics.boxplot with whis other than a number is "
                                  "not supported by epe's data proxies")
    stats = [_box(frame, c, float(whis), notch) for c in columns]
    names = list(labels) if labels is not None else columns
    for box, label in zip(stats, names, strict=False):
        box["label"] = label
    options: dict[str, Any] = {"showmeans": showmeans, "meanline": meanline,
                               "patch_artist": patch_artist, "shownotches": notch, **kwargs}
    if vert is not None:
        options["vert"] = vert
    if sym == "":
        options["showfliers"] = False
    return _axes(ax).bxp(stats, **options)


def _box(frame: DataFrame, name: str, whis: float, notch: bool) -> dict[str, Any]:
    expr = frame._expr()
    v = expr[name]
    got = frame._run(expr.aggregate(q1=v.quantile(0.25), med=v.quantile(0.5),
                                    q3=v.quantile(0.75), mean=v.mean(), n=v.count()))
    q1, med, q3, mean, n = (got.column(k)[0].as_py() for k in ("q1", "med", "q3", "mean", "n"))
    if not n:
        raise ValueError(f"column {name!r} has no values to draw")
    low, high = q1 - whis * (q3 - q1), q3 + whis * (q3 - q1)
    ends = frame._run(expr.aggregate(lo=v.min(where=v >= low), hi=v.max(where=v <= high)))
    fliers = frame._run(expr.filter((v < low) | (v > high)).select(v)).column(0)
    box = {"q1": q1, "med": med, "q3": q3, "mean": mean,
           "whislo": ends.column("lo")[0].as_py(), "whishi": ends.column("hi")[0].as_py(),
           "fliers": np.asarray(fliers.to_pylist(), dtype=float)}
    if notch:
        half = 1.57 * (q3 - q1) / np.sqrt(n)
        box["cilo"], box["cihi"] = med - half, med + half
    return box
