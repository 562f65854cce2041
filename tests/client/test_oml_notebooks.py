"""Oracle's OML4Py sample notebooks, run paragraph by paragraph against a real
``epe serve`` with ``import oml`` (docs/client.md#oracles-sample-notebooks).

The five notebooks (the tour, data selection and manipulation, datastore and script
repository, embedded Python execution, and the REST API one in its tenant-scoped
version) are reconstructed in ``tests/client/notebooks/``: one cell per code paragraph,
doing what the paragraph does with the same ``oml`` calls and arguments. Python cells
run in one namespace per notebook, as a notebook's interpreter runs them (the last
expression is shown, which is where proxies run their SQL); shell cells run their curl
command with bash. Only the connect cell differs from the notebooks. Each notebook's
test checks that every paragraph that uses neither an in-database algorithm nor a
library API since removed ran, and what some of them compute; the figure is printed.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from epe import oml
from tests.serverproc import EpeServer

HERE = Path(__file__).parent / "notebooks"
HEADER = re.compile(r"^# %% (?:\[(\d+)\] ?)?(.*)$", re.M)
# Paragraphs left out of the figure: Oracle's in-database algorithms (not in epe) and
# library APIs removed since the notebooks were written.
EXCLUDED = {"in-database", "removed-api"}
HTTP_STATUS = re.compile(r"(?m)^HTTP/1\.1 (\d{3})")


@dataclass
class Cell:
    number: int | None
    kind: str  # words: connect, shell, in-database, removed-api, stand-in
    source: str


@dataclass
class Outcome:
    ran: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    excluded: dict[int, str] = field(default_factory=dict)
    shell: dict[int, str] = field(default_factory=dict)

    def plain(self) -> int:
        return len(self.ran) + len(self.failed)


def cells(name: str) -> list[Cell]:
    text = (HERE / f"{name}.cells").read_text()
    marks = list(HEADER.finditer(text))
    out = []
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        body = text[mark.end():following.start() if following else len(text)].strip("\n")
        number = int(mark.group(1)) if mark.group(1) else None
        out.append(Cell(number, mark.group(2).strip(), body))
    return out


def run_python(source: str, namespace: dict[str, Any], label: str) -> Any:
    """Run a cell as a notebook does: its last expression's value is shown (repr)."""
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, label, "exec"), namespace)
    if last is None:
        return None
    value = eval(compile(ast.Expression(last.value), label, "eval"), namespace)
    repr(value)  # what the notebook prints: a proxy's rows are queried here
    return value


def run_shell(source: str, env: dict[str, str]) -> str:
    done = subprocess.run(["bash", "-c", "set -e -o pipefail\n" + source], env=env,
                          capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr[-500:]}")
    return done.stdout


@dataclass
class Notebook:
    name: str
    namespace: dict[str, Any]
    outcome: Outcome
    values: dict[int, Any]


class Zeppelin:
    """OML Notebooks' ``z``: ``z.show(x)`` shows a table."""

    def __init__(self) -> None:
        self.shown: list[str] = []

    def show(self, value: Any) -> None:
        self.shown.append(repr(value))


@pytest.fixture(scope="module")
def account(server: EpeServer) -> Iterator[dict[str, str]]:
    user, password = server.add_user()
    for other in ("OMLUSER2", "PYQUSER2"):  # users the notebooks grant to
        with contextlib.suppress(Exception):  # made by an earlier module of this session
            server.add_user(other)
    saved = {k: os.environ.get(k) for k in ("EPE_URL", "EPE_USER", "EPE_PASSWORD")}
    os.environ.update(EPE_URL=server.url, EPE_USER=user, EPE_PASSWORD=password)
    # A notebook whose curl paragraphs use ${token} without getting one: the user has it
    # from an earlier notebook, as the tour shows it.
    yield {"url": server.url, "user": user, "password": password,
           "token": server.token(user, password)}
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    oml.disconnect()


