"""The public surface of ``from epe import oml`` (docs/client.md): its names, their
docstrings and OML4Py's signatures."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from epe import oml
from epe.runner.worker.userlib.oml import ds as worker_ds

PUBLIC = [
    "Boolean", "Bytes", "DataFrame", "DataImage", "Datetime", "Float", "Job", "String",
    "automl", "connect", "create", "dir", "disconnect", "do_eval", "drop", "ds", "grant",
    "graphics", "group_apply", "index_apply", "isconnected", "models", "push", "revoke",
    "row_apply", "script", "sync", "table_apply",
]


def test_all_is_exactly_the_intended_names() -> None:
    assert sorted(oml.__all__) == sorted(PUBLIC)
    assert len(oml.__all__) == len(set(oml.__all__))
    for name in PUBLIC:
        assert hasattr(oml, name), name


def functions() -> list[tuple[str, Callable[..., Any]]]:
    found = [(n, getattr(oml, n)) for n in PUBLIC if callable(getattr(oml, n))]
    for namespace in ("script", "ds", "graphics", "models"):
        module = getattr(oml, namespace)
        found += [(f"{namespace}.{n}", getattr(module, n)) for n in module.__all__]
    classes = [(n, getattr(oml, n)) for n in PUBLIC if inspect.isclass(getattr(oml, n))]
    classes.append(("Series", oml.Float.__mro__[1]))  # what every column type has
    for cls_name, cls in classes:
        found += [(f"{cls_name}.{n}", m) for n, m in vars(cls).items()
                  if not n.startswith("_") and (callable(m) or isinstance(m, property))]
    return found


@pytest.mark.parametrize("name, fn", functions(), ids=[n for n, _ in functions()])
def test_every_public_function_has_a_docstring(name: str, fn: Any) -> None:
    assert inspect.getdoc(fn), f"{name} has no docstring"


def params(fn: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name", ["save", "load", "dir", "describe", "delete"])
def test_ds_has_the_signatures_functions_see(name: str) -> None:
    assert params(getattr(oml.ds, name)) == params(getattr(worker_ds, name))


@pytest.mark.parametrize("save", [oml.ds.save, worker_ds.save], ids=["client", "worker"])
@pytest.mark.parametrize("args, error", [
    (({}, "ds"), TypeError), ((["x"], "ds"), TypeError),
    (({"x": 1}, "ds", " ", None, True, True), ValueError)])
def test_ds_save_refuses_what_oml4py_refuses_before_anything_is_sent(
        save: Callable[..., Any], args: tuple[Any, ...], error: type[Exception]) -> None:
    with pytest.raises(error):  # no connection, no worker channel: refused before both
        save(*args)


def test_grant_and_revoke_have_the_signatures_functions_see() -> None:
    from epe.runner.worker.userlib import oml as worker_oml

    assert params(oml.grant) == params(worker_oml.grant)
    assert params(oml.revoke) == params(worker_oml.revoke)


KW = inspect.Parameter.POSITIONAL_OR_KEYWORD


@pytest.mark.parametrize("fn, names", [
    (oml.do_eval, ["func", "func_owner", "graphics", "kwargs"]),
    (oml.table_apply, ["data", "func", "func_owner", "graphics", "kwargs"]),
    (oml.row_apply, ["data", "func", "func_owner", "rows", "parallel", "graphics", "kwargs"]),
    (oml.group_apply, ["data", "index", "func", "func_owner", "parallel", "orderby",
                       "graphics", "kwargs"]),
    (oml.index_apply, ["times", "func", "func_owner", "parallel", "graphics", "kwargs"]),
    (oml.connect, ["url", "user", "password"]),
    (oml.sync, ["schema", "regex_match", "table", "view", "query"]),
    (oml.script.create, ["name", "func", "is_global", "overwrite", "description"]),
    (oml.script.dir, ["name", "regex_match", "sctype"]),
    (oml.script.load, ["name", "owner"]),
    (oml.script.drop, ["name", "is_global", "silent"]),
])
def test_omls_signatures(fn: Callable[..., Any], names: list[str]) -> None:
    assert [p[0] for p in params(fn)] == names


def test_defaults_are_omls() -> None:
    sig = inspect.signature(oml.row_apply)
    assert sig.parameters["rows"].default == 1
    assert sig.parameters["graphics"].default is False
    assert inspect.signature(oml.script.dir).parameters["sctype"].default == "user"
    assert inspect.signature(oml.script.drop).parameters["silent"].default is False
