"""Scoring with a deployed model (runs inside the worker; docs/models.md).

A model task names its model by digest. The worker keeps the models it has loaded
(``ModelCache``), so a warm endpoint costs one frame each way and the model's own
predict; on a miss it asks the server for the model's bytes (a ``model.load`` call
the server answers with that one model only) and loads them here, never in the
server: Oracle's ONNX zip with onnxruntime (imported on first use), or a PYTHON
model's pickle with its scoring script.

Three actions: ``inspect`` reads a model being stored (its function, its input
columns), ``score`` scores records a call sent (Oracle's result shapes, as JSON), and
``batch`` scores units of a shared input table into Arrow tables of predictions.
"""

from __future__ import annotations

import abc
import io
import itertools
import json
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from epe.core import models as shapes
from epe.errors import InvalidRequest
from epe.runner.worker import channel
from epe.runner.worker.inputs import resolve

MODEL_CACHE_SIZE = 8  # models a worker keeps loaded (each worker serves one user)
_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32,
               "tensor(bool)": np.bool_, "tensor(string)": np.object_}
_COLUMN_TYPE: dict[Any, shapes.ColumnType] = {
    np.float32: "number", np.float64: "number", np.int64: "integer", np.int32: "integer",
    np.bool_: "boolean", np.object_: "string"}


@dataclass
class Prediction:
    """Per record: a value (regression), or probabilities over ``labels``."""

    values: np.ndarray | None = None
    labels: list[Any] = field(default_factory=list)
    probabilities: np.ndarray | None = None

    def results(self, function: str, top_n: int | None) -> list[dict[str, Any]]:
        if function == "regression":
            return shapes.regression_results(self.values)
        if function == "clustering":
            return shapes.clustering_results(self.labels, self.probabilities, top_n)
        return shapes.classification_results(self.labels, self.probabilities, top_n)

    def columns(self, function: str) -> dict[str, pa.Array]:
        """The prediction columns of a batch's output table."""
        if function == "regression":
            return {"PREDICTION": pa.array(np.asarray(self.values, np.float64).ravel())}
        assert self.probabilities is not None
        best = np.argmax(self.probabilities, axis=1)
        labels = np.asarray(self.labels, dtype=object if _any_text(self.labels) else None)
        name = "CLUSTER_ID" if function == "clustering" else "PREDICTION"
        return {name: pa.array(labels[best]),
                "PROBABILITY": pa.array(self.probabilities[np.arange(len(best)), best],
                                        pa.float64())}


def _any_text(labels: Sequence[Any]) -> bool:
    return any(isinstance(x, str) for x in labels)


class Scorer(abc.ABC):
    """A loaded model: its function, its input columns, and how it predicts."""

    function: str
    columns: list[shapes.Column]

    @abc.abstractmethod
    def predict(self, data: pd.DataFrame) -> Prediction:
        """The model's prediction for each row of ``data`` (its columns, in order)."""

    def predict_rows(self, rows: list[list[Any]]) -> Prediction:
        return self.predict(pd.DataFrame(rows, columns=[c.name for c in self.columns]))

    def describe(self) -> dict[str, Any]:
        return {"function": self.function, "columns": [c.as_json() for c in self.columns]}


# -- ONNX: Oracle's zip ------------------------------------------------------------------

