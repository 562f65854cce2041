"""How a ``func`` argument travels to the server (docs/client.md#how-func-travels).

- A stored script's name (a string that looks like one), or what
  ``oml.script.load`` returned: the run path names it.
- A string holding a definition: sent as the inline ``"script"``.
- A plain top-level ``def`` whose source can be read and that needs nothing from
  the session it was defined in: its source, sent as the inline ``"script"``.
  Tracebacks then show the user's own lines.
- Anything else (a lambda, a closure, a function using the session's imports or
  helpers, a decorated function, a callable object): cloudpickled into
  ``pickledParameters`` with a small wrapper script as the entry point; the
  worker unpickles and calls it. The server process never unpickles anything.

Functions and keyword arguments from modules the server cannot import (a
notebook's ``__main__``, a script next to the notebook, the user's tests) are
pickled by value, not by reference.
"""

from __future__ import annotations

import ast
import base64
import dis
import inspect
import site
import sys
import sysconfig
import textwrap
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle

from epe.core.names import OBJECT_NAME

SCRIPT_NAME = OBJECT_NAME  # a stored script's name, as the server checks it
PICKLED_KEY = "_epe_function"
WRAPPER = (
    f"def _epe_pickled_function(*args, {PICKLED_KEY}, **kwargs):\n"
    '    """Call the function epe\'s Python client sent pickled."""\n'
    f"    return {PICKLED_KEY}(*args, **kwargs)\n"
)
_pickle_lock = threading.Lock()


@dataclass(frozen=True)
class Shipped:
    """A ``func`` made ready to send: exactly one of the three ways is set."""

    name: str | None = None  # a stored script, run by name
    owner: str | None = None
    source: str | None = None  # inline source (docs/api.md#inline-functions)
    function: Callable[..., Any] | None = None  # pickled with the kwargs, called by WRAPPER

    @property
    def script(self) -> str | None:
        """The body's ``"script"``: the source, or the wrapper of a pickled function."""
        return WRAPPER if self.function is not None else self.source


def ship(func: Any, func_owner: str | None = None) -> Shipped:
    """Decide how ``func`` goes to the server."""
    stored = getattr(func, "__epe_script__", None)
    if stored is not None:  # what oml.script.load returned
        name, owner = stored
        return Shipped(name=name, owner=func_owner or owner)
    if isinstance(func, str):
        if SCRIPT_NAME.fullmatch(func):
            return Shipped(name=func, owner=func_owner)
        return Shipped(source=textwrap.dedent(func))
    if func_owner is not None:
        raise ValueError("func_owner applies only when func names a stored script")
    if not callable(func):
        raise TypeError(f"func must be a function, a script name or a string holding a "
                        f"function definition, not {type(func).__name__}")
    source = function_source(func)
    return Shipped(source=source) if source is not None else Shipped(function=func)


def function_source(func: Callable[..., Any]) -> str | None:
    """The source of a plain top-level ``def`` that can run on its own; None otherwise."""
    if not isinstance(func, types.FunctionType) or func.__closure__ \
            or func.__qualname__ != func.__name__ or func.__name__ == "<lambda>":
        return None
    try:
        source = textwrap.dedent(inspect.getsource(func))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.FunctionDef):
        return None
    node = tree.body[0]
    if node.name != func.__name__ or node.decorator_list:
        return None
    names = global_names(func.__code__) | _default_names(node)
    names.discard(func.__name__)
    needs_oml = _takes_oml(func, names)
    if needs_oml:
        names.discard("oml")
    if any(n in func.__globals__ for n in names):
        return None  # it needs something from its session: pickle it with its globals
    if _annotated(node):  # annotations must not be evaluated where their names are missing
        source = "from __future__ import annotations\n" + source
    if needs_oml:
        source = "import oml\n" + source
    return source


