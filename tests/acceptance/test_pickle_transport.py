"""Pickled keyword arguments in, pickled values out; unpickled only in workers
(docs/api.md#the-python-native-transport)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import cloudpickle
import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from tests.serverproc import API, EpeServer


@pytest.fixture(scope="module")
def c(server: EpeServer) -> Iterator[httpx.Client]:
    _user, client = server.new_client()
    with client:
        yield client


def packed(value: Any) -> str:
    return base64.b64encode(cloudpickle.dumps(value)).decode()


def unpacked(text: str) -> Any:
    return cloudpickle.loads(base64.b64decode(text))


def test_a_fitted_model_goes_in_as_a_keyword_argument(c: httpx.Client) -> None:
    model = LinearRegression().fit(np.array([[1.0], [2.0], [3.0]]), np.array([2.0, 4.0, 6.0]))
    r = c.post(f"{API}/do-eval", json={
        "script": "def f(model, k=1):\n    return float(model.predict([[10.0]])[0]) * k",
        "pickledParameters": packed({"model": model}), "parameters": json.dumps({"k": 2})})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == pytest.approx(40.0)


def test_pickled_parameters_win_over_json_ones(c: httpx.Client) -> None:
    r = c.post(f"{API}/do-eval", json={"script": "def f(k):\n    return k",
                                        "parameters": '{"k": 1}',
                                        "pickledParameters": packed({"k": 2})})
    assert r.json() == {"result": 2}


def test_a_fitted_model_comes_back_as_itself(c: httpx.Client) -> None:
    source = ("from sklearn.linear_model import LinearRegression\n"
              "def f():\n    return LinearRegression().fit([[1.0], [2.0]], [1.0, 2.0])\n")
    r = c.post(f"{API}/do-eval", json={"script": source, "resultFormat": "pickle"})
    assert r.status_code == 200, r.text
    model = unpacked(r.json()["result"])
    assert isinstance(model, LinearRegression)
    assert model.coef_.tolist() == pytest.approx([1.0])


def test_index_apply_gives_one_pickle_per_invocation(c: httpx.Client) -> None:
    source = "import pandas as pd\ndef f(i):\n    return pd.DataFrame({'I': [i]})\n"
    r = c.post(f"{API}/index-apply", json={"times": 3, "script": source,
                                            "resultFormat": "pickle"})
    frames = [unpacked(x) for x in r.json()["result"]]
    assert [int(df["I"][0]) for df in frames] == [1, 2, 3]
    assert all(isinstance(df, pd.DataFrame) for df in frames)


def test_with_graphics_the_value_and_the_png_bytes(c: httpx.Client) -> None:
    source = "import matplotlib.pyplot as plt\ndef f():\n    plt.plot([1, 2])\n    return 7\n"
    r = c.post(f"{API}/do-eval", json={"script": source, "resultFormat": "pickle",
                                        "graphicsFlag": True})
    value, images = unpacked(r.json()["result"])
    assert value == 7
    assert len(images) == 1 and images[0].startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("bad", ["not base64!!", base64.b64encode(b"not a pickle").decode(),
                                 packed([1, 2])])
def test_unreadable_pickled_parameters_are_a_400(c: httpx.Client, bad: str) -> None:
    r = c.post(f"{API}/do-eval", json={"script": "def f(**kw):\n    return 1",
                                        "pickledParameters": bad})
    assert r.status_code == 400
    assert r.json()["errorCode"] == 1001
    assert "pickledParameters" in r.json()["errorMessage"]


def test_an_unknown_result_format_is_a_400(c: httpx.Client) -> None:
    r = c.post(f"{API}/do-eval", json={"script": "def f():\n    return 1",
                                        "resultFormat": "marshal"})
    assert r.status_code == 400