class OnnxScorer(Scorer):
    def __init__(self, blob: bytes, given_columns: Any) -> None:
        onnx, self.metadata, labels = read_zip(blob)
        self.session = _session(onnx)
        self.function = _function_of(self.metadata)
        inputs = self.session.get_inputs()
        self.inputs = [(i.name, _ONNX_TYPES.get(i.type), len(i.shape or [])) for i in inputs]
        if any(t is None for _, t, _ in self.inputs):
            raise InvalidRequest("the model has an input of a type epe cannot feed: "
                                 + ", ".join(f"{i.name} {i.type}" for i in inputs))
        self.matrix = self._matrix_input(inputs, given_columns)
        self.columns = self._columns(given_columns)
        self.output, self.labels, self.distances = self._outputs(labels)

    def _matrix_input(self, inputs: Any, given: Any) -> bool:
        """One 2-D input holding every column, or one input per column."""
        if len(inputs) != 1 or len(inputs[0].shape or []) != 2:
            return False
        width = inputs[0].shape[1]
        return not (width == 1 and given is None and "inputColumns" not in self.metadata)

    def _columns(self, given: Any) -> list[shapes.Column]:
        listed = given if given is not None else self.metadata.get("inputColumns")
        if listed is not None:
            columns = shapes.parse_columns(listed, "inputColumns")
        elif self.matrix:
            raise InvalidRequest(
                "the model takes one 2-D input holding every column: name its columns, in "
                "order, in metadata.json's \"inputColumns\" (or the inputColumns field)")
        else:
            columns = [shapes.Column(n, _COLUMN_TYPE[t]) for n, t, _ in self.inputs]
        if not self.matrix and {c.name for c in columns} != {n for n, _, _ in self.inputs}:
            raise InvalidRequest("inputColumns must name the model's inputs: "
                                 + ", ".join(n for n, _, _ in self.inputs))
        return columns

    def _outputs(self, label_lines: list[str] | None) -> tuple[str, list[Any], bool]:
        names = {o.name: o for o in self.session.get_outputs()}
        meta = self.metadata
        if self.function == "regression":
            return _named(names, meta.get("regressionOutput"), next(iter(names))), [], False
        if self.function == "clustering":
            probs, dists = meta.get("clusteringProbOutput"), meta.get("clusteringDistanceOutput")
            if (probs is None) == (dists is None):
                raise InvalidRequest("a clustering model's metadata.json names exactly one of "
                                     "clusteringProbOutput and clusteringDistanceOutput")
            return _named(names, probs or dists, ""), label_lines or [], dists is not None
        default = next((n for n, o in names.items() if o.type.startswith("seq(map")),
                       list(names)[-1])
        output = _named(names, meta.get("classificationProbOutput"), default)
        return output, label_lines or [], False

    def feed(self, data: pd.DataFrame) -> dict[str, np.ndarray]:
        if self.matrix:
            name, kind, _ = self.inputs[0]
            return {name: data.to_numpy(dtype=kind)}
        return {name: _column(data[name].to_numpy(), kind, rank)
                for name, kind, rank in self.inputs}

    def feed_rows(self, rows: list[list[Any]]) -> dict[str, np.ndarray]:
        if self.matrix:
            name, kind, _ = self.inputs[0]
            return {name: np.array(rows, dtype=kind)}
        by_name = {c.name: i for i, c in enumerate(self.columns)}
        return {name: _column(np.array([r[by_name[name]] for r in rows]), kind, rank)
                for name, kind, rank in self.inputs}

    def predict(self, data: pd.DataFrame) -> Prediction:
        return self._run(self.feed(data[[c.name for c in self.columns]]))

    def predict_rows(self, rows: list[list[Any]]) -> Prediction:
        return self._run(self.feed_rows(rows))

    def _run(self, feed: dict[str, np.ndarray]) -> Prediction:
        (out,) = self.session.run([self.output], feed)
        if self.function == "regression":
            return Prediction(values=np.asarray(out))
        if isinstance(out, list):  # a sequence of label -> probability maps (ZipMap)
            labels = list(out[0]) if out else list(self.labels)
            flat = itertools.chain.from_iterable(m.values() for m in out)
            matrix = np.fromiter(flat, np.float64, len(out) * len(labels))
            return Prediction(labels=labels, probabilities=matrix.reshape(len(out), -1))
        matrix = np.asarray(out, dtype=np.float64)
        if self.distances:
            matrix = shapes.from_distances(matrix)
        labels = self.labels or list(range(matrix.shape[1]))
        return Prediction(labels=labels, probabilities=matrix)


