"""epe.core.operations: each record answers for itself, and a record that could not be
planned is refused when it is made (docs/architecture.md#adding-an-operation)."""

from __future__ import annotations

import datetime
from email.utils import parsedate_to_datetime

import pytest
from pydantic import Field, StrictInt

from epe.core.operations import (
    CHUNKS,
    GROUPS,
    INDEX,
    INPUTS,
    NONE,
    OPERATIONS,
    WHOLE,
    Operation,
    operation,
    register,
)
from epe.core.requests import (
    DoEvalRequest,
    IndexApplyRequest,
    InputRequest,
    ParallelRequest,
    RowApplyRequest,
    TableApplyRequest,
)


def test_the_five_operations_of_oml() -> None:
    assert [(op.path, op.input.name, op.input.call, op.unit, op.shape)
            for op in OPERATIONS.values()] == [
        ("do-eval", "none", "kwargs", None, "single"),
        ("table-apply", "whole", "data", None, "single"),
        ("row-apply", "chunks", "data", "chunk", "rows"),
        ("group-apply", "groups", "data", "group", "keyed"),
        ("index-apply", "index", "index", "index", "list")]


def test_only_operations_over_a_query_read_one() -> None:
    assert {k for k, op in OPERATIONS.items() if op.input.query} == {
        "table_apply", "row_apply", "group_apply"}


def test_parallel_operations_are_those_of_several_units() -> None:
    assert {k for k, op in OPERATIONS.items() if op.parallel} == {
        "row_apply", "group_apply", "index_apply"}
    for op in OPERATIONS.values():
        assert op.parallel == issubclass(op.request, ParallelRequest)


def test_each_input_names_the_request_class_whose_fields_it_reads() -> None:
    assert {name: i.request for name, i in INPUTS.items()} == {
        "none": NONE.request, "index": IndexApplyRequest, "whole": InputRequest,
        "chunks": RowApplyRequest, "groups": GROUPS.request}
    assert "input" in WHOLE.request.model_fields and "rows" in CHUNKS.request.model_fields


def test_what_a_worker_is_told() -> None:
    assert operation("group_apply").calling.frames_as_columns
    assert operation("do_eval").calling.images_as_list  # one unit: a list of images
    assert not operation("index_apply").calling.images_as_list
    assert operation("index_apply").calling.call == INDEX.call == "index"


def test_required_fields_are_the_request_models() -> None:
    assert operation("group_apply").required == ("input", "groupBy")
    assert operation("do_eval").required == ()


def test_a_request_that_lacks_its_inputs_fields_is_refused() -> None:
    with pytest.raises(TypeError, match="reads the fields of RowApplyRequest"):
        Operation("chunky", TableApplyRequest, "no rows field", input=CHUNKS, shape="list")


def test_a_single_unit_request_with_parallel_fields_is_refused() -> None:
    class Both(TableApplyRequest, ParallelRequest):
        pass

    with pytest.raises(TypeError, match="ParallelRequest exactly when"):
        Operation("both", Both, "one unit, parallel fields", input=WHOLE, shape="single")


def test_registering_adds_the_record_once() -> None:
    class Twice(IndexApplyRequest):
        factor: StrictInt = Field(2, gt=0)

    made = Operation("twice_apply", Twice, "f(i) times.", input=INDEX, shape="list")
    register(made)
    try:
        assert operation("twice_apply") is made and made.path == "twice-apply"
        with pytest.raises(ValueError, match="already"):
            register(made)
        with pytest.raises(ValueError, match="already"):
            register(Operation("do_eval", DoEvalRequest, "again", input=NONE, shape="single"))
    finally:
        del OPERATIONS["twice_apply"]


def test_v1_is_retired_on_one_day_in_its_metadata_and_its_headers() -> None:
    from epe.api.meta import VERSIONS
    from epe.api.middleware import DEPRECATION, SUNSET

    assert VERSIONS["v1"]["lifecycle"] == "DEPRECATED@2026-03-31"  # OML's own words
    deprecated = datetime.datetime.fromtimestamp(int(DEPRECATION[1].lstrip(b"@")), datetime.UTC)
    sunset = parsedate_to_datetime(SUNSET[1].decode())
    assert deprecated.date() == sunset.date() == datetime.date(2026, 3, 31)
    assert SUNSET[1] == b"Tue, 31 Mar 2026 23:59:59 GMT"
