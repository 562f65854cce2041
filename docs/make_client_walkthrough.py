"""Print the walk-through of docs/client.md from a real run.

Starts ``epe serve`` with a temporary data folder on 127.0.0.1 (port 8080 unless
``--port`` says otherwise), loads ``epe demo`` (OMLUSER, IRIS, example scripts),
then runs the notebook cells below one by one as Jupyter would: each cell's
source is registered with ``linecache`` as IPython does, so functions defined in
cells travel as their source; what a cell prints, and the value of its last
expression, are its output. Then the CLI section runs ``epe`` commands against
the same server. The whole page section is printed as Markdown to stdout.

Run: ``.venv/bin/python docs/make_client_walkthrough.py [--port P] > /tmp/walk.md``
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import linecache
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

EPE = [sys.executable, "-m", "epe"]
PASSWORD = "demo-Secret1"
_READY = re.compile(r"epe serving on (http://\S+)")

CELLS = [
    '''from epe import oml
oml.connect(url="{url}", user="OMLUSER", password="demo-Secret1")
oml.isconnected()''',
    '''IRIS = oml.sync(table="IRIS")
print(IRIS.columns)
print(IRIS.shape)
IRIS.head()''',
    '''def build_lm_1(dat):
    from sklearn import linear_model
    regr = linear_model.LinearRegression()
    X = dat[["PETAL_WIDTH"]]
    y = dat[["PETAL_LENGTH"]]
    regr.fit(X, y)
    return regr

mod = oml.table_apply(data=IRIS, func=build_lm_1)
print(type(mod))
mod.coef_, mod.intercept_''',
    '''def score_lm_1(dat, model):
    import pandas as pd
    pred = model.predict(dat[["PETAL_WIDTH"]])
    return pd.concat([dat[["SPECIES", "PETAL_LENGTH"]],
                      pd.DataFrame(pred, columns=["PRED_PETAL_LENGTH"])], axis=1)

res = oml.row_apply(IRIS, func=score_lm_1, rows=10, model=mod)
print(res.shape)
res.tail(3)''',
    '''def group_count(dat):
    import pandas as pd
    return pd.DataFrame([(dat["SPECIES"][0], dat["SEPAL_LENGTH"][0], dat.shape[0])],
                        columns=["SPECIES", "SEPAL_LENGTH", "COUNT"])

res = oml.group_apply(IRIS, index=oml.DataFrame(IRIS["SPECIES"]), func=group_count,
                      oml_input_type="pandas.DataFrame")
for species, frame in res.items():
    print(species, frame.to_dict("records"))''',
    '''oml.index_apply(times=12, func="compute_random_mean")''',
    '''res = oml.do_eval(func="RandomRedDots", graphics=True)
print(len(res.img), "images;", res.img[0][:8])
res.dat.head(3)''',
    '''oml.script.create("build_lm_1", func=build_lm_1, overwrite=True)
oml.script.dir(name="build_lm_1")[["name", "description"]]''',
    '''f = oml.script.load("build_lm_1")
print(f.source)
oml.table_apply(data=IRIS, func="build_lm_1").coef_''',
    '''oml.ds.save(objs={"regr": mod}, name="ds_pymodel", description="petal model",
            overwrite=True)
print(oml.ds.dir())
oml.ds.describe(name="ds_pymodel")''',
    '''oml.ds.load(name="ds_pymodel", objs=["regr"])
regr.coef_''',
    '''job = oml.index_apply(times=12, func="compute_random_mean", parallel=2,
                      oml_async_flag=True)
job.wait(progress=True)''',
    '''job.result()[:3]''',
    '''scale = 10
oml.index_apply(times=3, func=lambda i: i * scale)''',
    '''import pandas as pd
small = oml.push(pd.DataFrame({"ID": [1, 2, 3], "NAME": ["a", "b", "c"]}))
small[["NAME"]].pull()''',
    '''def fails(dat):
    n = len(dat)
    print("rows:", n)
    return n / (n - 150)

try:
    oml.table_apply(data=IRIS, func=fails)
except Exception as e:
    print(type(e).__name__, e.code, e.message)
    print(e.traceback)
    print(e.stdout)''',
    '''oml.disconnect()''',
]

COMMANDS = [
    "epe table load iris.csv --name IRIS2",
    "epe table list",
    "epe script push count.py --name count_rows --description 'rows of the input'",
    "epe script list",
    "epe run table-apply count_rows --input IRIS2",
    "epe run group-apply count_rows --input IRIS2 --group-by SPECIES",
    "epe run index-apply compute_random_mean --times 3",
    "epe run do-eval hello_world",
    "epe run index-apply compute_random_mean --times 12 --async",
    "epe job watch $JOB",
    "epe job result $JOB",
    "epe job list",
]


def serve(data_dir: Path, port: int, env: dict[str, str]) -> tuple[Any, str]:
    proc = subprocess.Popen([*EPE, "serve", "--data-dir", str(data_dir), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if (m := _READY.search(line)) and not ready.is_set():
                found.append(m.group(1))
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(120):
        proc.terminate()
        raise RuntimeError("epe serve did not start")
    return proc, found[0]


def run_cell(number: int, source: str, namespace: dict[str, Any]) -> str:
    """Run one cell as Jupyter does: its output is what it printed and its last value."""
    filename = f"<cell {number}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    tree = ast.parse(source, filename)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        exec(compile(tree, filename, "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), filename, "eval"), namespace)
            if value is not None:
                print(repr(value))
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPE_")}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "epe-data"
        subprocess.run([*EPE, "demo", "--data-dir", str(data)], check=True,
                       env={**env, "EPE_DEMO_PASSWORD": PASSWORD}, capture_output=True)
        proc, url = serve(data, args.port, env)
        try:
            namespace: dict[str, Any] = {"__name__": "__main__"}
            for number, cell in enumerate(CELLS, 1):
                source = cell.replace("{url}", url)
                output = run_cell(number, source, namespace)
                print(f"```python\n# In [{number}]\n{source}\n```\n")
                if output.strip():
                    print(f"```text\n{output.rstrip()}\n```\n")
            print("<!-- CLI -->\n")
            shell(Path(tmp), url, env)
        finally:
            proc.terminate()
            proc.wait()


def shell(tmp: Path, url: str, env: dict[str, str]) -> None:
    from epe.demo import iris_table

    iris_table().to_pandas().to_csv(tmp / "iris.csv", index=False)
    (tmp / "count.py").write_text("def count_rows(df):\n    return len(df)\n")
    env = {**env, "EPE_URL": url, "EPE_USER": "OMLUSER", "EPE_PASSWORD": PASSWORD,
           "COLUMNS": "100"}
    print("```console")
    print(f"$ export EPE_URL={url} EPE_USER=OMLUSER EPE_PASSWORD=demo-Secret1")
    job = ""
    for command in COMMANDS:
        argv = shlex.split(command.replace("$JOB", job))
        done = subprocess.run([*EPE, *argv[1:]], cwd=tmp, env=env, capture_output=True,
                              text=True)
        if command.endswith("--async"):
            job = done.stdout.strip()
            print(f"$ JOB=$({command})")
            print("$ echo $JOB")
        else:
            print(f"$ {command}")
        print((done.stderr + done.stdout).rstrip())  # the progress bar comes first
    print("```")


if __name__ == "__main__":
    main()
