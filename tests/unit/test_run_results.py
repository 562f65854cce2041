"""How ``epe.service.runs`` turns the batches' outcomes into a run's answer: each
operation's shape (graphics keyed by unit), the first failing unit in input order named by
chunk, group or index whatever the degree of parallelism, and what a batch printed."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from epe.core.assemble import Fragment
from epe.core.operations import operation
from epe.errors import ScriptFailed
from epe.runner.executor import TaskFailed, TaskResult
from epe.service.runs import Work, printed, settle, shape


def values(*vs: object) -> list[Fragment]:
    return [Fragment(orjson.dumps(v), is_frame=False) for v in vs]


def shaped(kind: str, fragments: list[Fragment], work: Work, graphics: bool = False) -> object:
    return orjson.loads(shape(operation(kind), fragments, work, graphics))


def test_each_operation_has_its_shape() -> None:
    assert shaped("do_eval", values({"a": 1}), Work([(0, 0)])) == {"a": 1}
    assert shaped("table_apply", values(150), Work([(0, 150)])) == 150
    frames = [Fragment(b'[{"A":1}]', True), Fragment(b'[{"A":2}]', True)]
    assert shaped("row_apply", frames, Work([(0, 1), (1, 1)])) == [{"A": 1}, {"A": 2}]
    groups = Work([(0, 2), (2, 1)], labels=["setosa", "virginica"])
    assert shaped("group_apply", values(2, 1), groups) == {"setosa": 2, "virginica": 1}
    assert shaped("index_apply", values(1, 4, 9), Work([(1, 0), (2, 0), (3, 0)])) == [1, 4, 9]


def test_with_graphics_units_are_keyed_by_group_or_by_their_number() -> None:
    images = values({"IMAGE": "x"}, {"IMAGE": "y"})
    assert shaped("index_apply", images, Work([(1, 0), (2, 0)]), graphics=True) == {
        "0": {"IMAGE": "x"}, "1": {"IMAGE": "y"}}
    groups = Work([(0, 1), (1, 1)], labels=["a", "b"])
    assert shaped("group_apply", images, groups, graphics=True) == {
        "a": {"IMAGE": "x"}, "b": {"IMAGE": "y"}}
    assert shaped("do_eval", values([{"IMAGE": "x"}]), Work([(0, 0)]), graphics=True) == [
        {"IMAGE": "x"}]


def failed(unit: int, message: str = "boom") -> TaskFailed:
    return TaskFailed(ScriptFailed(message), unit)


@pytest.mark.parametrize("unit_name, work, expected", [
    ("chunk", Work([(0, 2), (2, 2), (4, 2)], unit_name="chunk"), 2),
    ("group", Work([(0, 1), (1, 1), (2, 1)], labels=["a", "b", "c"], unit_name="group"), "c"),
    ("index", Work([(1, 0), (2, 0), (3, 0)], unit_name="index"), 3),
])
def test_the_first_failing_unit_in_input_order_is_named(unit_name: str, work: Work,
                                                        expected: object) -> None:
    # Two batches, [0, 1] and [2]; the second batch's only unit fails, and so does a
    # later one in another order: the earlier, in input order, is the one reported.
    batches = [work.units[:2], work.units[2:]]
    with pytest.raises(ScriptFailed) as raised:
        settle([TaskResult(values(1, 2)), failed(0)], work, batches)
    assert raised.value.extra[unit_name] == expected


def test_an_earlier_batchs_failure_wins_over_a_later_one() -> None:
    work = Work([(0, 1), (1, 1), (2, 1)], unit_name="chunk")
    with pytest.raises(ScriptFailed, match="first") as raised:
        settle([failed(1, "first"), failed(0, "second")], work,
               [work.units[:2], work.units[2:]])
    assert raised.value.extra["chunk"] == 1


def test_results_in_order_and_an_operation_of_one_unit_names_no_unit() -> None:
    work = Work([(0, 0)])
    assert settle([TaskResult(values(1))], work, [work.units]) == [TaskResult(values(1))]
    with pytest.raises(ScriptFailed) as raised:
        settle([failed(0)], work, [work.units])
    assert not {"chunk", "group", "index"} & set(raised.value.extra)


def test_what_a_batch_printed_is_kept_whether_it_succeeded_or_failed() -> None:
    assert printed(TaskResult([], stdout="out\n", stderr="err\n")) == "out\nerr\n"
    failure = TaskFailed(ScriptFailed("x", stdout="o", stderr="e"), 0)
    assert printed(failure) == "oe"
    assert printed(asyncio.CancelledError()) == ""
