"""Score calls' records, result shapes and endpoint documents (epe.core.models)."""

from __future__ import annotations

import numpy as np
import pytest
from openapi_spec_validator import validate

from epe.core.models import (
    Column,
    check_records,
    classification_results,
    endpoint_document,
    from_distances,
    parse_columns,
)
from epe.errors import InvalidRequest

COLUMNS = [Column("A"), Column("N", "integer"), Column("S", "string"), Column("B", "boolean")]
GOOD = {"A": 1.5, "N": 2, "S": "x", "B": True}


def test_records_become_rows_in_the_columns_order() -> None:
    assert check_records([GOOD, {**GOOD, "N": 3.0}], COLUMNS, 10) == \
        [[1.5, 2, "x", True], [1.5, 3.0, "x", True]]


@pytest.mark.parametrize(("record", "column"), [
    ({**GOOD, "N": 2.5}, "N"), ({**GOOD, "A": float("nan")}, "A"), ({**GOOD, "S": 1}, "S"),
    ({**GOOD, "B": 1}, "B"), ({k: v for k, v in GOOD.items() if k != "S"}, "S"),
    ({**GOOD, "Z": 0}, "Z"),
])
def test_a_bad_record_is_refused_naming_its_column(record: dict[str, object],
                                                   column: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_records([record], COLUMNS, 10)
    assert refused.value.extra == {"column": column, "record": 0}


def test_too_many_records_name_the_setting() -> None:
    with pytest.raises(InvalidRequest, match="EPE_SCORE_MAX_RECORDS"):
        check_records([GOOD] * 3, COLUMNS, 2)


def test_columns_are_given_as_names_or_with_types() -> None:
    assert parse_columns(["A", {"name": "S", "type": "string"}], "x") == \
        [Column("A"), Column("S", "string")]
    assert parse_columns({"A": "integer"}, "x") == [Column("A", "integer")]
    for bad in ([], ["A", "A"], [{"name": "A", "type": "date"}], "A"):
        with pytest.raises(InvalidRequest):
            parse_columns(bad, "x")


def test_classifications_are_ranked_and_cut_to_top_n() -> None:
    results = classification_results(["a", "b", "c"], [[0.2, 0.5, 0.3]], top_n=2)
    assert results == [{"classifications": [{"label": "b", "probability": 0.5},
                                            {"label": "c", "probability": 0.3}]}]


def test_cluster_probabilities_from_distances_ignore_their_scale() -> None:
    near = from_distances([[1.0, 3.0], [0.0, 2.0]])
    assert np.allclose(near, [[0.75, 0.25], [1.0, 0.0]])
    assert np.allclose(from_distances([[10.0, 30.0]]), near[:1])


@pytest.mark.parametrize("function", ["regression", "classification", "clustering"])
def test_the_endpoint_document_is_valid_openapi(function: str) -> None:
    document = endpoint_document(uri="u", model_name="m", version="1", function=function,
                                 columns=COLUMNS)
    validate(document)
    record = document["components"]["schemas"]["ScoreRequest"]["properties"]["inputRecords"]
    assert record["items"]["required"] == ["A", "N", "S", "B"]
