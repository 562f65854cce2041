"""Matplotlib's settings are back to the worker's baseline before every invocation, however
the function wrote them (runner/worker/graphics.py restores them only after a write, so
every way of writing must be seen), even by binding ``matplotlib.rcParams`` to another
object."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib
import matplotlib.pyplot as plt
import pytest

from epe.runner.worker.graphics import FigureCapture

SIZE = (6.4, 4.8)


def item(_: object) -> None:
    matplotlib.rcParams["lines.linewidth"] = 7.0


def update(_: object) -> None:
    matplotlib.rcParams.update({"lines.linewidth": 7.0, "axes.grid": True})


def setdefault(_: object) -> None:
    matplotlib.rcParams.setdefault("lines.linewidth", 7.0)  # present: no change, no harm
    matplotlib.rcParams["axes.grid"] = True


def rc(_: object) -> None:
    matplotlib.rc("lines", linewidth=7.0)


def style(_: object) -> None:
    plt.style.use("ggplot")


def defaults(_: object) -> None:
    matplotlib.rcdefaults()  # the library's defaults, not the worker's baseline


LEFT_OPEN: list[object] = []


def context_left_open(_: object) -> None:
    # A context entered and never exited (kept, or collecting it would exit it): its
    # settings stay written.
    context = matplotlib.rc_context({"lines.linewidth": 7.0})
    context.__enter__()
    LEFT_OPEN.append(context)


def rebound(_: object) -> None:
    # The module's name bound to another object (pyplot keeps the one it imported).
    matplotlib.rcParams = matplotlib.RcParams({"lines.linewidth": 7.0})


@pytest.mark.parametrize("write", [item, update, setdefault, rc, style, defaults,
                                   context_left_open, rebound])
def test_every_way_of_writing_a_setting_is_undone(write: Callable[[object], None]) -> None:
    capture = FigureCapture(72, SIZE, 1 << 20)
    capture.begin(False)
    params = matplotlib.rcParams
    baseline = dict(dict.items(params))
    write(None)
    assert dict(dict.items(matplotlib.rcParams)) != baseline
    capture.end()
    capture.begin(False)
    assert matplotlib.rcParams is params
    assert dict(dict.items(matplotlib.rcParams)) == baseline
    assert tuple(matplotlib.rcParams["figure.figsize"]) == SIZE
    assert matplotlib.rcParams["figure.dpi"] == 72


def test_reading_settings_writes_nothing_and_a_write_is_undone_once() -> None:
    capture = FigureCapture(72, SIZE, 1 << 20)
    capture.begin(False)
    assert matplotlib.rcParams["lines.linewidth"] != 7.0
    plt.figure()
    plt.plot([1, 2])
    capture.end()
    capture.begin(False)
    assert not capture._written  # drawing reads settings; it writes none
    copy = matplotlib.rcParams.copy()
    copy["lines.linewidth"] = 7.0
    assert not capture._written  # a copy is not the settings
    matplotlib.rcParams["lines.linewidth"] = 7.0
    assert capture._written
    capture.begin(False)
    assert matplotlib.rcParams["lines.linewidth"] != 7.0 and not capture._written
