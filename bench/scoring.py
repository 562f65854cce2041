"""Model scoring against in-process baselines, side by side (docs/benchmarks.md).

Starts a real server process on 127.0.0.1 with its own temporary data folder: epe's
app (``epe.app.create_app``) with two extra routes added by this script only, the
*bare* baselines, served by uvicorn as ``epe serve`` serves: ``POST /bench/onnx``
and ``POST /bench/python`` take the same body as a score call and answer the same
``scoringResults``, computed in the server process by the same model (onnxruntime's
session; the scikit-learn pipeline's ``predict_proba``), with no authentication,
lookup or worker. Then it measures, interleaved so that machine noise hits both:

* one-record scoring over HTTP: epe's endpoint of the ONNX model (Oracle's zip) and
  of the PYTHON model (the same pipeline, from a datastore) against the bare routes;
  goals: ONNX at most 1.5x, PYTHON at most 2x the baseline's median;
* batch scoring of a 1,000,000-row table by a scoring job run now (from its run's own
  start to its end: the table read, scored in the user's workers and written back)
  against the same work in one process (the table read from DuckDB as Arrow,
  onnxruntime over it, the output table written to DuckDB); goal at most 1.3x. The
  model's predict alone is printed too.

Run: ``.venv/bin/python bench/scoring.py [--quick] [--json]``
(the server side is this same file, run with ``--serve DATA_DIR MODEL_DIR``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import platform
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
from fastapi import Request
from fastapi.responses import Response

from benchserver import BenchServer, commit, percentile

API = "/oml/api/py-scripts/v2"
OML = "/omlmod/v1"
TOKEN_URL = "/omlusers/api/oauth2/v1/token"
USER, PASSWORD = "BENCH", "bench-Secret1"
FEATURES = ["SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"]
GOALS = {"onnx": 1.5, "python": 2.0, "batch": 1.3}


# -- the models ----------------------------------------------------------------------


def fitted() -> tuple[Any, pd.DataFrame]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    iris = load_iris()
    frame = pd.DataFrame(iris.data, columns=FEATURES)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    return model.fit(frame, iris.target_names[iris.target]), frame


def onnx_zip(model: Any, zipmap: bool) -> bytes:
    from skl2onnx import to_onnx

    sample = np.zeros((1, 4), dtype=np.float32)
    onnx = to_onnx(model, sample, options=None if zipmap else {id(model): {"zipmap": False}})
    meta: dict[str, Any] = {"function": "classification", "inputColumns": FEATURES}
    if not zipmap:
        meta["classificationProbOutput"] = "probabilities"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("iris.onnx", onnx.SerializeToString())
        z.writestr("metadata.json", json.dumps(meta))
        z.writestr("label.txt", "\n".join(model.classes_))
    return out.getvalue()


# -- the server side -----------------------------------------------------------------------


def serve(data_dir: Path, model_dir: Path) -> None:
    """epe's app plus the bare routes, served as ``epe serve`` serves it."""
    import onnxruntime
    import uvicorn

    from epe.app import create_app
    from epe.cli import _Server
    from epe.core.models import classification_results
    from epe.observe.logs import configure
    from epe.settings import Settings

    settings = Settings(data_dir=data_dir, host="127.0.0.1", port=0)
    app = create_app(settings)
    session = onnxruntime.InferenceSession(str(model_dir / "iris.onnx"),
                                           providers=["CPUExecutionProvider"])
    model = pickle.loads((model_dir / "iris.pkl").read_bytes())
    classes = list(model.classes_)

    @app.post("/bench/onnx")
    async def bare_onnx(request: Request) -> Response:
        records = json.loads(await request.body())["inputRecords"]
        x = np.array([[r[c] for c in FEATURES] for r in records], dtype=np.float32)
        _labels, probabilities = session.run(None, {"X": x})
        matrix = [[p[k] for k in classes] for p in probabilities]
        return _answer(classification_results(classes, matrix, None))

    @app.post("/bench/python")
    async def bare_python(request: Request) -> Response:
        records = json.loads(await request.body())["inputRecords"]
        frame = pd.DataFrame(records, columns=FEATURES)
        return _answer(classification_results(classes, model.predict_proba(frame), None))

    def _answer(results: list[dict[str, Any]]) -> Response:
        import orjson

        return Response(orjson.dumps({"scoringResults": results}),
                        media_type="application/json")

    configure(settings.log_format, settings.log_level)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            access_log=False, lifespan="on", log_config=None)
    _Server(config, app).run()


# -- the client side -----------------------------------------------------------------------


@dataclass
class Latency:
    median_ms: float
    p99_ms: float


@dataclass
class Figures:
    onnx: Latency
    onnx_bare: Latency
    python: Latency
    python_bare: Latency
    onnx_ratio: float
    python_ratio: float
    batch_rows: int
    batch_seconds: float
    batch_in_process_seconds: float
    batch_predict_seconds: float
    batch_ratio: float
    goals_met: dict[str, bool]
    cpus: int | None
    python_version: str
    commit: str | None


