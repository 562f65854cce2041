"""Oracle's example functions that more than one test runs, one copy each: the demo's
where ``epe demo`` loads it, here otherwise."""

from __future__ import annotations

import hashlib
import linecache
from collections.abc import Callable
from typing import Any

from epe.demo import SCRIPTS

# Oracle's RandomRedDots, as its do-eval documentation runs it and `epe demo` loads it.
RANDOM_RED_DOTS = SCRIPTS["RandomRedDots"][1]

# Oracle's lab: fit a linear model in table-apply and keep it in a datastore.
BUILD_LM = (
    "def build_lm(dat, dsname):\n"
    "    import oml\n"
    "    from sklearn.linear_model import LinearRegression\n"
    "    regr = LinearRegression()\n"
    '    regr.fit(dat[["SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"]], dat["SEPAL_LENGTH"])\n'
    "    oml.ds.save(objs={'regr': regr}, name=dsname, overwrite=True)\n"
    "    return {'coef': [float(c) for c in regr.coef_], 'intercept': float(regr.intercept_)}\n")


def notebook_function(source: str) -> Callable[..., Any]:
    """The function ``source`` defines, defined as a notebook cell defines it: its source
    kept in ``linecache`` under the cell's name (as IPython keeps a cell's), where
    ``inspect.getsource``, and so the client, reads it."""
    cell = f"<cell-{hashlib.sha256(source.encode()).hexdigest()[:12]}>"
    linecache.cache[cell] = (len(source), None, source.splitlines(keepends=True), cell)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, cell, "exec"), namespace)
    [function] = [v for k, v in namespace.items() if callable(v) and not k.startswith("__")]
    return function  # type: ignore[no-any-return]
