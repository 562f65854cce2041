"""The Python client (docs/client.md) against a real ``epe serve``: proxies, how ``func``
travels, keyword arguments and values of any type, result shapes, errors mapped to
``epe.errors``, token refresh, async jobs, scripts, datastores and grants."""

from __future__ import annotations

import datetime as dt
import functools
import gc
import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from epe import errors, oml
from epe.client import _connection, _functions
from tests.serverproc import API, EpeServer, unique_name, wait_for

PNG = b"\x89PNG\r\n\x1a\n"
SCALE = 3  # a module-level name: functions using it travel pickled


class Point:
    """A class of this test module, which the server cannot import."""

    def __init__(self, x: float, y: float) -> None:
        self.x, self.y = x, y

    def norm(self) -> float:
        return float((self.x ** 2 + self.y ** 2) ** 0.5)


@pytest.fixture(scope="module")
def users(server: EpeServer) -> dict[str, tuple[str, str]]:
    return {"alice": server.add_user(), "bob": server.add_user()}


def login(server: EpeServer, user: tuple[str, str]) -> None:
    oml.connect(server.url, user[0], user[1])


@pytest.fixture
def alice(server: EpeServer, users: dict[str, tuple[str, str]]) -> Iterator[str]:
    login(server, users["alice"])
    yield users["alice"][0]
    oml.disconnect()


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"ID": [1, 2, 3, 4, 5, 6], "GRP": ["a", "b", "a", "b", "a", "c"],
                         "X": [1.5, 2.5, 3.5, 4.5, 5.5, 6.5],
                         "odd name": ["p", "q", "r", "s", "t", "u"]})


@pytest.fixture
def table(alice: str, frame: pd.DataFrame) -> Iterator[oml.DataFrame]:
    name = unique_name("T")
    proxy = oml.create(frame, table=name)
    yield proxy
    if oml.isconnected():
        oml.drop(table=name)


# -- connecting ---------------------------------------------------------------------------


