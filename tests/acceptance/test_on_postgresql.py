"""The acceptance tests that lean on metadata the most, again on a PostgreSQL metadata
store: tokens, users, scripts and their grants, datastores, async jobs (admission,
service levels, deletes, restarts). They are the tests of their own modules, imported
here and run against servers whose ``EPE_METADATA_URL`` is a database of the session's
PostgreSQL server; the fixtures below are all that changes.

A subset, not everything twice: what does not reach the metadata store (running
functions, tables, graphics) behaves the same whatever keeps the metadata, and the
store's own suite (tests/integration/test_store_conformance.py) runs whole on both,
the job queue's admission limit included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The imported tests, and the fixtures of their modules they use. ---------------------
from tests.acceptance import test_jobs as jobs
from tests.acceptance.test_datastores import (  # noqa: F401
    alice,
    bob,
    carol,
    names,
    test_another_user_cannot_load_until_granted,
    test_delete_objects_then_the_datastore,
    test_dir_each_dstype_has_omls_columns,
    test_forty_parallel_appends_lose_nothing,
    test_overwrite_is_atomic_for_rest_readers,
    test_saving_an_existing_name_needs_overwrite_or_append,
    users,
)
from tests.acceptance.test_grants import (  # noqa: F401
    people,
    test_granting_what_is_not_yours,
    test_what_one_path_grants_the_other_revokes,
)
from tests.acceptance.test_jobs import (  # noqa: F401
    c,
    test_a_job_is_its_submitters_alone,
    test_concurrency_per_service_level_and_pending_jobs,
    test_deleting_a_pending_job,
    test_failing_job_answers_what_the_sync_call_would,
    test_idempotency_key_returns_the_same_job,
    test_log_keeps_stdout_and_stderr,
    test_running_job_status_progress_result_and_delete,
    test_timed_out_job,
)
from tests.acceptance.test_scripts import (  # noqa: F401
    new_client,
    test_create_get_list_delete,
    test_global_scripts,
    test_isolation_and_grants,
    test_lookup_order_own_script_first_then_global,
    test_other_user_cannot_delete_a_global_script,
    test_overwrite,
)
from tests.acceptance.test_tokens import (  # noqa: F401
    new_user,
    test_deleted_users_token_stops_working,
    test_password_grant_shape_and_token_works,
    test_refresh_gives_a_new_working_token,
    test_revoke_refuses_the_token_for_use_and_refresh,
    test_revoking_a_refreshed_token_refuses_it,
)
from tests.acceptance.test_users import (  # noqa: F401
    test_admin_creates_a_user_who_can_log_in,
    test_cli_user_add_works_while_the_server_runs,
    test_delete_user,
    test_duplicate_user_is_409,
)
from tests.pgserver import PostgresServer, binaries
from tests.serverproc import API, EpeServer, wait_for


def on_postgresql(postgres: PostgresServer, env: dict[str, str]) -> dict[str, str]:
    """``env`` with a new database of the session's server as the metadata store."""
    return {"EPE_METADATA_URL": postgres.new_database(migrated=True), **env}


@pytest.fixture(scope="module")
def server(postgres: PostgresServer,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[EpeServer]:
    """One server for the module, with test_datastores' 4 workers (so that its parallel
    appends and overwrite races really run side by side)."""
    srv = EpeServer(tmp_path_factory.mktemp("epe-pg"),
                    on_postgresql(postgres, {"EPE_WORKERS": "4"})).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def srv(server: EpeServer) -> EpeServer:
    """test_datastores' server: the same."""
    return server


def test_restart_after_kill_9_keeps_finished_jobs_fails_the_running_one_and_runs_the_rest(
        make_server: Callable[..., EpeServer]) -> None:
    # kill -9 alone here: a clean stop differs from SQLite's by one query.
    jobs.test_restart_keeps_finished_jobs_fails_the_running_one_and_runs_the_waiting_ones(
        make_server, "kill-9")


@pytest.fixture
def make_server(postgres: PostgresServer, tmp_path: Path) -> Iterator[Callable[..., EpeServer]]:
    started: list[EpeServer] = []

    def make(**env: str) -> EpeServer:
        srv = EpeServer(tmp_path / f"data{len(started)}", on_postgresql(postgres, env)).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def api() -> str:
    """The script tests' API version: v2 only here (v1 is the same code path)."""
    return API


def test_metadata_database_down_is_503_then_served_again(tmp_path: Path) -> None:
    # A PostgreSQL server of this test's own: stopping the session's would fail others.
    bin_dir = binaries()
    assert bin_dir is not None
    pg = PostgresServer(bin_dir).start()
    srv = EpeServer(tmp_path / "data", {"EPE_METADATA_URL": pg.new_database(migrated=True)})
    try:
        srv.start()
        name, password = srv.add_user()
        client = srv.client(name, password)
        assert client.get(f"{API}/scripts").status_code == 200

        pg.halt()
        # The token and its user are still known (a short-lived cache): the read and the
        # write below are what reach the database.
        script = {"name": "f", "script": "def f():\n    return 1\n"}
        for r in (client.get(f"{API}/scripts"), client.post(f"{API}/scripts", json=script)):
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"] == "5"
            assert "metadata database cannot be reached" in r.json()["errorMessage"]
        assert "unhandled error" not in "".join(srv.output)
        with srv.http() as anonymous:
            down = anonymous.get("/health/ready")
        assert down.status_code == 503, down.text
        assert down.json()["parts"]["store"]["state"] != "ok"

        pg.resume()  # the pool replaces the connections the restart cut
        assert wait_for(lambda: client.get(f"{API}/scripts").status_code == 200)
        assert client.post(f"{API}/scripts", json=script).status_code == 201
    finally:
        srv.stop()
        pg.stop()
