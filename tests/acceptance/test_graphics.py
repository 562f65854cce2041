"""Graphics (docs/graphics.md) over HTTP: ``graphicsFlag`` and
``oml_graphics_flag`` on every run endpoint, sync and async; ``plt.show()`` and
figures left open; OML's image shapes, titles and ids; image size and resolution
settings; no figure leaking between invocations; printed output per invocation;
images counting toward the output limit.

Every image is decoded and checked: a real PNG written by matplotlib, of the size
the settings give, with more than one colour in it."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image  # matplotlib's own dependency: it writes PNGs through Pillow's reader

from tests.oracle_examples import RANDOM_RED_DOTS
from tests.serverproc import API, API1, EpeServer, assert_error, iris_csv, put_table, wait_for

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_KEYS = {"IMAGE", "DATA", "TITLE", "ID"}
DEFAULT_DPI, DEFAULT_SIZE = 100, (640, 480)  # the settings' defaults: 6.4 x 4.8 in at 100 DPI

RED_DOTS_DATA = [{"id": i, "val": i / 100} for i in range(1, 10)]

PLT = "import matplotlib.pyplot as plt\n"
NO_FIGURE = "def f():\n    return 'nothing drawn'\n"
ONE_FIGURE = PLT + ("def f():\n    plt.plot([1, 3, 2], color='tab:blue')\n"
                    "    plt.title('one')\n    plt.show()\n    return 1\n")


# -- helpers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def c(server: EpeServer) -> Iterator[httpx.Client]:
    """One user on the shared server, with IRIS and a small table NUMS."""
    _user, client = server.new_client()
    with client:
        put_table(client, "IRIS", iris_csv())
        put_table(client, "NUMS", "G,X\na,1\nb,2\na,3\nb,4\nc,5\n")
        yield client






def ok(r: httpx.Response) -> Any:
    """The ``result`` of a 200 answer."""
    assert r.status_code == 200, r.text[:2000]
    body = r.json()
    assert set(body) == {"result"}, body
    return body["result"]


def run(c: httpx.Client, endpoint: str, source: str, **body: Any) -> httpx.Response:
    """A sync run of an inline function."""
    return c.post(f"{API}/{endpoint}", json={"script": source, **body})


def graphics(c: httpx.Client, endpoint: str, source: str, **body: Any) -> Any:
    return ok(run(c, endpoint, source, graphicsFlag=True, **body))


def submit(c: httpx.Client, path: str, body: dict[str, Any]) -> str:
    """POST an async run; the job's URL."""
    r = c.post(path, json={**body, "asyncFlag": True})
    assert r.status_code == 201, r.text
    return str(r.headers["Location"])


def job_answer(c: httpx.Client, url: str, timeout: float = 60) -> httpx.Response:
    """Poll the job until it answers 302, then fetch its result."""
    def ended() -> bool:
        r = c.get(url)
        assert r.status_code in (202, 302), r.text
        return r.status_code == 302
    wait_for(ended, timeout)
    return c.get(url + "/result")


def job_log(c: httpx.Client, url: str) -> str:
    r = c.get(url + "/log")
    assert r.status_code == 200, r.text
    return str(r.json()["result"])


def png(b64: Any, size: tuple[int, int] = DEFAULT_SIZE,
        dpi: int = DEFAULT_DPI) -> np.ndarray:
    """Decode an ``IMAGE``: a real PNG from matplotlib, ``size`` pixels, not blank.

    Returns its pixels as an RGB array."""
    assert isinstance(b64, str) and b64, b64
    raw = base64.b64decode(b64, validate=True)
    assert raw.startswith(PNG_SIGNATURE)
    assert 1_000 < len(raw) < 5_000_000, len(raw)
    image = Image.open(io.BytesIO(raw))
    image.load()  # decodes every chunk: a truncated or corrupt PNG fails here
    assert image.format == "PNG"
    assert image.size == size, (image.size, size)
    # Written by matplotlib's Agg backend (its savefig metadata), not re-encoded by hand,
    # and at the configured resolution (the pHYs chunk).
    assert image.info.get("Software", "").startswith("Matplotlib"), image.info
    assert [round(d) for d in image.info["dpi"]] == [dpi, dpi], image.info
    pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1, "the image is one colour"
    return pixels