def run_notebook(name: str, account: dict[str, str]) -> Notebook:
    import matplotlib

    matplotlib.use("Agg")
    namespace: dict[str, Any] = {"__name__": "__main__", "z": Zeppelin()}
    env = {**os.environ, "omlserver": account["url"], "oml_server": account["url"],
           "username": account["user"], "password": account["password"],
           "tenant_name": "MYTENANT", "database_name": "MYADW", "token": account["token"],
           "job": ""}
    outcome, values = Outcome(), {}
    for cell in cells(name):
        label = f"<{name} [{cell.number}]>"
        kinds = set(cell.kind.split())
        if "shell" in kinds:
            assert cell.number is not None
            try:
                out = run_shell(cell.source, env)
                outcome.shell[cell.number] = out
                refused = [int(c) for c in HTTP_STATUS.findall(out) if int(c) >= 400]
                if '"errorCode"' in out and not refused:  # curl without -i: the body says
                    refused = [0]
                if refused:
                    raise RuntimeError(f"HTTP {refused[0]}: {out[-300:]}")
            except Exception as e:
                where = outcome.excluded if kinds & EXCLUDED else outcome.failed
                where[cell.number] = f"{cell.kind}: {type(e).__name__}: {e}"
                continue
            outcome.ran.append(cell.number)
            token = re.search(r'"accessToken"\s*:\s*"([^"]+)"', out)
            if token:
                env["token"] = token.group(1)
            job = re.search(r"(?im)^location: \S+/jobs/(\w+)", out)
            if job:
                env["job"] = job.group(1)
            continue
        try:
            value = run_python(cell.source, namespace, label)
        except Exception as e:
            if cell.number is None:
                raise
            where = outcome.excluded if kinds & EXCLUDED else outcome.failed
            where[cell.number] = f"{cell.kind}: {type(e).__name__}: {e}"
            continue
        if cell.number is None:  # connect, or a stand-in of ours
            continue
        values[cell.number] = value
        if kinds & EXCLUDED:
            outcome.excluded[cell.number] = f"{cell.kind}: ran"
        else:
            outcome.ran.append(cell.number)
    ran, plain = len(outcome.ran), outcome.plain()
    print(f"{name}: {ran} of {plain} paragraphs ran unchanged; excluded: {outcome.excluded}")
    return Notebook(name, namespace, outcome, values)


def check_ran(notebook: Notebook) -> None:
    """Every counted paragraph ran."""
    assert notebook.outcome.failed == {}, notebook.outcome.failed
    for number, why in notebook.outcome.excluded.items():
        if why.startswith("in-database"):  # refused, naming why (or a name it never made)
            assert "in-database machine learning" in why or "NameError" in why, (number, why)


def test_tour(account: dict[str, str]) -> None:
    nb = run_notebook("tour", account)
    check_ran(nb)
    ns = nb.namespace
    pd.testing.assert_frame_equal(ns["BREASTCANCER"].describe(),
                                  ns["BREASTCANCER"].pull().describe(), rtol=1e-9)
    assert any("statistic" in shown for shown in ns["z"].shown)  # [7]: reset and shown
    assert len(ns["IRIS_filtered"]) == 30
    assert ns["IRIS_2"].columns == ["SEPAL_LENGTH_l", "SEPAL_WIDTH_l", "PETAL_LENGTH_l",
                                    "PETAL_WIDTH_l", "SPECIES", "description_r"]
    assert ns["IRIS_2"].shape == (150, 6)
    assert isinstance(ns["is_large_petal"], oml.Boolean)
    assert list(nb.values[47].columns) == ["SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH",
                                           "PETAL_WIDTH", "SEPAL_LEN_SQ"]
    assert nb.values[53].shape == (9, 2)  # do_eval of the stored script: its DataFrame
    assert sorted(nb.outcome.excluded) == [9, 11, 13, 15, 20, 21, 25, 27, 29, 42]
    assert '"IMAGE"' in nb.outcome.shell[60]  # the REST call gets the PNGs
    assert "HTTP/1.1 200" in nb.outcome.shell[56]


def test_data_selection_and_manipulation(account: dict[str, str]) -> None:
    nb = run_notebook("data_selection", account)
    check_ran(nb)
    ns, v = nb.namespace, nb.values
    assert [len(ns[f"IRIS_filtered{i}"]) for i in (1, 2, 3)] == [24, 30, 7]
    assert v[13].pull() == [1, 2, 3, 4, 5, 4, 3, 6.7, 7.2, 5]  # num1.append(num2)
    assert v[14].columns == ["id", "val"] and v[14].pull()["id"].tolist()[5:] == \
        [4, 3, 6.7, 7.2, 5]
    assert v[18].columns == ["id", "val", "id3", "num", "num5", "ch"]  # auto_name
    assert v[19].columns == ["id", "val", "ID", "round(exp(2*num))", "New_num", "New_ch"]
    assert v[21].shape == (25, 4) and v[21].columns == ["id_l", "val_l", "num_r", "ch_r"]
    assert v[22].columns == ["id", "val.l", "num.r"]
    assert len(v[26]) == 3 and len(v[27]) == 6 and len(v[28]) == 5
    assert len(v[29]) == 6 and len(v[30]) == 4
    counts = v[50].pull()
    assert counts["count"].tolist()[0] == 5  # F, R
    table = v[51].set_index("GENDER")
    assert table.loc["F", "count_(R)"] == pytest.approx(5 / 6)
    assert list(v[72].index) == ["count", "unique", "top", "freq", "mean", "std", "min",
                                 "25%", "50%", "75%", "max"]
    assert "boolean_col" in ns["MY_DF4"].columns  # rename is in place, as OML's
    assert v[74]["boolean_col"] == 2 and v[74]["numeric_col"] == pytest.approx(6.545)
    assert sorted(nb.outcome.excluded) == [45]
    assert [len(f[1]) for f in ns["folds"]] and \
        sum(len(f[1]) for f in ns["folds"]) == 1797