def test_connect_from_the_environment(server: EpeServer, users: dict[str, tuple[str, str]],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPE_URL", server.url)
    monkeypatch.setenv("EPE_USER", users["bob"][0].lower())
    monkeypatch.setenv("EPE_PASSWORD", users["bob"][1])
    oml.connect()
    assert oml.isconnected()
    assert oml.do_eval("def f():\n    return 'hi'") == "hi"
    oml.disconnect()
    assert not oml.isconnected()
    with pytest.raises(RuntimeError, match=r"oml\.connect"):
        oml.do_eval("def f():\n    return 1")


def test_connect_needs_every_part(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("EPE_URL", "EPE_USER", "EPE_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="EPE_PASSWORD"):
        oml.connect("http://127.0.0.1:1", "someone")


def test_a_wrong_password_is_unauthorized(server: EpeServer,
                                          users: dict[str, tuple[str, str]]) -> None:
    with pytest.raises(errors.Unauthorized) as e:
        oml.connect(server.url, users["alice"][0], "wrong")
    assert e.value.code == 2001
    assert not oml.isconnected()


def test_an_unreachable_server_is_a_connection_error() -> None:
    with pytest.raises(ConnectionError, match="cannot reach"):
        oml.connect("http://127.0.0.1:9", "someone", "pw")


def test_disconnect_revokes_the_token(alice: str, server: EpeServer) -> None:
    token = _connection.current().token()
    oml.disconnect()
    with server.http() as http:
        r = http.get(f"{API}/scripts", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


def test_the_token_is_refreshed_before_it_expires(server: EpeServer) -> None:
    user, password = server.add_user()
    oml.connect(server.url, user, password)
    connection = _connection.current()
    first = connection.token()
    assert connection._token is not None
    connection._token.expires = time.monotonic() + 1  # inside the refresh margin
    assert oml.do_eval("def f():\n    return 1") == 1
    assert (connection.logins, connection.refreshes) == (1, 1)
    assert connection.token() != first
    oml.disconnect()


def test_after_the_chain_ends_it_logs_in_again(make_server: Any) -> None:
    srv = make_server(EPE_TOKEN_LIFETIME="1", EPE_TOKEN_CHAIN_LIFETIME="2")
    user, password = srv.add_user()
    oml.connect(srv.url, user, password)
    connection = _connection.current()
    for _ in range(3):  # each sleep outlives a token; the last one the chain too
        time.sleep(1.2)
        assert oml.do_eval("def f():\n    return 2") == 2
    assert connection.logins >= 2
    oml.disconnect()


def test_a_revoked_token_is_replaced_by_a_new_login(alice: str, server: EpeServer) -> None:
    connection = _connection.current()
    token = connection.token()
    with server.http() as http:
        http.post("/omlusers/api/oauth2/v1/token/revoke",
                  headers={"Authorization": f"Bearer {token}"}).raise_for_status()
    assert oml.do_eval("def f():\n    return 3") == 3
    assert connection.logins == 2


# -- data proxies -------------------------------------------------------------------------


def test_create_then_columns_shape_head_and_pull(table: oml.DataFrame,
                                                 frame: pd.DataFrame) -> None:
    assert table.columns == ["ID", "GRP", "X", "odd name"]
    assert table.shape == (6, 4)
    assert len(table) == 6
    assert list(table) == table.columns
    pulled = table.pull()
    assert pulled.equals(frame)  # types kept: the upload is Parquet
    assert table.head(2).pull().equals(frame.head(2))
    assert table.dtypes["ID"] is oml.Float and table.dtypes["GRP"] is oml.String


def test_column_selection(table: oml.DataFrame, frame: pd.DataFrame) -> None:
    assert table["X"].pull() == frame["X"].tolist()  # a column: OML's pull() is a list
    assert isinstance(table["X"], oml.Float)
    assert table[["GRP", "ID"]].pull().equals(frame[["GRP", "ID"]])
    assert table[:, ["odd name", "X"]].pull().equals(frame[["odd name", "X"]])
    assert table[["grp"]].columns == ["GRP"]  # matched ignoring case, as SQL does
    assert oml.DataFrame(table["GRP"]).columns == ["GRP"]
    assert table[["X", "ID"]].shape == (6, 2)
    assert '"odd name"' in table[["odd name"]].sql
    with pytest.raises(KeyError, match="NOPE"):
        table[["ID", "NOPE"]]
    with pytest.raises(KeyError):
        table['X" FROM x; --']
    with pytest.raises(TypeError):
        table[0]
    with pytest.raises(TypeError):
        oml.DataFrame(pd.DataFrame())


def test_sync_a_table_a_query_and_a_pattern(table: oml.DataFrame) -> None:
    assert table.table is not None
    again = oml.sync(table=table.table.lower())
    assert again.table == table.table
    assert again.shape == (6, 4)
    query = oml.sync(query=f'SELECT "GRP", sum("X") AS "S" FROM "{table.table}" '
                           'GROUP BY "GRP" ORDER BY "GRP"')
    assert query.columns == ["GRP", "S"]
    assert query.pull()["S"].tolist() == [10.5, 7.0, 6.5]
    found = oml.sync(table=f"^{table.table}$", regex_match=True)
    assert list(found) == [table.table]
    assert oml.dir(table.table) == [table.table]
    with pytest.raises(errors.NotFound):
        oml.sync(table="NO_SUCH_TABLE")
    with pytest.raises(errors.InvalidRequest, match="input query failed"):
        oml.sync(query="SELECT nope FROM nowhere")


def test_create_refuses_an_existing_table(table: oml.DataFrame, frame: pd.DataFrame) -> None:
    assert table.table is not None
    with pytest.raises(errors.Conflict) as e:
        oml.create(frame, table=table.table)
    assert e.value.code == 4009


def test_push_makes_a_temporary_table(alice: str, frame: pd.DataFrame) -> None:
    pushed = oml.push(frame)
    name = pushed.table
    assert name is not None and name in oml.dir()
    assert pushed.pull().equals(frame)
    part = pushed[["X"]]  # keeps the table alive
    del pushed
    gc.collect()
    assert name in oml.dir()
    assert part.shape == (6, 1)
    del part
    gc.collect()
    assert name not in oml.dir()


def test_disconnect_drops_pushed_tables(server: EpeServer, users: dict[str, tuple[str, str]],
                                        frame: pd.DataFrame) -> None:
    login(server, users["alice"])
    pushed = oml.push(frame)
    oml.disconnect()
    login(server, users["alice"])
    assert pushed.table not in oml.dir()
    oml.disconnect()


def test_a_proxy_shows_its_rows(table: oml.DataFrame) -> None:
    shown = repr(table)
    assert "odd name" in shown and "[oml.DataFrame: 6 rows x 4 columns]" in shown
    assert "<table" in table._repr_html_()


# -- how func travels ---------------------------------------------------------------------


def plain(x: int, *, k: int = 2) -> int:
    return x * k


def uses_a_module_global(x: int) -> int:
    return x * SCALE


def uses_a_helper(x: int) -> float:
    return Point(x, 0).norm()


def decorated(fn: Any) -> Any:
    @functools.wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        return ("decorated", fn(*args, **kwargs))
    return inner


@decorated
def wrapped(x: int) -> int:
    return x + 1


def make_closure(n: int) -> Any:
    def add(x: int) -> int:
        return x + n
    return add


def test_how_each_kind_of_func_travels() -> None:
    assert _functions.ship(plain).source is not None
    assert _functions.ship(uses_a_module_global).function is uses_a_module_global
    assert _functions.ship(uses_a_helper).function is uses_a_helper
    assert _functions.ship(lambda: 1).function is not None
    assert _functions.ship(make_closure(1)).function is not None
    assert _functions.ship(wrapped).function is wrapped
    assert _functions.ship("my_script") == _functions.Shipped(name="my_script")
    assert _functions.ship("my_script", "BOB") == _functions.Shipped(name="my_script",
                                                                     owner="BOB")
    assert _functions.ship("def f():\n    return 1").source == "def f():\n    return 1"
    # annotations are not evaluated in the worker, where their names may be missing
    source = _functions.ship(plain).source
    assert source is not None and source.startswith("from __future__ import annotations")


@pytest.mark.usefixtures("alice")
def test_every_kind_of_func_runs() -> None:
    assert oml.index_apply(2, plain) == [2, 4]
    assert oml.index_apply(2, plain, k=10) == [10, 20]
    assert oml.index_apply(2, uses_a_module_global) == [3, 6]
    assert oml.do_eval(uses_a_helper, x=3) == 3.0
    assert oml.do_eval(lambda: "lambda") == "lambda"
    assert oml.index_apply(3, make_closure(100)) == [101, 102, 103]
    assert oml.do_eval(wrapped, x=1) == ("decorated", 2)
    assert oml.do_eval(functools.partial(plain, 5, k=3)) == 15
    assert oml.do_eval("def f(a, b=2):\n    return a * b", a=21) == 42
    assert oml.do_eval("g = lambda: 'bound lambda'") == "bound lambda"


@pytest.mark.usefixtures("alice")
def test_keyword_arguments_of_any_type_and_values_as_themselves() -> None:
    def echo(**kw: Any) -> Any:
        return kw

    values: dict[str, Any] = {
        "array": np.arange(6).reshape(2, 3), "frame": pd.DataFrame({"A": [1, 2]}),
        "when": dt.datetime(2024, 5, 6, 7, 8, 9), "raw": b"\x00\xff", "items": {1, 2},
        "number": complex(1, 2), "point": Point(3, 4), "nothing": None,
        "nested": {"t": (1, [2, {3}])}}
    back = oml.do_eval(echo, **values)
    assert back.keys() == values.keys()
    assert np.array_equal(back["array"], values["array"])
    assert back["frame"].equals(values["frame"])
    for key in ("when", "raw", "items", "number", "nothing", "nested"):
        assert back[key] == values[key]
    assert isinstance(back["point"], Point) and back["point"].norm() == 5.0


@pytest.mark.usefixtures("alice")
def test_result_shapes(table: oml.DataFrame) -> None:
    chunks = oml.row_apply(table, lambda df: int(df["ID"].sum()), rows=4)
    assert chunks == [10, 11]  # not DataFrames: one value per chunk
    rows = oml.row_apply(table, lambda df: df[["ID"]] * 2, rows=4)
    assert isinstance(rows, pd.DataFrame)
    assert rows["ID"].tolist() == [2, 4, 6, 8, 10, 12]
    assert rows.index.tolist() == list(range(6))
    groups = oml.group_apply(table, index="GRP", orderby=table["X"],
                             func=lambda df: df["ID"].tolist())
    assert groups == {"a": [1, 3, 5], "b": [2, 4], "c": [6]}
    ordered = oml.group_apply(table, index=oml.DataFrame(table["GRP"]),
                                  func=lambda df: df["X"].tolist(), orderby=["X"])
    assert ordered["b"] == [2.5, 4.5]
    assert oml.table_apply(table[["X"]], lambda a: a.shape) == (6, 1)  # numeric: an ndarray
    assert oml.table_apply(table, lambda df: type(df).__name__) == "DataFrame"
    assert oml.table_apply(table[["X"]], lambda df: type(df).__name__,
                           oml_input_type="pandas.DataFrame") == "DataFrame"
    assert oml.index_apply(3, lambda i: {"i": i}, parallel=True) == [{"i": 1}, {"i": 2},
                                                                     {"i": 3}]


def draw(i: int = 0) -> int:
    import matplotlib.pyplot as plt
    plt.plot([1, 2, 3])
    plt.title(f"plot {i}")
    plt.show()
    return i


@pytest.mark.usefixtures("alice")
def test_graphics_in_each_shape(table: oml.DataFrame) -> None:
    one = oml.do_eval(draw, graphics=True)
    assert isinstance(one, oml.DataImage)
    assert one.dat == 0 and len(one.img) == 1 and one.img[0].startswith(PNG)
    assert one._repr_png_() == one.img[0]
    per_index = oml.index_apply(2, draw, graphics=True)
    assert [d.dat for d in per_index] == [1, 2]
    assert all(len(d.img) == 1 for d in per_index)
    per_group = oml.group_apply(table, index="GRP", func=lambda df: len(df), graphics=True)
    assert {k: v.dat for k, v in per_group.items()} == {"a": 3, "b": 2, "c": 1}
    assert all(v.img == [] for v in per_group.values())
    per_chunk = oml.row_apply(table, lambda df: len(df), rows=5,
                              oml_graphics_flag=True)
    assert [d.dat for d in per_chunk] == [5, 1]


def test_jupyter_shows_the_images_then_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[Any] = []
    display = types.ModuleType("IPython.display")

    class Image:
        def __init__(self, data: bytes, format: str) -> None:
            self.data = data

    display.Image = Image
    display.display = shown.append
    monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    image = oml.DataImage("value", [PNG + b"1", PNG + b"2"])
    image._ipython_display_()
    assert [s.data for s in shown[:2]] == [PNG + b"1", PNG + b"2"]
    assert shown[2] == "value"
    assert "2 PNG image(s)" in repr(image)


# -- errors -------------------------------------------------------------------------------


def fails(x: int) -> float:
    print("about to divide")
    return 1 / x


@pytest.mark.usefixtures("alice")
def test_a_failing_function_raises_script_failed_with_its_traceback() -> None:
    with pytest.raises(errors.ScriptFailed) as e:
        oml.do_eval(fails, x=0)
    error = e.value
    assert error.code == 1011 and error.status == 400
    assert error.message == "ZeroDivisionError: division by zero"
    assert "return 1 / x" in error.traceback
    assert error.stdout == "about to divide\n"
    assert error.extra["traceback"] == error.traceback
    notes = "\n".join(error.__notes__)
    assert "Traceback on the server" in notes and "about to divide" in notes


@pytest.mark.usefixtures("alice")
def test_errors_map_to_the_servers_classes(table: oml.DataFrame) -> None:
    with pytest.raises(errors.ScriptFailed) as failed:
        oml.index_apply(3, lambda i: 1 / (i - 2))
    assert failed.value.extra["index"] == 2
    with pytest.raises(errors.ScriptFailed) as chunk:
        oml.row_apply(table, lambda df: 1 / int(df["ID"][0] - 5), rows=2)
    assert chunk.value.extra["chunk"] == 2
    with pytest.raises(errors.NotFound) as missing:
        oml.do_eval("no_such_script")
    assert missing.value.code == 4004
    with pytest.raises(errors.ScriptInvalid):
        oml.do_eval("def f(:\n    pass")
    with pytest.raises(errors.InvalidRequest):
        oml.row_apply(table, lambda df: 1, rows=1, oml_input_type="nonsense")
    with pytest.raises(errors.InvalidRequest, match="groupBy"):
        oml.group_apply(table, index="NOPE", func=lambda df: 1)
    with pytest.raises(TypeError, match="cannot be pickled"):
        oml.do_eval(lambda gen: 1, gen=(x for x in range(3)))  # cannot be pickled
    with pytest.raises(errors.TimeLimitExceeded):
        oml.do_eval("def f():\n    import time\n    time.sleep(30)", oml_timeout=1)


# -- async jobs ---------------------------------------------------------------------------


@pytest.mark.usefixtures("alice")
def test_a_job_runs_and_its_value_comes_back() -> None:
    job = oml.do_eval(lambda: (print("from the job"), Point(6, 8))[1], oml_async_flag=True)
    assert isinstance(job, oml.Job)
    assert job.wait(progress=False) == "FINISH"
    assert job.done()
    value = job.result()
    assert isinstance(value, Point) and value.norm() == 10.0
    assert job.log() == "from the job\n"
    assert job.url.endswith("/jobs/" + job.id)
    job.cancel()
    with pytest.raises(errors.NotFound):
        job.status()


@pytest.mark.usefixtures("alice")
def test_a_failed_job_raises_its_error() -> None:
    job = oml.do_eval(fails, oml_async_flag=True, x=0)
    assert job.wait(progress=False) == "FAILED"
    with pytest.raises(errors.ScriptFailed, match="division by zero") as e:
        job.result()
    assert "return 1 / x" in e.value.traceback


@pytest.mark.usefixtures("alice")
def test_a_running_job_can_be_cancelled() -> None:
    job = oml.do_eval("def f():\n    import time\n    time.sleep(60)", oml_async_flag=True)
    wait_for(lambda: job.status() == "RUNNING")
    assert not job.done()
    with pytest.raises(TimeoutError):
        job.wait(progress=False, timeout=0.2)
    job.cancel()
    with pytest.raises(errors.NotFound):
        job.result()


@pytest.mark.usefixtures("alice")
def test_a_job_keeps_its_pushed_input_alive(frame: pd.DataFrame) -> None:
    job = oml.table_apply(oml.push(frame), lambda df: len(df), oml_async_flag=True)
    gc.collect()
    assert job.result() == 6


# -- scripts, datastores, grants ----------------------------------------------------------


def test_scripts_and_grants_between_users(server: EpeServer,
                                          users: dict[str, tuple[str, str]]) -> None:
    alice_name, bob_name = users["alice"][0], users["bob"][0]
    name, shared = unique_name("s"), unique_name("g")
    login(server, users["alice"])
    oml.script.create(name, func=plain)
    oml.script.create(shared, func=lambda: "global", is_global=True, description="a lambda")
    with pytest.raises(errors.Conflict):
        oml.script.create(name, func=plain)
    oml.script.create(name, func="def plain(x):\n    return -x", overwrite=True)
    mine = oml.script.dir(name=name)
    assert mine["script"].tolist() == ["def plain(x):\n    return -x"]
    assert list(mine.columns) == ["name", "script", "description", "date"]  # OML's
    assert mine["description"].tolist() == [None]
    everything = oml.script.dir(name=f"^({name}|{shared})$", regex_match=True, sctype="all")
    assert list(everything.columns) == ["owner", "name", "script", "description", "date"]
    assert sorted(everything["name"]) == sorted([name, shared])
    assert set(everything["owner"]) == {alice_name, "PYQSYS"}
    loaded = oml.script.load(name)
    assert (loaded.name, loaded.owner) == (name, alice_name)
    assert loaded(4) == -4  # runs here
    assert oml.do_eval(loaded, x=5) == -5  # runs there, by name
    oml.grant(name, typ="pyqscript", user=bob_name)
    given = oml.script.dir(sctype="grant")
    assert list(given.columns) == ["name", "grantee"]
    assert given.values.tolist() == [[name, bob_name]]

    login(server, users["bob"])
    assert oml.do_eval(name, func_owner=alice_name, x=1) == -1
    assert oml.do_eval(shared) == "global"
    granted = oml.script.dir(sctype="granted")  # others on this server may grant to PUBLIC
    assert name in granted["name"].tolist()
    assert bob_name not in set(granted["owner"]) and "PYQSYS" not in set(granted["owner"])
    assert oml.script.dir(name=shared, sctype="global")["description"].tolist() == ["a lambda"]
    with pytest.raises(errors.NotFound):
        oml.script.drop(shared, is_global=True)  # only its creator drops it

    login(server, users["alice"])
    oml.revoke(name, typ="pyqscript", user=bob_name)
    oml.script.drop(shared, is_global=True)
    oml.script.drop(name)
    oml.script.drop(name, silent=True)
    with pytest.raises(errors.NotFound):
        oml.script.drop(name)

    login(server, users["bob"])
    with pytest.raises(errors.NotFound):
        oml.do_eval(name, func_owner=alice_name, x=1)
    with pytest.raises(ValueError, match="sctype"):
        oml.script.dir(sctype="granted-to-whom")
    oml.disconnect()


def test_datastores_from_the_client(server: EpeServer,
                                    users: dict[str, tuple[str, str]]) -> None:
    alice_name = users["alice"][0]
    store = unique_name("ds")
    login(server, users["alice"])
    objects = {"point": Point(1, 1), "frame": pd.DataFrame({"A": [1, 2, 3]}),
               "model": np.polyfit([0, 1, 2], [1, 3, 5], 1)}
    oml.ds.save(objects, store, description="from the client", grantable=True)
    with pytest.raises(errors.Conflict):
        oml.ds.save(objects, store)
    oml.ds.save({"extra": 42}, store, append=True)
    listing = oml.ds.dir(name=store)
    assert listing["object_count"].tolist() == [4]
    assert listing["description"].tolist() == ["from the client"]
    described = oml.ds.describe(store)
    assert sorted(described["object_name"]) == ["extra", "frame", "model", "point"]
    assert described.set_index("object_name")["row_count"]["frame"] == 3
    loaded = oml.ds.load(store, to_globals=False)
    assert isinstance(loaded, dict)
    assert isinstance(loaded["point"], Point) and loaded["frame"].equals(objects["frame"])
    assert loaded["extra"] == 42
    names = oml.ds.load(store, objs=["extra"])
    assert names == ["extra"] and globals().pop("extra") == 42
    # Functions see the same datastore.
    assert oml.do_eval(f"def f():\n    import oml\n    return oml.ds.load('{store}', "
                       "objs=['extra'], to_globals=False)['extra']") == 42
    oml.grant(store, user=users["bob"][0])

    login(server, users["bob"])
    assert oml.ds.load(store, objs=["extra"], owner=alice_name, to_globals=False) == \
        {"extra": 42}
    assert oml.ds.dir(dstype="granted")["owner"].tolist() == [alice_name]
    with pytest.raises(errors.NotFound):
        oml.ds.delete(store)

    login(server, users["alice"])
    oml.revoke(store, user=users["bob"][0])
    assert oml.ds.delete(store, objs=["extra"]) == store
    assert oml.ds.describe(store)["object_name"].size == 3
    oml.ds.delete(store)
    with pytest.raises(errors.NotFound):
        oml.ds.load(store)
    with pytest.raises(TypeError):
        oml.ds.save({}, store)
    with pytest.raises(ValueError, match="typ"):
        oml.grant(store, typ="table")
    oml.disconnect()


def test_oml_check_role_answers_for_the_signed_in_user(server: EpeServer) -> None:
    """``oml.core.methods.__checkRole``, which OML4Py's sample notebooks call: PYQADMIN is
    epe's admin, another role a group the user is in."""
    check_role = oml.core.methods.__checkRole
    admin, admin_pw = server.add_user(admin=True)
    member, member_pw = server.add_user()
    team = unique_name("TEAM")
    with server.client(admin, admin_pw) as c:
        c.put(f"/omlusers/api/v1/groups/{team}/members/{member}").raise_for_status()
    try:
        oml.connect(server.url, admin, admin_pw)
        assert check_role("PYQADMIN") is True
        assert check_role("pyqadmin") is True
        assert check_role(team) is False  # an admin is not in every group
        oml.connect(server.url, member, member_pw)
        assert check_role("PYQADMIN") is False
        assert check_role(team.lower()) is True
        assert check_role("SOME_OTHER_ROLE") is False
        with pytest.raises(TypeError, match="non-empty string"):
            check_role("")
    finally:
        oml.disconnect()