def red_pixels(pixels: np.ndarray) -> int:
    r, g, b = (pixels[..., i].astype(int) for i in range(3))
    return int(((r > 200) & (g < 80) & (b < 80)).sum())


def blue_pixels(pixels: np.ndarray) -> int:
    r, b = pixels[..., 0].astype(int), pixels[..., 2].astype(int)
    return int(((b > 150) & (r < 100)).sum())


def assert_image_entry(entry: Any, data: Any, title: str | None, image_id: int = 1,
                       time: int | None = None, **size: Any) -> np.ndarray:
    """One image object (with ``TIME`` for index-apply); its pixels."""
    assert isinstance(entry, dict), entry
    keys = IMAGE_KEYS | ({"TIME"} if time is not None else set())
    assert set(entry) == keys, entry.keys()
    assert isinstance(entry["DATA"], str)
    assert json.loads(entry["DATA"]) == data
    assert entry["TITLE"] == title
    assert entry["ID"] == image_id and not isinstance(entry["ID"], bool)
    if time is not None:
        assert entry["TIME"] == time and not isinstance(entry["TIME"], bool)
    return png(entry["IMAGE"], **size)


def blank_entry(data: Any, time: int | None = None) -> dict[str, Any]:
    """The entry of an invocation that drew nothing."""
    return {"IMAGE": None, "DATA": json.dumps(data, separators=(",", ":")), "TITLE": None,
            "ID": 1, **({"TIME": time} if time is not None else {})}


# -- Oracle's examples --------------------------------------------------------------


def test_random_red_dots_oracle_example_verbatim(c: httpx.Client) -> None:
    """OML's do-eval example 1: two plt.show() calls give two images, DATA the 9 records."""
    r = c.post(f"{API}/scripts", json={"name": "RandomRedDots", "script": RANDOM_RED_DOTS,
                                       "overwrite": True})
    assert r.status_code == 201, r.text
    r = c.post(f"{API1}/do-eval/RandomRedDots", content='{"graphicsFlag":true, "service":"LOW"}',
               headers={"Content-Type": "application/json", "Accept": "application/json"})
    result = ok(r)
    assert isinstance(result, list) and len(result) == 2, result
    first, second = (assert_image_entry(e, RED_DOTS_DATA, "Random Red Dots", image_id=i)
                     for i, e in enumerate(result, 1))
    assert result[0]["DATA"] == result[1]["DATA"]
    # Red dots, and more of them on the first figure (100 dots) than the second (10).
    assert red_pixels(first) > red_pixels(second) > 50


def test_random_red_dots_without_the_flag_is_the_plain_value(c: httpx.Client) -> None:
    assert ok(run(c, "do-eval", RANDOM_RED_DOTS, graphicsFlag=False)) == RED_DOTS_DATA
    assert ok(run(c, "do-eval", RANDOM_RED_DOTS)) == RED_DOTS_DATA


def test_oml_graphics_flag_in_parameters(c: httpx.Client) -> None:
    params = json.dumps({"oml_graphics_flag": True, "num_dots_1": 50})
    result = ok(run(c, "do-eval", RANDOM_RED_DOTS, parameters=params))
    assert [e["ID"] for e in result] == [1, 2]
    for e in result:
        assert_image_entry(e, RED_DOTS_DATA, "Random Red Dots", e["ID"])
    # The flag in parameters is a control argument: off means no images.
    params = json.dumps({"oml_graphics_flag": False})
    assert ok(run(c, "do-eval", RANDOM_RED_DOTS, parameters=params)) == RED_DOTS_DATA


def test_pandas_density_plot_through_table_apply(c: httpx.Client) -> None:
    """OML's table-apply example shape: a pandas plot of IRIS, captured without show()."""
    source = (PLT + "def f(dat):\n"
              "    dat.drop(columns='SPECIES').plot(kind='density', title='Iris density')\n"
              "    return 'hello world'\n")
    result = graphics(c, "table-apply", source, input="select * from IRIS",
                      parameters='{"oml_input_type": "pandas.DataFrame"}')
    assert isinstance(result, list) and len(result) == 1, result
    assert result[0]["DATA"] == '"hello world"'  # the value as a JSON string (OML)
    assert_image_entry(result[0], "hello world", "Iris density")