def timed(c: httpx.Client, path: str, body: dict[str, Any], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        r = c.post(path, json=body)
        samples.append(time.perf_counter() - start)
        if r.status_code != 200:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:300]}")
    return samples


def latency(samples: list[float]) -> Latency:
    ms = sorted(s * 1000 for s in samples)
    return Latency(round(percentile(ms, 50), 3), round(percentile(ms, 99), 3))


def compare(c: httpx.Client, ours: str, bare: str, body: dict[str, Any], n: int,
            rounds: int = 10) -> tuple[Latency, Latency]:
    timed(c, ours, body, 100)
    timed(c, bare, body, 100)
    mine: list[float] = []
    base: list[float] = []
    for _ in range(rounds):
        base += timed(c, bare, body, n // rounds)
        mine += timed(c, ours, body, n // rounds)
    return latency(mine), latency(base)


def setup_models(c: httpx.Client, model: Any, model_dir: Path) -> None:
    """The ONNX model and the PYTHON model (the same pipeline, saved in a datastore by
    the Python client), stored and deployed."""
    from epe import oml

    r = c.post(f"{OML}/models", files={"modelData": ("iris.zip", onnx_zip(model, True))},
               data={"modelName": "iris_onnx", "modelType": "ONNX", "version": "1"})
    r.raise_for_status()
    c.post(f"{OML}/deployment", json={"modelId": r.json()["modelId"], "uri": "onnx"}
           ).raise_for_status()
    oml.connect(str(c.base_url), USER, PASSWORD)
    oml.ds.save({"clf": model}, "bench", overwrite=True)
    r = c.post(f"{OML}/models", data={"modelName": "iris_py", "modelType": "PYTHON",
                                      "version": "1", "datastore": "bench", "object": "clf"})
    r.raise_for_status()
    c.post(f"{OML}/deployment", json={"modelId": r.json()["modelId"], "uri": "python"}
           ).raise_for_status()
    oml.disconnect()


def batch(c: httpx.Client, model: Any, rows: int, work: Path) -> tuple[float, float, float]:
    """(epe's run, the same in one process, the predict alone), in seconds."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    table = pa.table({"ID": np.arange(rows), **{f: rng.uniform(0.1, 8.0, rows)
                                                for f in FEATURES}})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    c.put(f"{API}/tables/BATCH_IN", content=sink.getvalue(), params={"overwrite": "true"},
          headers={"Content-Type": "application/vnd.apache.parquet"}).raise_for_status()
    data = onnx_zip(model, False)
    r = c.post(f"{OML}/models", files={"modelData": ("iris.zip", data)},
               data={"modelName": "iris_batch", "modelType": "ONNX", "version": "1"})
    r.raise_for_status()
    job = c.post(f"{OML}/jobs", json={
        "jobName": "bench", "jobType": "MODEL_SCORING",
        "jobSchedule": {"jobStartDate": "2100-01-01T00:00:00Z", "repeatInterval": "FREQ=DAILY"},
        "jobProperties": {"modelId": r.json()["modelId"], "inputData": "BATCH_IN",
                          "outputData": "BATCH_OUT", "supplementalColumnNames": ["ID"]}})
    job.raise_for_status()
    job_id = job.json()["jobId"]
    seconds = []
    for _ in range(3):
        c.post(f"{OML}/jobs/{job_id}/action", json={"action": "RUN"}).raise_for_status()
        run = wait_run(c, job_id, len(seconds) + 1)
        seconds.append(stamp(run["finishedDate"]) - stamp(run["startedDate"]))
    in_process = [in_process_run(data, table, work) for _ in range(3)]
    predict_only = [t for _, t in in_process]
    return min(seconds), min(t for t, _ in in_process), min(predict_only)


def stamp(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def wait_run(c: httpx.Client, job_id: str, count: int) -> dict[str, Any]:
    while True:
        runs = c.get(f"{OML}/jobs/{job_id}").json()["runs"]
        done = [r for r in runs if r["status"] != "RUNNING"]
        if len(done) >= count:
            if done[0]["status"] != "FINISH":
                raise RuntimeError(f"the run failed: {done[0]}")
            return dict(done[0])
        time.sleep(0.05)


def in_process_run(data: bytes, table: pa.Table, work: Path) -> tuple[float, float]:
    """The batch's work in this process: the table from DuckDB as Arrow, onnxruntime
    over it, the output written back; (all of it, the predict alone) in seconds."""
    import duckdb
    import onnxruntime

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        session = onnxruntime.InferenceSession(z.read("iris.onnx"),
                                               providers=["CPUExecutionProvider"])
        labels = np.array(z.read("label.txt").decode().splitlines(), dtype=object)
    path = work / "in_process.duckdb"
    with duckdb.connect(str(path)) as con:
        con.register("t", table)
        con.execute("CREATE OR REPLACE TABLE BATCH_IN AS SELECT * FROM t")
        con.unregister("t")
    start = time.perf_counter()
    with duckdb.connect(str(path)) as con:
        got = con.sql("SELECT * FROM BATCH_IN").to_arrow_table()
        x = np.column_stack([got.column(f).to_numpy() for f in FEATURES]).astype(np.float32)
        began = time.perf_counter()
        (probabilities,) = session.run(["probabilities"], {"X": x})
        best = np.argmax(probabilities, axis=1)
        predicted = time.perf_counter() - began
        out = pa.table({"ID": got.column("ID"), "PREDICTION": pa.array(labels[best]),
                        "PROBABILITY": probabilities[np.arange(len(best)), best]
                        .astype(np.float64)})
        con.register("o", out)
        con.execute("CREATE OR REPLACE TABLE BATCH_OUT AS SELECT * FROM o")
    return time.perf_counter() - start, predicted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, 200,000 rows")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--serve", nargs=2, metavar=("DATA_DIR", "MODEL_DIR"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]))
        return
    n, rows = (400, 200_000) if args.quick else (2000, 1_000_000)
    model, frame = fitted()
    with tempfile.TemporaryDirectory(prefix="epe-bench-scoring-") as tmp:
        work = Path(tmp)
        model_dir = work / "model"
        model_dir.mkdir()
        with zipfile.ZipFile(io.BytesIO(onnx_zip(model, True))) as z:
            (model_dir / "iris.onnx").write_bytes(z.read("iris.onnx"))
        (model_dir / "iris.pkl").write_bytes(pickle.dumps(model))
        data_dir = work / "data"
        server = BenchServer(data_dir, command=[sys.executable, __file__, "--serve",
                                                str(data_dir), str(model_dir)])
        server.add_user(USER, PASSWORD)
        with server.guarded():
            server.start()
            figures = measure(server.url, model, frame, n, rows, work)
    if args.json:
        print(json.dumps(asdict(figures), indent=2))
        return
    report(figures)


def measure(url: str, model: Any, frame: pd.DataFrame, n: int, rows: int,
            work: Path) -> Figures:
    with httpx.Client(base_url=url, timeout=600) as c:
        r = c.post(TOKEN_URL, json={"grant_type": "password", "username": USER,
                                    "password": PASSWORD})
        r.raise_for_status()
        c.headers["Authorization"] = f"Bearer {r.json()['accessToken']}"
        setup_models(c, model, work)
        body = {"inputRecords": [dict(zip(FEATURES, map(float, frame.iloc[0]), strict=True))]}
        onnx, onnx_bare = compare(c, f"{OML}/deployment/onnx/score", "/bench/onnx", body, n)
        py, py_bare = compare(c, f"{OML}/deployment/python/score", "/bench/python", body, n)
        ours, in_process, predict = batch(c, model, rows, work)
    ratios = {"onnx": onnx.median_ms / onnx_bare.median_ms,
              "python": py.median_ms / py_bare.median_ms, "batch": ours / in_process}
    return Figures(onnx, onnx_bare, py, py_bare, round(ratios["onnx"], 2),
                   round(ratios["python"], 2), rows, round(ours, 3), round(in_process, 3),
                   round(predict, 3), round(ratios["batch"], 2),
                   {k: ratios[k] <= GOALS[k] for k in GOALS}, os.cpu_count(),
                   platform.python_version(), commit())


def report(f: Figures) -> None:
    print(f"one record, ONNX:   epe {f.onnx.median_ms:.3f} ms (p99 {f.onnx.p99_ms:.3f}), "
          f"bare {f.onnx_bare.median_ms:.3f} ms (p99 {f.onnx_bare.p99_ms:.3f}): "
          f"{f.onnx_ratio:.2f}x (goal <= {GOALS['onnx']}x)")
    print(f"one record, PYTHON: epe {f.python.median_ms:.3f} ms (p99 {f.python.p99_ms:.3f}), "
          f"bare {f.python_bare.median_ms:.3f} ms (p99 {f.python_bare.p99_ms:.3f}): "
          f"{f.python_ratio:.2f}x (goal <= {GOALS['python']}x)")
    print(f"batch, {f.batch_rows} rows: epe's run {f.batch_seconds:.3f} s, in one process "
          f"{f.batch_in_process_seconds:.3f} s (the predict alone "
          f"{f.batch_predict_seconds:.3f} s): {f.batch_ratio:.2f}x (goal <= "
          f"{GOALS['batch']}x)")
    met = [k for k, ok in f.goals_met.items() if ok]
    print(f"goals met: {', '.join(met) or 'none'}; commit {f.commit}, {f.cpus} CPUs")


if __name__ == "__main__":
    main()
