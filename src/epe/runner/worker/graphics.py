"""Capturing the figures a function draws as PNG images (docs/graphics.md; in the worker).

``plt.show()`` is replaced: it captures every open figure, in number order, and
closes it, so each call makes its images (Oracle's ``RandomRedDots`` shows twice
and gets two). Figures still open when the function returns are captured too.
Between invocations every figure is closed and matplotlib's settings restored,
flag or no flag, so nothing leaks from one call into the next.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import orjson

from epe.errors import OutputTooLarge


class FigureCapture:
    def __init__(self, dpi: int, size: tuple[float, float], limit: int) -> None:
        import matplotlib
        import matplotlib.pyplot as plt
        from matplotlib._pylab_helpers import Gcf

        self._mpl: Any = matplotlib  # rcParams is typed per key; we copy it whole
        self._plt: Any = plt
        # pyplot's open figures, by number: whether there are any is a dict's truth,
        # where ``get_fignums()`` sorts them into a new list (twice per invocation).
        self._open: dict[int, Any] = Gcf.figs
        self.dpi = dpi
        self.size = size
        self.limit = limit
        self.enabled = False
        self.images: list[dict[str, Any]] = []
        self.used = 0  # bytes of images so far in this invocation
        self._settings: Any = self._baseline()
        self._written = True  # the first invocation starts from the baseline too
        self._params = matplotlib.rcParams  # the object every module of matplotlib holds
        _watch(self._params, self._note_written)
        # Resolve the backend now: pyplot does it lazily at the first figure and
        # then sets ``show.__signature__``, which a replaced ``show`` must allow.
        plt.close(plt.figure())

        def show(*args: Any, **kwargs: Any) -> None:
            self._capture_open()

        plt.show = show

    def _baseline(self) -> dict[str, Any]:
        self._mpl.rcParams.update({"figure.figsize": self.size, "figure.dpi": self.dpi,
                                   "savefig.dpi": self.dpi})
        # The stored values themselves, not what rcParams' reads make of them, to be put
        # back as they are.
        return dict(dict.items(self._mpl.rcParams))

    def begin(self, enabled: bool) -> None:
        """Before an invocation: no figure open, default settings, no images."""
        if self._open:
            self._plt.close("all")
        if self._written or self._mpl.rcParams is not self._params:
            # The stored values back as they were, without validating them again (as
            # rcParams' own context manager restores them, and without noting a write);
            # the module's name back on the watched object, were it bound to another.
            self._mpl.rcParams = self._params
            dict.clear(self._params)
            dict.update(self._params, self._settings)
            self._written = False
        self.enabled = enabled
        self.images = []
        self.used = 0  # the limit is per call; the batch checks the total

    def _note_written(self) -> None:
        self._written = True

    def end(self) -> list[dict[str, Any]]:
        """After an invocation: capture what is still open, closing it."""
        self._capture_open()
        images, self.images = self.images, []
        return images

    def _capture_open(self) -> None:
        if not self._open:
            return
        for number in self._plt.get_fignums():
            figure = self._plt.figure(number)
            if self.enabled:
                self.images.append(self._image(figure))
            self._plt.close(figure)

    def _image(self, figure: Any) -> dict[str, Any]:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=self.dpi)
        png = base64.b64encode(buffer.getvalue()).decode("ascii")
        self.used += len(png)
        if self.used > self.limit:
            raise OutputTooLarge(f"Output exceeds maximum length {self.limit} bytes (the "
                                 "function's images alone are over it)")
        return {"IMAGE": png, "TITLE": title(figure), "ID": len(self.images) + 1}


def _watch(params: Any, written: Callable[[], None]) -> None:
    """Have matplotlib's ``rcParams`` call ``written`` whenever a setting is written.

    Every write goes through ``_set`` (``params[key] = value``, ``update``, styles),
    ``_update_raw`` (``rc_context`` restoring) or ``_ensure_has_backend``: matplotlib
    deprecated writing the dict directly. Knowing this, ``begin`` restores the settings
    only after a call wrote one, where comparing all 339 of them after every call cost
    3 to 5 us, a tenth of a small group's whole cost in the worker.
    """
    base = type(params)

    class Watched(base):  # type: ignore[valid-type,misc]
        # Copies (``rcParams.copy()`` makes one of its own class) are not the settings.
        def _set(self, key: str, val: Any) -> None:
            if self is params:
                written()
            base._set(self, key, val)

        def _update_raw(self, other_params: Any) -> None:
            if self is params:
                written()
            base._update_raw(self, other_params)

        def _ensure_has_backend(self) -> None:
            if self is params:
                written()
            base._ensure_has_backend(self)

    params.__class__ = Watched


def title(figure: Any) -> str | None:
    """The figure's suptitle, else its single axes' title, else ``None``."""
    suptitle = figure.get_suptitle()
    if suptitle:
        return str(suptitle)
    if len(figure.axes) == 1 and figure.axes[0].get_title():
        return str(figure.axes[0].get_title())
    return None


def entry(images: list[dict[str, Any]], data: bytes, time: int | None,
          as_list: bool) -> bytes:
    """The images of one invocation with its value (``DATA``, a JSON string).

    ``as_list``: do-eval and table-apply always give a list; the others give one
    image object, or a list where the invocation drew several.
    """
    if not images:
        images = [{"IMAGE": None, "TITLE": None, "ID": 1}]
    text = data.decode()
    shaped = [{"IMAGE": i["IMAGE"], "DATA": text, "TITLE": i["TITLE"], "ID": i["ID"],
               **({"TIME": time} if time is not None else {})} for i in images]
    return orjson.dumps(shaped if as_list or len(shaped) > 1 else shaped[0])