def test_seaborn_histogram_through_index_apply(c: httpx.Client) -> None:
    """OML's index-apply example 2: keys "0" and "1", TIME 1 and 2, DATA the index."""
    source = ("import numpy as np\nimport seaborn as sns\n" + PLT +
              "def f(index):\n"
              "    rng = np.random.default_rng(index)\n"
              "    ax = sns.histplot(rng.normal(size=300))\n"
              "    ax.set_title(f'Title {index}')\n"
              "    plt.show()\n"
              "    return index\n")
    result = graphics(c, "index-apply", source, times=2)
    assert isinstance(result, dict) and list(result) == ["0", "1"], result
    for key, time in (("0", 1), ("1", 2)):
        assert result[key]["DATA"] == str(time)
        assert_image_entry(result[key], time, f"Title {time}", time=time)


def test_per_group_histogram_through_group_apply(c: httpx.Client) -> None:
    source = (PLT + "def f(dat):\n"
              "    species = dat['SPECIES'][0]\n"
              "    plt.hist(dat['PETAL_LENGTH'], bins=10, color='tab:blue')\n"
              "    plt.title(species)\n"
              "    return int(dat.shape[0])\n")
    result = graphics(c, "group-apply", source, input="select * from IRIS",
                      groupBy="species", orderBy="PETAL_LENGTH")
    assert isinstance(result, dict)
    assert sorted(result) == ["setosa", "versicolor", "virginica"], result.keys()
    for species, entry in result.items():
        pixels = assert_image_entry(entry, 50, species)
        assert blue_pixels(pixels) > 500  # the bars are drawn


# -- every endpoint, sync and async ---------------------------------------------------


DRAW = "    plt.figure()\n    plt.plot([1, 3, 2], color='tab:blue')\n    plt.title('drawn')\n"
ENDPOINTS: dict[str, tuple[dict[str, Any], Any]] = {
    # endpoint: (request body, expected shape: a list of DATA, or {key: DATA or (DATA, TIME)})
    "do-eval": ({"script": PLT + "def f(k=7):\n" + DRAW + "    plt.show()\n    return k\n"},
                [7]),
    "table-apply": ({"script": PLT + "def f(d):\n" + DRAW + "    return int(d['X'].sum())\n",
                     "input": "select * from NUMS"}, [15]),
    "row-apply": ({"script": PLT + "def f(d):\n" + DRAW + "    return int(d['X'].sum())\n",
                   "input": "select * from NUMS order by X", "rows": 2},
                  {"0": 3, "1": 7, "2": 5}),
    "group-apply": ({"script": PLT + "def f(d):\n" + DRAW + "    return int(d['X'].sum())\n",
                     "input": "select * from NUMS", "groupBy": "G"},
                    {"a": 4, "b": 6, "c": 5}),
    "index-apply": ({"script": PLT + "def f(i):\n" + DRAW + "    plt.show()\n    return i * i\n",
                     "times": 3}, {"0": (1, 1), "1": (4, 2), "2": (9, 3)}),
}


def assert_shape(result: Any, expected: Any) -> None:
    if isinstance(expected, list):
        assert isinstance(result, list) and len(result) == len(expected), result
        for entry, data in zip(result, expected, strict=True):
            assert_image_entry(entry, data, "drawn")
        return
    assert isinstance(result, dict) and sorted(result) == sorted(expected), result
    for key, want in expected.items():
        data, time = want if isinstance(want, tuple) else (want, None)
        assert_image_entry(result[key], data, "drawn", time=time)


@pytest.mark.parametrize("how", ["graphicsFlag", "oml_graphics_flag"])
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_graphics_on_every_endpoint_sync_and_async(c: httpx.Client, endpoint: str,
                                                   how: str) -> None:
    body, expected = ENDPOINTS[endpoint]
    body = {**body, **({"graphicsFlag": True} if how == "graphicsFlag"
                       else {"parameters": '{"oml_graphics_flag": true}'})}
    sync = c.post(f"{API}/{endpoint}", json=body)
    assert_shape(ok(sync), expected)
    # The job's result is what the sync call answered, byte for byte: drawing is
    # deterministic, and Agg writes the same PNG for the same figure.
    answer = job_answer(c, submit(c, f"{API1}/{endpoint}", body))
    assert answer.status_code == 200, answer.text[:2000]
    assert answer.json() == sync.json()


