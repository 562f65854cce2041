from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests import ldapserver
from tests.ldapserver import Slapd
from tests.oidcprovider import OidcProvider
from tests.pgserver import INSTALL_HINT, PostgresServer, binaries, free_port, on_postgresql_data
from tests.raycluster import DRIVER_ENV, RayCluster, stop_orphans
from tests.serverproc import EpeServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session, started by the first test that
    needs it; ``postgres.new_database()`` gives each test a database of its own."""
    bin_dir = binaries()
    if bin_dir is None:
        pytest.fail(INSTALL_HINT)
    pg = PostgresServer(bin_dir).start()
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def slapd() -> Iterator[Slapd]:
    """One real OpenLDAP server for the session (tests/ldapserver.py)."""
    if not ldapserver.installed():
        pytest.fail(ldapserver.INSTALL_HINT)
    server = Slapd().start()
    yield server
    server.stop()


# The ports of the servers that sign in through the OpenID provider: its client's
# redirect URIs name them, so they are chosen before it starts.
OIDC_SERVER_PORTS = {"api": free_port(), "console": free_port()}


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OidcProvider]:
    """One real OpenID provider for the session (tests/oidcprovider.py)."""
    callback = "http://127.0.0.1:{}/omlusers/api/v1/sign-in/oidc/callback"
    provider = OidcProvider().start([callback.format(p) for p in OIDC_SERVER_PORTS.values()])
    yield provider
    provider.close()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """One real Ray cluster of two nodes on this machine for the whole session, started
    by the first test that needs it (tests/raycluster.py)."""
    stop_orphans()
    # The bridges the servers and the executor suite start are the cluster's drivers.
    os.environ.update(DRIVER_ENV)
    cluster = RayCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_database(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a new database epe has migrated, dropped after the test."""
    url = postgres.new_database(migrated=True)
    yield url
    postgres.drop_database(url)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EpeServer]:
    """One server with default settings, shared by the tests that need nothing special."""
    srv = EpeServer(tmp_path_factory.mktemp("epe-data")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def pg_data_server(postgres: PostgresServer,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[EpeServer]:
    """One server whose users' tables are in PostgreSQL, shared like ``server``."""
    srv = EpeServer(tmp_path_factory.mktemp("epe-pg-data"), on_postgresql_data(postgres)).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def data_server(request: pytest.FixtureRequest) -> EpeServer:
    """The shared server of each backend of users' tables: a test that takes it runs
    on both."""
    name = "server" if request.param == "duckdb" else "pg_data_server"
    srv: EpeServer = request.getfixturevalue(name)
    return srv


@pytest.fixture(scope="module")
def admin(server: EpeServer) -> Iterator[httpx.Client]:
    """A client logged in as a new admin of ``server`` (the session's, or the one a module
    defines in its place)."""
    _name, client = server.new_client(admin=True)
    with client:
        yield client


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., EpeServer]]:
    """Start servers with their own settings, e.g. ``make_server(EPE_TOKEN_LIFETIME="2")``."""
    started: list[EpeServer] = []

    def make(**env: str) -> EpeServer:
        srv = EpeServer(tmp_path / f"data{len(started)}", env).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
