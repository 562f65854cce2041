"""epe.core.scripts: which callable a script's source offers as its entry point."""

from __future__ import annotations

from typing import Any

import pytest

from epe.core.scripts import EntryCandidates, parse_script, pick_entry
from epe.errors import ScriptInvalid


def run_script(source: str) -> Any:
    """What the worker does: parse, execute the source, pick the entry point."""
    candidates = parse_script(source)
    namespace: dict[str, Any] = {}
    exec(compile(source, "<script>", "exec"), namespace)
    return pick_entry(candidates, namespace)


def test_a_single_function_is_the_entry_point_whatever_its_name() -> None:
    entry = run_script("def anything(num=1):\n    return num * 2\n")
    assert entry.__name__ == "anything"
    assert entry(num=4) == 8


def test_the_last_top_level_def_wins_over_earlier_helpers() -> None:
    source = ("import math\n"
              "def helper(x):\n    return x + 1\n"
              "def first():\n    return 'first'\n"
              "def last():\n    return helper(41)\n")
    assert parse_script(source) == EntryCandidates(last_def="last", assigned=())
    assert run_script(source)() == 42


def test_a_def_wins_over_a_lambda_bound_after_it() -> None:
    source = "def f():\n    return 'def'\ng = lambda: 'lambda'\n"
    assert parse_script(source).last_def == "f"
    assert run_script(source)() == "def"


def test_nested_defs_are_not_entry_points() -> None:
    source = "def outer():\n    def inner():\n        return 1\n    return inner() + 1\n"
    assert parse_script(source).last_def == "outer"
    assert run_script(source)() == 2


def test_a_lambda_assignment_is_an_entry_point() -> None:
    entry = run_script('func = lambda: "Hello"\n')
    assert entry() == "Hello"


def test_without_a_def_the_last_name_bound_to_a_callable_wins() -> None:
    source = "import functools\nf = lambda: 1\ng = lambda: 2\nlimit = 10\n"
    # "limit" is bound to a literal, which can never be the entry point.
    assert parse_script(source).assigned == ("f", "g")
    assert run_script(source)() == 2


def test_annotated_assignments_count_as_bindings() -> None:
    source = "from typing import Callable\nf: Callable[[], int] = lambda: 7\n"
    assert parse_script(source).assigned == ("f",)
    assert run_script(source)() == 7


def test_a_syntax_error_names_the_line() -> None:
    with pytest.raises(ScriptInvalid, match=r"does not parse: .*\(line 3, column \d+\)") as info:
        parse_script("import os\n\ndef f(:\n    return 1\n")
    assert (info.value.status, info.value.code) == (400, 1010)


def test_an_indentation_error_names_the_line() -> None:
    with pytest.raises(ScriptInvalid, match=r"line 2"):
        parse_script("def f():\nreturn 1\n")


@pytest.mark.parametrize("source", ["", "import numpy as np\n", "print(1 + 2)\n",
                                    "if True:\n    def f():\n        return 1\n"])
def test_a_script_with_no_function_is_invalid(source: str) -> None:
    with pytest.raises(ScriptInvalid, match="defines no function"):
        parse_script(source)


def test_names_bound_to_literals_only_are_refused_at_parse_time() -> None:
    with pytest.raises(ScriptInvalid, match="defines no function"):
        parse_script("x = 1\ny = 'text'\nz = [1, 2]\n")


def test_names_bound_to_non_callables_are_refused_when_picking() -> None:
    source = "import math\nx = math.pi\n"
    candidates = parse_script(source)  # it parses: math.pi could have been a callable
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    with pytest.raises(ScriptInvalid, match="no top-level name is bound to a callable"):
        pick_entry(candidates, namespace)


def test_pick_entry_takes_the_def_from_the_namespace() -> None:
    def f() -> str:
        return "chosen"

    chosen = pick_entry(EntryCandidates(last_def="f", assigned=("g",)),
                        {"f": f, "g": lambda: "not me"})
    assert chosen is f


def test_pick_entry_skips_later_non_callables() -> None:
    def g() -> int:
        return 1

    assert pick_entry(EntryCandidates(last_def=None, assigned=("g", "n")), {"g": g, "n": 3}) is g


def test_a_nul_character_is_a_clear_400_naming_where_it_is() -> None:
    # ast.parse raises ValueError here, which once reached the client as a 500.
    with pytest.raises(ScriptInvalid, match=r"NUL character \(\\x00\) \(line 2, column 13\)") \
            as info:
        parse_script("def f():\n    return 1\x00\n")
    assert (info.value.status, info.value.code) == (400, 1010)


def test_a_lone_surrogate_is_a_clear_400() -> None:
    # ast.parse raises UnicodeEncodeError: the text cannot be encoded to UTF-8.
    with pytest.raises(ScriptInvalid, match=r"lone surrogate.*\(line 1, column 22\)"):
        parse_script("def f(): return 1  # \ud800\n")


@pytest.mark.parametrize("source", ["x = " + "-" * 1_000_000 + "1\n",
                                    "def f(): return a" + ".a" * 100_000 + "\n"])
def test_nesting_too_deep_for_the_parser_is_a_400(source: str) -> None:
    # The parser gives up with MemoryError or RecursionError, not SyntaxError.
    with pytest.raises(ScriptInvalid, match="nested too deeply"):
        parse_script(source)