def test_row_apply_chunk_drawing_several_figures_gives_a_list(c: httpx.Client) -> None:
    # One figure per row: chunks of 2, 2 and 1 rows give lists of 2, 2 and one object.
    source = (PLT + "def f(d):\n"
              "    for x in d['X']:\n"
              "        plt.figure()\n        plt.bar([0, 1], [x, 6 - x], color='tab:blue')\n"
              "        plt.title(f'X={x}')\n        plt.show()\n"
              "    return [int(x) for x in d['X']]\n")
    result = graphics(c, "row-apply", source, input="select * from NUMS order by X", rows=2)
    assert list(result) == ["0", "1", "2"], result
    for key, xs in (("0", [1, 2]), ("1", [3, 4])):
        assert isinstance(result[key], list) and len(result[key]) == 2, result[key]
        for i, (entry, x) in enumerate(zip(result[key], xs, strict=True), 1):
            assert_image_entry(entry, xs, f"X={x}", image_id=i)
    assert_image_entry(result["2"], [5], "X=5")


# -- figures, titles, ids -------------------------------------------------------------


def test_titles_and_ids(c: httpx.Client) -> None:
    source = (PLT + "def f():\n"
              "    fig, ax = plt.subplots()\n"
              "    fig.suptitle('Super'); ax.set_title('Axes'); ax.plot([1, 2])\n"
              "    plt.show()\n"
              "    fig, ax = plt.subplots()\n"
              "    ax.set_title('Only axes'); ax.plot([2, 1])\n"
              "    plt.show()\n"
              "    fig, (a1, a2) = plt.subplots(1, 2)\n"
              "    a1.set_title('left'); a2.set_title('right'); a1.plot([1, 2])\n"
              "    plt.show()\n"
              "    fig, ax = plt.subplots()\n"
              "    ax.plot([1, 3, 2])\n"
              "    plt.show()\n"
              "    return 'titles'\n")
    result = graphics(c, "do-eval", source)
    titles = ["Super", "Only axes", None, None]
    assert [e["TITLE"] for e in result] == titles
    for i, (entry, title) in enumerate(zip(result, titles, strict=True), 1):
        assert_image_entry(entry, "titles", title, image_id=i)


def test_subplots_make_one_image_per_figure(c: httpx.Client) -> None:
    source = (PLT + "def f():\n"
              "    fig, axes = plt.subplots(2, 2)\n"
              "    for i, ax in enumerate(axes.flat):\n"
              "        ax.plot(range(i + 2)); ax.set_title(f'panel {i}')\n"
              "    fig.suptitle('Grid')\n"
              "    plt.show()\n"
              "    return 4\n")
    result = graphics(c, "do-eval", source)
    assert len(result) == 1, [e["TITLE"] for e in result]
    assert_image_entry(result[0], 4, "Grid")


def test_figures_left_open_are_captured_in_order(c: httpx.Client) -> None:
    # Shown ones first (at show time), then those still open at return, by number.
    source = (PLT + "def f():\n"
              "    plt.figure(); plt.plot([1, 2]); plt.title('shown')\n"
              "    plt.show()\n"
              "    plt.figure(); plt.plot([2, 1]); plt.title('open A')\n"
              "    plt.figure(); plt.plot([1, 1]); plt.title('open B')\n"
              "    return None\n")
    result = graphics(c, "do-eval", source)
    assert [(e["ID"], e["TITLE"]) for e in result] == [(1, "shown"), (2, "open A"),
                                                       (3, "open B")]
    for entry in result:
        assert_image_entry(entry, None, entry["TITLE"], image_id=entry["ID"])