def read_zip(blob: bytes) -> tuple[bytes, dict[str, Any], list[str] | None]:
    """Oracle's zip: the ``.onnx`` file, ``metadata.json``, ``label.txt`` if any."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(blob))
        names = archive.namelist()
        onnx = [n for n in names if n.lower().endswith(".onnx")]
        if len(onnx) != 1 or "metadata.json" not in {n.rsplit("/", 1)[-1] for n in names}:
            raise InvalidRequest("an ONNX model's zip holds one .onnx file and a "
                                 f"metadata.json; this one holds {', '.join(names) or 'nothing'}")
        meta_name = next(n for n in names if n.rsplit("/", 1)[-1] == "metadata.json")
        metadata = json.loads(archive.read(meta_name))
        label_name = next((n for n in names if n.rsplit("/", 1)[-1] == "label.txt"), None)
        labels = None if label_name is None else \
            [x for x in archive.read(label_name).decode().splitlines() if x.strip()]
        return archive.read(onnx[0]), metadata, labels
    except zipfile.BadZipFile:
        raise InvalidRequest("modelData is not a zip file: an ONNX model is uploaded as "
                             "Oracle's zip (the .onnx file and metadata.json)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidRequest(f"metadata.json or label.txt could not be read: {e}") from None


def _function_of(metadata: Any) -> str:
    function = metadata.get("function") if isinstance(metadata, dict) else None
    if function not in shapes.FUNCTIONS:
        raise InvalidRequest("metadata.json must give \"function\": one of "
                             + ", ".join(shapes.FUNCTIONS))
    return str(function)


def _named(outputs: dict[str, Any], name: Any, default: str) -> str:
    chosen = name if name is not None else default
    if chosen not in outputs:
        raise InvalidRequest(f"the model has no output {chosen!r}; its outputs are "
                             + ", ".join(outputs))
    return str(chosen)


def _column(values: np.ndarray, kind: Any, rank: int) -> np.ndarray:
    array = values.astype(kind)
    return array.reshape(-1, 1) if rank == 2 else array


def _session(onnx: bytes) -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise InvalidRequest("ONNX models need onnxruntime in the server's Python: install "
                             "epe's onnx extra (pip install 'epe[onnx]')") from None
    options = onnxruntime.SessionOptions()
    # Threads that spin between runs would take the cores other users' work needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise InvalidRequest(f"onnxruntime could not load the model: {e}") from None


# -- PYTHON: a datastore's object, with an optional scoring script -------------------------

class PythonScorer(Scorer):
    def __init__(self, blob: bytes, spec: dict[str, Any], given_columns: Any,
                 function: str | None, script: Callable[..., Any] | None) -> None:
        import cloudpickle

        data = zlib.decompress(blob) if spec.get("compressed") else blob
        try:
            self.model = cloudpickle.loads(data)
        except Exception as e:
            raise InvalidRequest(f"the model object could not be loaded: {type(e).__name__}: "
                                 f"{e} (saved with {spec.get('versions', 'unknown versions')})"
                                 ) from None
        self.script = script
        self.function = function or _estimator_function(self.model)
        names = getattr(self.model, "feature_names_in_", None)
        if given_columns is not None:
            self.columns = shapes.parse_columns(given_columns, "inputColumns")
        elif names is not None:
            self.columns = [shapes.Column(str(n)) for n in names]
        else:
            raise InvalidRequest("the model does not say its input columns (it was not fitted "
                                 "on a DataFrame): give them as inputColumns")
        self.named = names is not None

    def predict(self, data: pd.DataFrame) -> Prediction:
        names = [c.name for c in self.columns]
        if list(data.columns) != names:  # a batch's table: the model's columns, in order
            data = data[names]
        if self.script is not None:
            return self._prediction(self.script(self.model, data))
        x = data if self.named else data.to_numpy()
        if self.function == "regression":
            return Prediction(values=np.asarray(self.model.predict(x)))
        if self.function == "classification":
            return Prediction(labels=list(self.model.classes_),
                              probabilities=np.asarray(self.model.predict_proba(x)))
        return self._clusters(x)

    def _clusters(self, x: Any) -> Prediction:
        if hasattr(self.model, "predict_proba"):
            matrix = np.asarray(self.model.predict_proba(x))
        elif hasattr(self.model, "transform"):
            matrix = shapes.from_distances(self.model.transform(x))
        else:
            found = np.asarray(self.model.predict(x))
            ids = sorted(set(found.tolist()))
            matrix = (found[:, None] == np.asarray(ids)[None, :]).astype(np.float64)
            return Prediction(labels=ids, probabilities=matrix)
        return Prediction(labels=list(range(matrix.shape[1])), probabilities=matrix)

    def _prediction(self, value: Any) -> Prediction:
        """A scoring script's value: numbers (regression), or probabilities as a
        DataFrame whose columns are the labels, or a 2-D array over the model's classes."""
        if self.function == "regression":
            return Prediction(values=np.asarray(value, dtype=np.float64).ravel())
        if isinstance(value, pd.DataFrame):
            return Prediction(labels=list(value.columns),
                              probabilities=value.to_numpy(dtype=np.float64))
        matrix = np.asarray(value, dtype=np.float64)
        if matrix.ndim != 2:
            raise ValueError("a classification or clustering script returns probabilities: "
                             "a DataFrame whose columns are the labels, or a 2-D array")
        labels = list(getattr(self.model, "classes_", range(matrix.shape[1])))
        return Prediction(labels=labels, probabilities=matrix)


