"""OML4Py's in-database algorithms (``oml.glm``, ``oml.rf``, ``oml.automl``...), which
epe does not have: each name is there, so a notebook's imports run, and using one
raises ``Unsupported`` (a ``NotImplementedError``) saying why and what to use
(docs/client.md#oml4pys-client-api-in-epe).
"""

from __future__ import annotations

from typing import Any, NoReturn

from epe.client._errors import Unsupported

# OML4Py's model classes: Oracle Database's own machine-learning algorithms.
ALGORITHMS = ("ai", "ar", "dt", "em", "esa", "glm", "km", "nb", "nn", "rf", "svd", "svm",
              "xgb")
REASON = ("runs Oracle Database's in-database machine learning, which epe does not have: "
          "fit a Python model (scikit-learn...) in oml.table_apply or oml.group_apply and "
          "keep it with oml.ds.save")


def _refuse(name: str) -> NoReturn:
    raise Unsupported(f"oml.{name} {REASON}")


class InDatabase:
    """One of OML's algorithm names: any use says it is not available, and why."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse(self._name)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return InDatabase(f"{self._name}.{attr}")

    def __repr__(self) -> str:
        return f"<oml.{self._name}: not available in epe>"


IN_DATABASE: dict[str, InDatabase] = {name: InDatabase(name) for name in ALGORITHMS}
automl = InDatabase("automl")  # AlgorithmSelection, FeatureSelection, ModelTuning...