def test_no_figure_gives_one_entry_with_a_null_image(c: httpx.Client) -> None:
    assert graphics(c, "do-eval", NO_FIGURE) == [blank_entry("nothing drawn")]
    source = "def f(d):\n    return len(d)\n"
    assert graphics(c, "table-apply", source, input="select * from NUMS") == [blank_entry(5)]
    assert graphics(c, "index-apply", "def f(i):\n    return i\n", times=2) == \
        {"0": blank_entry(1, time=1), "1": blank_entry(2, time=2)}
    assert graphics(c, "group-apply", source, input="select * from NUMS", groupBy="G") == \
        {"a": blank_entry(2), "b": blank_entry(2), "c": blank_entry(1)}
    assert graphics(c, "row-apply", source, input="select * from NUMS", rows=3) == \
        {"0": blank_entry(3), "1": blank_entry(2)}


def test_a_figure_closed_by_the_function_is_not_captured(c: httpx.Client) -> None:
    source = (PLT + "def f():\n"
              "    fig = plt.figure(); plt.plot([1, 2])\n"
              "    plt.close(fig)\n"
              "    return 'closed'\n")
    assert graphics(c, "do-eval", source) == [blank_entry("closed")]


# -- settings: size and resolution ------------------------------------------------------


def test_default_size_and_an_explicit_figsize(c: httpx.Client) -> None:
    result = graphics(c, "do-eval", ONE_FIGURE)
    assert_image_entry(result[0], 1, "one")  # 6.4 x 4.8 in at 100 DPI: 640 x 480
    # A figure size the function asks for is honoured; the resolution is the server's.
    source = (PLT + "def f():\n    plt.figure(figsize=(3, 2), dpi=300)\n"
              "    plt.plot([1, 3, 2])\n    return 2\n")
    result = graphics(c, "do-eval", source)
    assert_image_entry(result[0], 2, None, size=(300, 200))


def test_image_size_and_dpi_are_settings(make_server: Callable[..., EpeServer]) -> None:
    srv = make_server(EPE_GRAPHICS_DPI="50", EPE_GRAPHICS_WIDTH="4", EPE_GRAPHICS_HEIGHT="3")
    _user, c = srv.new_client()
    with c:
        result = graphics(c, "do-eval", ONE_FIGURE)
        assert_image_entry(result[0], 1, "one", size=(200, 150), dpi=50)
        source = (PLT + "def f():\n    plt.figure(figsize=(8, 2))\n"
                  "    plt.plot([1, 3, 2])\n    return 2\n")
        assert_image_entry(graphics(c, "do-eval", source)[0], 2, None, size=(400, 100), dpi=50)
        r = graphics(c, "do-eval", RANDOM_RED_DOTS)
        for entry in r:
            assert_image_entry(entry, RED_DOTS_DATA, "Random Red Dots", entry["ID"],
                               size=(200, 150), dpi=50)


# -- nothing leaks between invocations --------------------------------------------------


FIGNUMS = PLT + "def f():\n    return plt.get_fignums()\n"


def test_no_figure_or_setting_leaks_into_the_next_invocation(
        make_server: Callable[..., EpeServer]) -> None:
    srv = make_server(EPE_WORKERS="1")  # every call runs in the same worker process
    _user, c = srv.new_client()
    with c:
        # Drawn without show, without the flag: nothing returned, nothing kept.
        leaky = (PLT + "def f():\n"
                 "    plt.figure(); plt.plot([1, 2]); plt.title('leaked')\n"
                 "    plt.rcParams['figure.figsize'] = (2, 2)\n"
                 "    plt.rcParams['figure.facecolor'] = 'black'\n"
                 "    return 'drew'\n")
        assert ok(run(c, "do-eval", leaky)) == "drew"
        assert graphics(c, "do-eval", FIGNUMS) == [blank_entry([])]
        # The settings the last call changed are back to the server's defaults.
        result = graphics(c, "do-eval", ONE_FIGURE)
        pixels = assert_image_entry(result[0], 1, "one")
        assert (pixels[0, 0] == 255).all(), pixels[0, 0]  # white background, not black
        # Drawn with the flag but left open: captured by that call, gone from the next.
        assert len(graphics(c, "do-eval", leaky)) == 1
        assert ok(run(c, "do-eval", FIGNUMS)) == []
        # A function that fails with figures open leaves nothing behind either.
        failing = PLT + "def f():\n    plt.figure(); plt.plot([1])\n    raise ValueError('x')\n"
        assert_error(run(c, "do-eval", failing, graphicsFlag=True), 400, 1011)
        assert_error(run(c, "do-eval", failing), 400, 1011)
        assert graphics(c, "do-eval", FIGNUMS) == [blank_entry([])]
        # New figures are numbered from 1 in every invocation, and in every index-apply call.
        numbered = (PLT + "def f(i=0):\n    plt.figure(); plt.figure()\n"
                    "    return [plt.get_fignums(), plt.figure().number]\n")
        assert ok(run(c, "do-eval", numbered)) == [[1, 2], 3]
        assert ok(run(c, "index-apply", numbered, times=3)) == [[[1, 2], 3]] * 3