def test_datastore_and_script_repository(account: dict[str, str]) -> None:
    nb = run_notebook("datastore_and_scripts", account)
    check_ran(nb)
    ns, v = nb.namespace, nb.values
    assert v[2] is False  # oml.core.methods.__checkRole("PYQADMIN"): the account is no admin
    assert sorted(nb.outcome.excluded) == [6, 14]
    assert v[17].columns.tolist() == ["datastore_name", "grantee"]
    assert v[19] == ["iris", "oml_boston", "oml_diabetes"]
    # The proxies saved in the datastore came back as proxies, still readable (the
    # pushed tables they read are kept, as OML keeps them).
    assert isinstance(ns["oml_diabetes"], oml.DataFrame)
    assert ns["oml_diabetes"].shape == (442, 11)
    assert ns["oml_boston"].columns[-1] == "Value"
    assert v[25].columns.tolist() == ["owner", "datastore_name", "object_count"]
    assert v[37].values.tolist() == [["ds_pymodel", "OMLUSER2"]]
    assert v[48].columns.tolist() == ["name", "script", "description", "date"]
    assert "MyLM_function2" in v[48]["name"].tolist()
    assert set(v[48]["description"]) == {None}
    assert v[52].values.tolist() == [["MyLM_function2", "OMLUSER2"]]
    assert v[66].columns.tolist()[:2] == ["owner", "name"]
    assert "MyLM_function2" not in v[74]["name"].tolist()
    # A saved proxy loaded inside a function is the worker's own proxy of the same rows.
    oml.ds.save(objs={"d": ns["oml_diabetes"]}, name="ds_proxy_check", overwrite=True)

    def rows_of_saved_proxy() -> tuple[int, int]:
        import oml
        proxy = oml.ds.load(name="ds_proxy_check", to_globals=False)["d"]
        return proxy.pull().shape

    assert oml.do_eval(rows_of_saved_proxy) == (442, 11)


def test_embedded_python_execution(account: dict[str, str]) -> None:
    nb = run_notebook("embedded_execution", account)
    check_ran(nb)
    v = nb.values
    assert v[12].coef_[0][0] == pytest.approx(2.2299405)  # it ran here too: import oml
    scored = v[23]  # func_value: one table with the prototype's columns, in the database
    assert isinstance(scored, oml.DataFrame)
    assert scored.columns == ["SPECIES", "PETAL_LENGTH", "PRED_PETAL_LENGTH"]
    assert scored.shape == (5, 3) and v[24].shape == (5, 3)  # res.head()
    assert scored.pull()["PRED_PETAL_LENGTH"].tolist() == pytest.approx(
        nb.namespace["iris_df"].head()["PETAL_WIDTH"] * 2.2299405 + 1.08355803, rel=1e-6)
    assert sorted(nb.namespace["mod"].classes_) == ["setosa", "versicolor", "virginica"]
    counted = v[40].pull().sort_values("SPECIES")
    assert counted.values.tolist() == [["setosa", 50], ["versicolor", 50],
                                       ["virginica", 50]]
    assert sorted(nb.namespace["res"].pull()["id"]) == list(range(1, 10))  # [59]
    assert len(v[42]) == 12
    assert nb.outcome.excluded == {}
    for number in (48, 53, 57):
        answer = json.loads(nb.outcome.shell[number])
        assert "result" in answer, answer
        images = answer["result"]
        assert images and all(i["IMAGE"] for i in images)


def test_rest_api_with_tenant_scoped_urls(account: dict[str, str]) -> None:
    nb = run_notebook("rest_api", account)
    check_ran(nb)
    shell = nb.outcome.shell
    assert "HTTP/1.1 200" in shell[3]  # the token, at the tenant-scoped path
    assert "group_count" in shell[15]
    assert "HTTP/1.1 200" in shell[17] and '"setosa"' in shell[17]
    assert "HTTP/1.1 201" in shell[21] and "HTTP/1.1 201" in shell[23]
    assert re.search(r"HTTP/1.1 (302|202)", shell[25])
    assert "HTTP/1.1 200" in shell[27] and '"versicolor"' in shell[27]
    assert "_residues" in nb.outcome.excluded[35]  # scikit-learn dropped the attribute
    counts = nb.namespace["res"].pull()
    assert counts.shape == (3, 3) and counts["COUNT"].tolist() == [50, 50, 50]
