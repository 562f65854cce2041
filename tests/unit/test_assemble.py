"""epe.core.assemble: OML's result shapes joined from the workers' JSON fragments as bytes,
never parsed (docs/api.md#results)."""

from __future__ import annotations

import orjson
import pytest

from epe.core.assemble import Fragment, as_list, check_size, keyed, row_apply
from epe.errors import OutputTooLarge


def frame(records: list[dict[str, object]]) -> Fragment:
    return Fragment(orjson.dumps(records), is_frame=True)


def value(v: object) -> Fragment:
    return Fragment(orjson.dumps(v), is_frame=False)


def test_row_apply_concatenates_dataframes_into_one_list_of_records() -> None:
    parts = [frame([{"A": 1}, {"A": 2}]), frame([]), frame([{"A": 3}])]
    assert orjson.loads(row_apply(parts)) == [{"A": 1}, {"A": 2}, {"A": 3}]


def test_row_apply_keeps_one_entry_per_chunk_unless_every_chunk_is_a_frame() -> None:
    assert orjson.loads(row_apply([frame([{"A": 1}]), value(7)])) == [[{"A": 1}], 7]
    assert orjson.loads(row_apply([value(1), value("x")])) == [1, "x"]
    assert row_apply([]) == b"[]"
    # A DataFrame in column form (group-apply's) is an object, not records: kept apart.
    columns = Fragment(b'{"A":{"0":1}}', is_frame=True)
    assert orjson.loads(row_apply([columns, columns])) == [{"A": {"0": 1}}] * 2


def test_a_list_in_order_and_an_object_keyed_by_label() -> None:
    assert as_list([value(3), value([1]), value(None)]) == b"[3,[1],null]"
    assert orjson.loads(keyed(["b", 'quote"d'], [value(1), value({"x": 2})])) == {
        "b": 1, 'quote"d': {"x": 2}}
    with pytest.raises(ValueError):  # a label for every fragment, no fewer
        keyed(["a"], [value(1), value(2)])


def test_fragments_are_joined_as_they_are_never_parsed() -> None:
    odd = Fragment(b'{"big":123456789012345678901234567890}', is_frame=False)
    assert as_list([odd]) == b'[{"big":123456789012345678901234567890}]'


def test_the_size_limit_names_the_limit_and_the_size() -> None:
    assert check_size(b"[1]", 3) == b"[1]"
    with pytest.raises(OutputTooLarge, match=r"maximum length 3 bytes .*4 bytes"):
        check_size(b"[12]", 3)