# -- printed output ---------------------------------------------------------------------


def test_printed_output_is_in_the_error_body(c: httpx.Client) -> None:
    source = ("import sys\n" + PLT + "def f():\n"
              "    print('before the failure')\n"
              "    print('a warning', file=sys.stderr)\n"
              "    plt.plot([1, 2]); plt.show()\n"
              "    raise ValueError('bad value 42')\n")
    body = assert_error(run(c, "do-eval", source, graphicsFlag=True), 400, 1011)
    assert "before the failure" in body["stdout"], body
    assert "a warning" in body.get("stderr", "") + body["stdout"], body
    assert "bad value 42" in body["errorMessage"]


def test_printed_output_never_corrupts_the_result(c: httpx.Client) -> None:
    source = ("import sys\n" + PLT + "def f():\n"
              "    print('{\"result\": \"forged\"}')\n"
              "    print('noise', file=sys.stderr)\n"
              "    plt.plot([1, 2]); plt.title('printed')\n"
              "    return 'real'\n")
    result = graphics(c, "do-eval", source)
    assert len(result) == 1
    assert_image_entry(result[0], "real", "printed")


def test_parallel_calls_keep_their_own_output(c: httpx.Client) -> None:
    source = ("def f(marker):\n"
              "    for k in range(300):\n"
              "        print(f'{marker} line {k:03d}')\n"
              "    raise RuntimeError(marker)\n")
    markers = [f"CALL{i}" for i in range(6)]

    def call(marker: str) -> dict[str, Any]:
        r = run(c, "do-eval", source, graphicsFlag=True, parameters=json.dumps({"marker": marker}))
        return assert_error(r, 400, 1011)

    with ThreadPoolExecutor(len(markers)) as pool:
        bodies = list(pool.map(call, markers))
    for marker, body in zip(markers, bodies, strict=True):
        assert body["stdout"].splitlines() == [f"{marker} line {k:03d}" for k in range(300)]


def test_async_job_log_keeps_each_chunks_output_unbroken(c: httpx.Client) -> None:
    put_table(c, "EIGHT", "ID\n" + "".join(f"{i}\n" for i in range(8)))
    source = (PLT + "def f(d):\n"
              "    chunk = int(d['ID'][0])\n"
              "    for k in range(400):\n"
              "        print(f'chunk {chunk} line {k:03d} ' + 'x' * 40)\n"
              "    plt.plot([chunk, 1]); plt.title(f'chunk {chunk}')\n"
              "    return chunk\n")
    body = {"script": source, "input": "select * from EIGHT order by ID", "rows": 1,
            "parallelFlag": True, "parallel": 2, "graphicsFlag": True,
            "parameters": '{"oml_input_type": "pandas.DataFrame"}'}
    url = submit(c, f"{API}/row-apply", body)
    answer = job_answer(c, url)
    assert answer.status_code == 200, answer.text[:2000]
    result = answer.json()["result"]
    assert sorted(result) == [str(i) for i in range(8)]
    for key, entry in result.items():
        assert_image_entry(entry, int(key), f"chunk {key}")
    lines = job_log(c, url).splitlines()
    line = re.compile(r"chunk (\d) line (\d{3}) x{40}")
    assert all(line.fullmatch(s) for s in lines), [s for s in lines if not line.fullmatch(s)][:5]
    chunks = [int(m[1]) for s in lines if (m := line.fullmatch(s))]
    runs = [k for i, k in enumerate(chunks) if i == 0 or chunks[i - 1] != k]
    assert sorted(runs) == list(range(8)), runs  # each chunk's lines in one unbroken run
    for chunk in range(8):
        mine = [s for s in lines if s.startswith(f"chunk {chunk} ")]
        assert mine == [f"chunk {chunk} line {k:03d} " + "x" * 40 for k in range(400)]


