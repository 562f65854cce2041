"""Results as OML4Py returns them (docs/client.md), from ``resultFormat: pickle``.

The server sends each invocation's value as base64 cloudpickle (with graphics,
a ``(value, [png bytes, ...])`` pair): one for do-eval and table-apply, one per
chunk for row-apply (the DataFrames are concatenated here), an object keyed by
group for group-apply, a list for index-apply. The client trusts its server:
it unpickles what the server sends.
"""

from __future__ import annotations

import base64
import html
from typing import Any, Literal

import cloudpickle
import pandas as pd

Kind = Literal["do_eval", "table_apply", "row_apply", "group_apply", "index_apply"]


class DataImage:
    """A value with the images its function drew (``graphics=True``).

    ``.dat`` is the function's return value, ``.img`` the PNGs (bytes), one per
    figure. Jupyter shows the images inline, then the value.
    """

    def __init__(self, dat: Any, img: list[bytes]) -> None:
        self.dat = dat
        self.img = list(img)

    def __repr__(self) -> str:
        return f"DataImage(dat={self.dat!r}, img=[{len(self.img)} PNG image(s)])"

    def _repr_png_(self) -> bytes | None:
        return self.img[0] if self.img else None

    def _repr_html_(self) -> str:
        images = "".join(f'<img src="data:image/png;base64,{base64.b64encode(p).decode()}"/>'
                         for p in self.img)
        value = getattr(self.dat, "_repr_html_", None)
        shown = value() if callable(value) else f"<pre>{html.escape(repr(self.dat))}</pre>"
        return f"<div>{images}{shown}</div>"

    def _ipython_display_(self) -> None:
        """In IPython and Jupyter: each image, then the value."""
        try:
            from IPython.display import Image, display
        except ImportError:
            print(repr(self))
            return
        for png in self.img:
            display(Image(data=png, format="png"))
        if self.dat is not None:
            display(self.dat)


def unpickle(text: str) -> Any:
    """A value from its base64 cloudpickle."""
    return cloudpickle.loads(base64.b64decode(text))


def _one(text: str, graphics: bool) -> Any:
    value = unpickle(text)
    if graphics:
        dat, images = value
        return DataImage(dat, images)
    return value


def decode(kind: str, result: Any, graphics: bool) -> Any:
    """The Python value of a pickled result, shaped as OML4Py shapes it."""
    if kind in ("do_eval", "table_apply"):
        return _one(result, graphics)
    if kind == "group_apply":
        return {key: _one(text, graphics) for key, text in result.items()}
    values = [_one(text, graphics) for text in result]
    if kind == "row_apply" and not graphics and values \
            and all(isinstance(v, pd.DataFrame) for v in values):
        return pd.concat(values, ignore_index=True)
    return values
