"""Finding a script's entry point (docs/api.md#how-the-function-is-called).

The entry point is the last top-level function definition; where there is none,
the last top-level name bound to a callable (OML accepts ``f = lambda: 1``).
The server only parses (it never runs user code); the worker executes the
script and picks the callable with ``pick_entry``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from epe.errors import ScriptInvalid


@dataclass(frozen=True)
class EntryCandidates:
    last_def: str | None
    assigned: tuple[str, ...]  # top-level names bound by assignment, in source order


def parse_script(source: str) -> EntryCandidates:
    """Check that ``source`` parses and could define a function; say which line if not."""
    tree = _parse(source)
    candidates = _candidates(tree)
    if candidates.last_def is None and not candidates.assigned:
        raise ScriptInvalid("the script defines no function: add a top-level 'def' "
                            "(or bind a name to a callable, e.g. f = lambda: 1)")
    return candidates


def _parse(source: str) -> ast.Module:
    # ast.parse raises more than SyntaxError on text a user may send: ValueError for a
    # NUL character, UnicodeEncodeError for a lone surrogate, RecursionError or
    # MemoryError for deep nesting. Each is the script's fault, so each is a 400.
    nul = source.find("\x00")
    if nul >= 0:
        raise ScriptInvalid("the script does not parse: it contains a NUL character (\\x00) "
                            f"({_position(source, nul)})")
    try:
        return ast.parse(source, filename="<script>")
    except SyntaxError as e:
        where = f"line {e.lineno}" + (f", column {e.offset}" if e.offset else "")
        raise ScriptInvalid(f"the script does not parse: {e.msg} ({where})") from None
    except UnicodeEncodeError as e:
        raise ScriptInvalid("the script does not parse: it contains a lone surrogate, which "
                            f"is not a character ({_position(source, e.start)})") from None
    except (RecursionError, MemoryError):
        raise ScriptInvalid("the script does not parse: it is nested too deeply for Python's "
                            "parser") from None


def _position(source: str, index: int) -> str:
    line = source.count("\n", 0, index) + 1
    column = index - source.rfind("\n", 0, index)
    return f"line {line}, column {column}"


# Values that can never be callable: binding a name to one makes no entry point.
_NOT_CALLABLE = (ast.Constant, ast.JoinedStr, ast.List, ast.Tuple, ast.Set, ast.Dict,
                 ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _candidates(tree: ast.Module) -> EntryCandidates:
    last_def: str | None = None
    assigned: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            last_def = node.name
        elif isinstance(node, ast.Assign) and not isinstance(node.value, _NOT_CALLABLE):
            assigned += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
              and node.value is not None and not isinstance(node.value, _NOT_CALLABLE)):
            assigned.append(node.target.id)
    return EntryCandidates(last_def, tuple(assigned))


def pick_entry(candidates: EntryCandidates, namespace: Mapping[str, Any]) -> Callable[..., Any]:
    """The entry point among the names the executed script bound."""
    if candidates.last_def is not None:
        return namespace[candidates.last_def]
    for name in reversed(candidates.assigned):
        value = namespace.get(name)
        if callable(value):
            return value
    raise ScriptInvalid("the script defines no function: no top-level name is bound to a "
                        "callable")