def _estimator_function(model: Any) -> str:
    kind = getattr(model, "_estimator_type", None)
    try:
        from sklearn import base

        kind = "classifier" if base.is_classifier(model) else \
            "regressor" if base.is_regressor(model) else \
            "clusterer" if getattr(base, "is_clusterer", lambda m: False)(model) else kind
    except ImportError:
        pass
    found = {"classifier": "classification", "regressor": "regression",
             "clusterer": "clustering"}.get(str(kind))
    if found is None:
        raise InvalidRequest("epe cannot tell whether the model is a classifier, a regressor "
                             "or a clustering model: give its function")
    return found


# -- the worker's side of model tasks -----------------------------------------------------

class ModelCache:
    def __init__(self, size: int = MODEL_CACHE_SIZE) -> None:
        self._entries: OrderedDict[str, Scorer] = OrderedDict()
        self.size = size

    def get(self, key: str, load: Callable[[], Scorer]) -> Scorer:
        scorer = self._entries.get(key)
        if scorer is None:
            scorer = load()
            self._entries[key] = scorer
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        return scorer


@dataclass
class ModelOutput:
    fragments: list[bytes] = field(default_factory=list)
    frames: list[bool] = field(default_factory=list)


class ModelTasks:
    """Runs the ``model`` tasks a worker is sent; ``script`` compiles a scoring script
    (the worker's own script cache)."""

    def __init__(self, script: Callable[[str, str], Callable[..., Any]]) -> None:
        self.cache = ModelCache()
        self.script = script

    def run(self, header: dict[str, Any]) -> ModelOutput:
        task = header["kwargs"]
        scorer = self.cache.get(header["script_key"], lambda: self._load(header, task))
        action = task["action"]
        if action == "inspect":
            return _one(orjson.dumps(scorer.describe()))
        if action == "score":
            prediction = scorer.predict_rows(task["rows"])
            return _one(orjson.dumps(prediction.results(scorer.function, task.get("topN"))))
        return self._batch(scorer, header, task)

    def _load(self, header: dict[str, Any], task: dict[str, Any]) -> Scorer:
        _answer, blob = channel.call("model.load", {"key": header["script_key"]})
        columns = task.get("inputColumns")
        if task["type"] == "ONNX":
            return OnnxScorer(blob, columns)
        source = header.get("source") or ""
        script = self.script(header["script_key"] + ":script", source) if source else None
        return PythonScorer(blob, task.get("spec") or {}, columns, task.get("function"), script)

    def _batch(self, scorer: Scorer, header: dict[str, Any],
               task: dict[str, Any]) -> ModelOutput:
        table = resolve(header["input"])
        keep = list(task.get("supplemental") or [])
        out = ModelOutput()
        for offset, length in header["units"]:
            part = table.slice(offset, length)
            prediction = scorer.predict(part.select([c.name for c in scorer.columns])
                                        .to_pandas())
            columns = {name: part.column(name) for name in keep}
            columns.update(prediction.columns(scorer.function))
            out.fragments.append(_ipc(pa.table(columns)))
            out.frames.append(False)
        return out


def _one(fragment: bytes) -> ModelOutput:
    return ModelOutput([fragment], [False])


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