def global_names(code: types.CodeType) -> set[str]:
    """Global names a code object (and the code nested in it) reads or writes."""
    names = {str(i.argval) for i in dis.get_instructions(code)
             if i.opname in ("LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= global_names(const)
    return names


def _default_names(node: ast.FunctionDef) -> set[str]:
    defaults = [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]
    return {n.id for d in defaults for n in ast.walk(d) if isinstance(n, ast.Name)}


def _annotated(node: ast.FunctionDef) -> bool:
    args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs,
            *(a for a in (node.args.vararg, node.args.kwarg) if a is not None)]
    return node.returns is not None or any(a.annotation is not None for a in args)


def _takes_oml(func: types.FunctionType, names: set[str]) -> bool:
    """The function uses the session's ``oml`` (this client): in the worker it gets the
    worker's own ``oml``, as functions run by OML4Py do."""
    value = func.__globals__.get("oml")
    return "oml" in names and isinstance(value, types.ModuleType) \
        and value.__name__ == "epe.oml"


# -- pickling --------------------------------------------------------------------------------

def _installed_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots |= set(site.getsitepackages()) if hasattr(site, "getsitepackages") else set()
    roots.add(site.getusersitepackages())
    return tuple(str(Path(r).resolve()) for r in roots)


_INSTALLED = _installed_roots()
_local: dict[str, bool] = {}  # module name -> whether the server could not import it


def _is_local(name: str, module: types.ModuleType) -> bool:
    """A module from outside the installed packages (the user's own code): a worker
    could not import it, so what comes from it is pickled by value."""
    if name not in _local:
        file = getattr(module, "__file__", None)
        top = name.split(".")[0]
        # ``oml`` is ``epe.oml`` under OML's name: by reference, as every epe module.
        top = "epe" if module.__name__.split(".")[0] == "epe" else top
        _local[name] = bool(file) and top not in ("epe", "__main__") \
            and not str(Path(str(file)).resolve()).startswith(_INSTALLED)
    return _local[name]


@contextmanager
def by_value() -> Iterator[None]:
    """While inside, cloudpickle pickles by value what comes from the user's own
    modules (``__main__`` always is)."""
    with _pickle_lock:
        registered = []
        for name, module in list(sys.modules.items()):
            if module is None or not _is_local(name, module):
                continue
            try:
                cloudpickle.register_pickle_by_value(module)
            except ValueError:  # registered already
                continue
            registered.append(module)
        try:
            yield
        finally:
            for module in registered:
                cloudpickle.unregister_pickle_by_value(module)


def dumps(value: Any) -> bytes:
    """cloudpickle of ``value``, the user's own modules by value."""
    with by_value():
        return cloudpickle.dumps(value)


def pickled_parameters(kwargs: dict[str, Any], shipped: Shipped) -> str | None:
    """``pickledParameters``: base64 cloudpickle of the keyword arguments (and the
    function, when it travels pickled)."""
    values = dict(kwargs)
    if shipped.function is not None:
        values[PICKLED_KEY] = shipped.function
    if not values:
        return None
    try:
        data = dumps(values)
    except Exception as e:
        raise TypeError(f"the function or its keyword arguments cannot be pickled: "
                        f"{type(e).__name__}: {e}") from e
    return base64.b64encode(data).decode("ascii")


def stored_source(func: Any) -> str:
    """What ``oml.script.create`` stores: the function's source, or a script that
    unpickles it (in the worker) and calls it."""
    if isinstance(func, str):
        return textwrap.dedent(func)
    if not callable(func):
        raise TypeError(f"func must be a function or a string holding a function "
                        f"definition, not {type(func).__name__}")
    source = function_source(func)
    if source is not None:
        return source
    data = base64.b64encode(dumps(func)).decode("ascii")
    chunks = "\n".join(f"    {data[i:i + 88]!r}" for i in range(0, len(data), 88))
    name = getattr(func, "__name__", "")
    entry = name if name.isidentifier() and not name.startswith("_epe") else "function"
    return ("# Stored by epe's Python client as a cloudpickle: the function had no readable\n"
            "# source of its own (a lambda, a closure, or it uses names of its session).\n"
            "import base64 as _base64\n"
            "import cloudpickle as _cloudpickle\n\n"
            f"_epe_function = _cloudpickle.loads(_base64.b64decode(\n{chunks}))\n\n\n"
            f"def {entry}(*args, **kwargs):\n"
            "    return _epe_function(*args, **kwargs)\n")