def test_async_graphics_job_log_and_result(c: httpx.Client) -> None:
    source = RANDOM_RED_DOTS.replace("    plt.show()\n", "    plt.show()\n    print('shown')\n")
    url = submit(c, f"{API}/do-eval", {"script": source, "graphicsFlag": True})
    answer = job_answer(c, url)
    assert answer.status_code == 200, answer.text[:2000]
    result = answer.json()["result"]
    assert [e["ID"] for e in result] == [1, 2]
    for entry in result:
        assert_image_entry(entry, RED_DOTS_DATA, "Random Red Dots", entry["ID"])
    assert job_log(c, url).splitlines() == ["shown", "shown"]


def test_printed_output_of_a_failed_job_is_kept_in_its_log(c: httpx.Client) -> None:
    source = (PLT + "def f():\n    print('drawing, then failing')\n"
              "    plt.plot([1, 2]); plt.show()\n    raise ValueError('late failure')\n")
    url = submit(c, f"{API}/do-eval", {"script": source, "graphicsFlag": True})
    body = assert_error(job_answer(c, url), 400, 1011)
    assert "drawing, then failing" in body["stdout"]
    assert "drawing, then failing" in job_log(c, url)


# -- the output limit counts images ---------------------------------------------------------


LIMIT = 200_000
MANY_SHOWN = (PLT + "def f():\n"
              "    for i in range(10000):\n"
              "        plt.figure(); plt.plot([i, i + 1, i % 7]); plt.title(f'figure {i}')\n"
              "        plt.show()\n"
              "    return 'done'\n")
MANY_OPEN = (PLT + "def f():\n"
             "    for i in range(100):\n"
             "        plt.figure(); plt.plot([i, i + 1, i % 7])\n"
             "    return 'done'\n")


def test_images_count_toward_the_output_limit(make_server: Callable[..., EpeServer]) -> None:
    srv = make_server(EPE_OUTPUT_LIMIT=str(LIMIT))
    _user, c = srv.new_client()
    with c:
        for source in (MANY_SHOWN, MANY_OPEN):
            body = assert_error(run(c, "do-eval", source, graphicsFlag=True), 400, 1024)
            assert str(LIMIT) in body["errorMessage"], body
        body = assert_error(run(c, "index-apply", MANY_SHOWN.replace("f():", "f(i):"),
                                times=2, graphicsFlag=True), 400, 1024)
        answer = job_answer(c, submit(c, f"{API}/do-eval",
                                      {"script": MANY_SHOWN, "graphicsFlag": True}))
        assert_error(answer, 400, 1024)
        # Without the flag nothing is kept, so the same function is fine.
        assert ok(run(c, "do-eval", MANY_OPEN)) == "done"
        # And the server, and its workers, still answer.
        assert srv.proc is not None and srv.proc.poll() is None
        assert ok(run(c, "do-eval", "def f():\n    return 'alive'\n")) == "alive"
        assert_image_entry(graphics(c, "do-eval", ONE_FIGURE)[0], 1, "one")


def test_the_image_limit_is_per_call_not_per_worker(
        make_server: Callable[..., EpeServer]) -> None:
    """Many small graphics calls in one worker, together far over the limit, all succeed."""
    srv = make_server(EPE_OUTPUT_LIMIT=str(LIMIT), EPE_WORKERS="1")
    _user, c = srv.new_client()
    with c:
        first = graphics(c, "do-eval", ONE_FIGURE)
        assert_image_entry(first[0], 1, "one")
        size = len(first[0]["IMAGE"])
        assert size < LIMIT / 4, size
        calls = math.ceil(2 * LIMIT / size) + 1
        for i in range(calls):
            r = run(c, "do-eval", ONE_FIGURE, graphicsFlag=True)
            assert r.status_code == 200, (i, size, r.text[:500])
