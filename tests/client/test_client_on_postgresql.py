"""The Python client's data proxies over users' tables in PostgreSQL: ``oml.create``,
``oml.sync`` of a table (its name in any case), a query and a pattern, ``oml.push``,
and the apply functions over a proxy. The tests of ``test_client.py``, imported and
run against the session's server with tables in PostgreSQL; what does not touch
users' tables is the same whatever keeps them, and is not repeated.
"""

from __future__ import annotations

import pytest

from tests.client.test_client import (  # noqa: F401
    alice,
    frame,
    table,
    test_column_selection,
    test_create_refuses_an_existing_table,
    test_create_then_columns_shape_head_and_pull,
    test_push_makes_a_temporary_table,
    test_result_shapes,
    test_sync_a_table_a_query_and_a_pattern,
    users,
)
from tests.serverproc import EpeServer


@pytest.fixture(scope="module")
def server(pg_data_server: EpeServer) -> EpeServer:
    return pg_data_server
