"""do-eval (docs/api.md#running-functions): request bodies as Oracle's clients send them,
how the function is called, and how its value becomes JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.serverproc import API, EpeServer, assert_error, unique_name


@pytest.fixture(scope="module")
def client(server: EpeServer) -> Iterator[tuple[str, httpx.Client]]:
    user, c = server.new_client()
    with c:
        yield user, c


@pytest.fixture
def c(client: tuple[str, httpx.Client]) -> httpx.Client:
    return client[1]


def inline(c: httpx.Client, source: str, **body: Any) -> httpx.Response:
    return c.post(f"{API}/do-eval", json={"script": source, **body})


def value_of(c: httpx.Client, source: str, **body: Any) -> Any:
    r = inline(c, source, **body)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"result"}
    return r.json()["result"]


def store(c: httpx.Client, source: str, name: str | None = None) -> str:
    name = name or unique_name("s")
    r = c.post(f"{API}/scripts", json={"name": name, "script": source})
    assert r.status_code == 201, r.text
    return name


def returning(expr: str, imports: str = "") -> str:
    return f"{imports}\ndef f():\n    return {expr}\n"


# -- Oracle's request bodies ---------------------------------------------------------


SCALED = "import numpy as np\ndef f(num=5, scale=1):\n    return list(np.arange(num) / scale)\n"


@pytest.mark.parametrize("raw, expected", [
    ('{"graphicsFlag":false,"service":"LOW"}', [0, 1, 2, 3, 4]),
    ('{"parameters":"{\\"num\\":10,\\"scale\\":100}","service":"LOW"}',
     [i / 100 for i in range(10)]),
    ('{"parameters":"{\\"num\\":3}","graphicsFlag":false,"service":"MEDIUM"}', [0, 1, 2]),
    ('{"service":"HIGH"}', [0, 1, 2, 3, 4]),
    ('{}', [0, 1, 2, 3, 4]),
    ('{"parameters":""}', [0, 1, 2, 3, 4]),
], ids=["graphics-service", "parameters", "medium", "high", "empty", "empty-parameters"])
def test_oracle_request_bodies_verbatim(c: httpx.Client, raw: str, expected: list[float]) -> None:
    name = store(c, SCALED)
    for content_type in ("application/json", "application/x-www-form-urlencoded"):
        r = c.post(f"{API}/do-eval/{name}", content=raw, headers={"Content-Type": content_type})
        assert r.status_code == 200, (content_type, r.text)
        assert r.json() == {"result": expected}


def test_dbt_oracle_python_model_request(c: httpx.Client) -> None:
    # What dbt-oracle's OracleADBSPythonJob sends (sync): its session info as parameters.
    source = ("def main(action, client_identifier, clientinfo, module):\n"
              "    return [action, module]\n")
    name = store(c, source, unique_name("model") + "_dbt_py_script")
    data = {"service": "HIGH", "parameters": json.dumps({
        "action": "DBT RUN OML4PY", "client_identifier": "dbt-oracle-client-1234",
        "clientinfo": "host_x86_64", "module": "dbt-1.8.0"})}
    r = c.post(f"/oml/api/py-scripts/v1/do-eval/{name}", content=json.dumps(data),
               headers={"Content-type": "application/json", "Accept": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json() == {"result": ["DBT RUN OML4PY", "dbt-1.8.0"]}


def test_no_body_at_all(c: httpx.Client) -> None:
    name = store(c, SCALED)
    r = c.post(f"{API}/do-eval/{name}")
    assert r.status_code == 200, r.text
    assert r.json() == {"result": [0, 1, 2, 3, 4]}


def test_parameters_become_keyword_arguments(c: httpx.Client) -> None:
    source = "def f(a, b=2, **rest):\n    return {'a': a, 'b': b, 'rest': rest}\n"
    params = {"a": 1, "b": "two", "c": [1, {"d": None}], "e": 1.5, "t": True}
    assert value_of(c, source, parameters=json.dumps(params)) == \
        {"a": 1, "b": "two", "rest": {"c": [1, {"d": None}], "e": 1.5, "t": True}}


def test_oml_control_arguments_are_not_passed_to_the_function(c: httpx.Client) -> None:
    # The function takes exactly one keyword: any oml_* passed on would be a TypeError.
    source = "def f(x):\n    return x * 2\n"
    params = {"x": 21, "oml_input_type": "pandas.DataFrame", "oml_na_omit": True,
              "oml_graphics_flag": False, "oml_parallel_flag": False,
              "oml_service_level": "LOW", "oml_async_flag": False}
    assert value_of(c, source, parameters=json.dumps(params)) == 42


def test_an_unexpected_keyword_fails_the_function(c: httpx.Client) -> None:
    body = assert_error(inline(c, "def f():\n    return 1\n", parameters='{"bogus": 1}'), 400)
    assert "bogus" in body["errorMessage"]


def test_unknown_body_keys_are_ignored(c: httpx.Client) -> None:
    # OML's own examples send "parameter" and "parallelFlag" where they don't belong.
    name = store(c, SCALED)
    r = c.post(f"{API}/do-eval/{name}", json={"parameter": '{"num": 2}', "parallelFlag": True,
                                              "parallel": "lots", "rows": "x", "whatever": {},
                                              "service": "LOW"})
    assert r.status_code == 200, r.text
    assert r.json() == {"result": [0, 1, 2, 3, 4]}


@pytest.mark.parametrize("field, value", [
    ("graphicsFlag", "yes"), ("graphicsFlag", 1), ("graphicsFlag", "false"),
    ("asyncFlag", "true"), ("timeout", "x"), ("timeout", "10"), ("timeout", 1.5),
    ("timeout", 0), ("timeout", -5), ("timeout", True), ("service", "ULTRA"), ("service", 1),
    ("parameters", {"num": 1}), ("parameters", 5), ("envName", 3), ("script", 7),
])
def test_known_fields_of_the_wrong_type_are_400(c: httpx.Client, field: str, value: Any) -> None:
    name = store(c, SCALED)
    body = assert_error(c.post(f"{API}/do-eval/{name}", json={field: value}), 400)
    assert field in body["errorMessage"]


@pytest.mark.parametrize("parameters", ["[1, 2]", "not json", '"a string"', "1", "null",
                                        "{'single': 'quotes'}", '{"unterminated": '])
def test_parameters_that_are_not_a_json_object_string_are_400(c: httpx.Client,
                                                              parameters: str) -> None:
    name = store(c, SCALED)
    body = assert_error(c.post(f"{API}/do-eval/{name}", json={"parameters": parameters}), 400)
    assert "parameters" in body["errorMessage"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b"42", b"{\"a\":",
                                 b"\xff\xfe"])
def test_body_that_is_not_a_json_object_is_400_never_422(c: httpx.Client, raw: bytes) -> None:
    name = store(c, SCALED)
    for content_type in ("application/json", "application/x-www-form-urlencoded"):
        r = c.post(f"{API}/do-eval/{name}", content=raw, headers={"Content-Type": content_type})
        assert_error(r, 400)
    assert_error(c.post(f"{API}/do-eval", content=raw,
                        headers={"Content-Type": "application/json"}), 400)


# -- results --------------------------------------------------------------------------


def test_dataframe_becomes_a_list_of_records(c: httpx.Client) -> None:
    source = ("import pandas as pd\nimport numpy as np\ndef f():\n"
              "    return pd.DataFrame({'A': [1, 2], 'B': ['x', 'y'], 'C': [0.5, np.nan],"
              " 3: [True, False]})\n")
    assert value_of(c, source) == [{"A": 1, "B": "x", "C": 0.5, "3": True},
                                   {"A": 2, "B": "y", "C": None, "3": False}]


def test_empty_dataframe_is_an_empty_list(c: httpx.Client) -> None:
    assert value_of(c, returning("pd.DataFrame({'A': []})", "import pandas as pd")) == []


@pytest.mark.parametrize("expr, expected", [
    ("np.arange(3)", [0, 1, 2]),
    ("np.array([[1.5, 2.0], [3.0, 4.0]])", [[1.5, 2.0], [3.0, 4.0]]),
    ("np.array([1.0, np.nan, np.inf, -np.inf])", [1.0, None, None, None]),
    ("np.array(['a', 'b'])", ["a", "b"]),
    ("np.array([1, 'x', None], dtype=object)", [1, "x", None]),
    ("np.array([True, False])", [True, False]),
    ("np.arange(6, dtype=np.int32).reshape(2, 3)", [[0, 1, 2], [3, 4, 5]]),
    ("np.float32(1.5)", 1.5),
    ("np.float64(np.nan)", None),
    ("np.int64(7)", 7),
    ("np.uint8(255)", 255),
    ("np.bool_(True)", True),
    ("np.str_('s')", "s"),
    ("{'m': np.float64(2.5), 'n': np.int16(-3)}", {"m": 2.5, "n": -3}),
    ("pd.Series([1, 2], index=['a', 'b'])", {"a": 1, "b": 2}),
], ids=lambda v: v if isinstance(v, str) else None)
def test_numpy_values(c: httpx.Client, expr: str, expected: Any) -> None:
    assert value_of(c, returning(expr, "import numpy as np\nimport pandas as pd")) == expected


@pytest.mark.parametrize("expr, expected", [
    ("float('nan')", None),
    ("float('inf')", None),
    ("-float('inf')", None),
    ("[1.0, float('nan'), float('-inf')]", [1.0, None, None]),
    ("{'x': float('inf')}", {"x": None}),
    ("(float('nan'),)", [None]),
    ("decimal.Decimal('NaN')", None),
])
def test_nan_and_infinities_become_null(c: httpx.Client, expr: str, expected: Any) -> None:
    assert value_of(c, returning(expr, "import decimal")) == expected


@pytest.mark.parametrize("expr, expected", [
    ("dt.datetime(2024, 1, 2, 3, 4, 5)", "2024-01-02T03:04:05"),
    ("dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)", "2024-01-02T03:04:05+00:00"),
    ("dt.date(2024, 1, 2)", "2024-01-02"),
    ("dt.time(3, 4, 5)", "03:04:05"),
    ("pd.Timestamp('2024-01-02 03:04:05')", "2024-01-02T03:04:05"),
    ("pd.Timestamp('2024-01-02')", "2024-01-02T00:00:00"),
    ("[dt.date(2024, 1, 2), pd.Timestamp('2024-05-06 07:08:09')]",
     ["2024-01-02", "2024-05-06T07:08:09"]),
    ("pd.NaT", None),
])
def test_dates_and_times_become_iso_strings(c: httpx.Client, expr: str, expected: Any) -> None:
    got = value_of(c, returning(expr, "import datetime as dt\nimport pandas as pd"))
    assert got == expected


def test_dataframe_with_dates(c: httpx.Client) -> None:
    source = ("import pandas as pd\nimport datetime as dt\ndef f():\n"
              "    return pd.DataFrame({'D': pd.to_datetime(['2024-01-02', None]),"
              " 'E': [dt.date(2024, 3, 4), None]})\n")
    assert value_of(c, source) == [{"D": "2024-01-02T00:00:00", "E": "2024-03-04"},
                                   {"D": None, "E": None}]


@pytest.mark.parametrize("expr, expected", [
    ("{'a': 1, 'b': [1, 2], 'c': {'d': None}}", {"a": 1, "b": [1, 2], "c": {"d": None}}),
    ("{1: 'one', 2: 'two'}", {"1": "one", "2": "two"}),
    ("(1, 'a', (2, 3))", [1, "a", [2, 3]]),
    ("True", True),
    ("False", False),
    ("None", None),
    ("'Hello'", "Hello"),
    ("''", ""),
    ("'naïve ✓'", "naïve ✓"),
    ("12345678901234", 12345678901234),
    ("-0.25", -0.25),
    ("[]", []),
    ("{}", {}),
])
def test_plain_python_values(c: httpx.Client, expr: str, expected: Any) -> None:
    assert value_of(c, returning(expr)) == expected


@pytest.mark.parametrize("expr, type_name", [
    ("object()", "object"),
    ("{object(), object()}", "object"),
    ("b'raw bytes'", "bytes"),
    ("[1, b'x']", "bytes"),
    ("{'k': complex(1, 2)}", "complex"),
    ("Thing()", "Thing"),
    ("lambda: 1", "function"),
])
def test_value_that_cannot_become_json_is_400_naming_its_type(c: httpx.Client, expr: str,
                                                              type_name: str) -> None:
    source = f"class Thing:\n    pass\n\ndef f():\n    return {expr}\n"
    body = assert_error(inline(c, source), 400)
    assert type_name in body["errorMessage"]


# -- output, errors, entry points -----------------------------------------------------


def test_print_never_corrupts_the_result(c: httpx.Client) -> None:
    source = ("import os, sys\ndef f():\n"
              "    print('hello')\n"
              "    print('{\"result\": \"fake\"}')\n"
              "    sys.stdout.write('no newline')\n"
              "    sys.stderr.write('to stderr\\n')\n"
              "    os.write(1, b'straight to fd 1\\n')\n"
              "    os.write(2, b'straight to fd 2\\n')\n"
              "    return {'real': True}\n")
    for _ in range(3):  # and nothing leaks into the next call on the same worker
        r = inline(c, source)
        assert r.status_code == 200, r.text
        assert r.json() == {"result": {"real": True}}
    assert value_of(c, returning("'clean'")) == "clean"


def test_a_flood_of_printing_never_corrupts_the_result(c: httpx.Client) -> None:
    source = ("def f():\n"
              "    for i in range(30000):\n"
              "        print('line', i, 'x' * 60)\n"
              "    return 'done'\n")
    assert value_of(c, source) == "done"
    body = assert_error(inline(c, source.replace("return 'done'", "raise RuntimeError('late')")),
                        400)
    assert "late" in body["errorMessage"]
    assert body["stdout"].startswith("line 0 ")


def test_concurrent_calls_get_their_own_results(c: httpx.Client) -> None:
    name = store(c, "import os\ndef f(i):\n    print('call', i)\n    return {'i': i}\n")

    def call(i: int) -> Any:
        r = c.post(f"{API}/do-eval/{name}", json={"parameters": json.dumps({"i": i})})
        assert r.status_code == 200, r.text
        return r.json()["result"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(24)))
    assert results == [{"i": i} for i in range(24)]


def test_function_raising_is_400_with_traceback_and_stdout(c: httpx.Client) -> None:
    source = ("def helper(x):\n"
              "    return 1 / x\n\n"
              "def f():\n"
              "    print('about to divide')\n"
              "    return helper(0)  # the user's line\n")
    body = assert_error(inline(c, source), 400)
    assert "ZeroDivisionError" in body["errorMessage"]
    assert isinstance(body["traceback"], str)
    assert "return helper(0)  # the user's line" in body["traceback"]
    assert "return 1 / x" in body["traceback"]
    assert "ZeroDivisionError" in body["traceback"]
    assert "about to divide" in body["stdout"]
    # The server's own frames are not the user's business.
    assert "epe/runner" not in body["traceback"]


def test_stored_script_raising(c: httpx.Client) -> None:
    name = store(c, "def f(msg='boom'):\n    raise ValueError(msg)\n")
    body = assert_error(c.post(f"{API}/do-eval/{name}", json={"parameters": '{"msg": "kaput"}'}),
                        400)
    assert "kaput" in body["errorMessage"]
    assert "raise ValueError(msg)" in body["traceback"]


def test_error_while_loading_the_script_is_400(c: httpx.Client) -> None:
    source = "import no_such_module_xyz\n\ndef f():\n    return 1\n"
    body = assert_error(inline(c, source), 400)
    assert "no_such_module_xyz" in body["errorMessage"]


def test_entry_point_is_the_last_top_level_def(c: httpx.Client) -> None:
    source = ("import math\n"
              "K = 3\n"
              "def helper(x):\n"
              "    return x * K\n\n"
              "def first():\n"
              "    return 'wrong'\n\n"
              "class Tool:\n"
              "    def method(self):\n"
              "        return 'wrong too'\n\n"
              "def main(n=2):\n"
              "    def inner():\n"
              "        return 'inner'\n"
              "    return [helper(n), math.floor(2.5), inner()]\n\n"
              "CONSTANT = 'after the def'\n")
    assert value_of(c, source) == [6, 2, "inner"]
    name = store(c, source, unique_name("differently_named"))
    r = c.post(f"{API}/do-eval/{name}", json={"parameters": '{"n": 5}'})
    assert r.json() == {"result": [15, 2, "inner"]}


@pytest.mark.parametrize("source, expected", [
    ('f = lambda: "Hello"\n', "Hello"),
    ('f = lambda name="x": "Hello " + name\n', "Hello x"),
    ("import functools\nf = functools.partial(pow, 2, 10)\n", 1024),
    ('g = lambda: "first"\nh = lambda: "last"\nX = 3\n', "last"),
])
def test_name_bound_to_a_callable(c: httpx.Client, source: str, expected: Any) -> None:
    assert value_of(c, source) == expected
    name = store(c, source)
    assert c.post(f"{API}/do-eval/{name}", json={}).json() == {"result": expected}


def test_script_without_a_callable_fails_as_400(c: httpx.Client) -> None:
    assert_error(inline(c, "x = 1\n"), 400)


def test_inline_script(c: httpx.Client) -> None:
    assert value_of(c, "def g(a):\n    return a + 1\n", parameters='{"a": 41}') == 42
    body = assert_error(inline(c, "def g(:\n    pass\n"), 400)
    assert "line 1" in body["errorMessage"]
    assert_error(inline(c, "import os\n"), 400)
    assert_error(c.post(f"{API}/do-eval", json={}), 400)
    assert_error(c.post(f"{API}/do-eval", json={"script": ""}), 400)


def test_do_eval_with_owner(c: httpx.Client, client: tuple[str, httpx.Client]) -> None:
    user = client[0]
    name = store(c, returning("'mine'"))
    for owner in (user, user.lower()):
        r = c.post(f"{API}/do-eval/{name}/{owner}", json={"service": "LOW"})
        assert r.status_code == 200, r.text
        assert r.json() == {"result": "mine"}


def test_unknown_script_is_404(c: httpx.Client, client: tuple[str, httpx.Client]) -> None:
    assert_error(c.post(f"{API}/do-eval/{unique_name('nope')}", json={}), 404)
    assert_error(c.post(f"{API}/do-eval/{unique_name('nope')}/{client[0]}", json={}), 404)
    assert_error(c.post(f"{API}/do-eval/{unique_name('nope')}/PYQSYS", json={}), 404)
    assert_error(c.post(f"{API}/do-eval/{unique_name('nope')}/NOSUCHUSER", json={}), 404)


def test_unknown_env_name_is_400(c: httpx.Client) -> None:
    name = store(c, SCALED)
    body = assert_error(c.post(f"{API}/do-eval/{name}", json={"envName": "no-such-env"}), 400)
    assert "no-such-env" in body["errorMessage"]


def test_timeout_over_the_maximum_is_400(c: httpx.Client) -> None:
    name = store(c, SCALED)
    body = assert_error(c.post(f"{API}/do-eval/{name}", json={"timeout": 43201}), 400)
    assert "timeout" in body["errorMessage"]
    r = c.post(f"{API}/do-eval/{name}", json={"timeout": 43200})
    assert r.status_code == 200, r.text
    r = c.post(f"{API}/do-eval/{name}", json={"timeout": 30})
    assert r.status_code == 200, r.text


def test_output_limit(make_server: Callable[..., EpeServer]) -> None:
    srv = make_server(EPE_OUTPUT_LIMIT="1000", EPE_MAX_TIMEOUT="60")
    _user, c = srv.new_client()
    with c:
        body = assert_error(inline(c, returning("list(range(1000))")), 400)
        assert body["errorCode"] == 1024
        assert_error(inline(c, returning("'x' * 2000")), 400)
        # Under the limit is fine, and the worker is still fine.
        assert value_of(c, returning("list(range(10))")) == list(range(10))
        body = assert_error(inline(c, returning("1"), timeout=61), 400)
        assert "timeout" in body["errorMessage"]
        assert value_of(c, returning("1"), timeout=60) == 1
