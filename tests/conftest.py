from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.serverproc import EpeServer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EpeServer]:
    """One server with default settings, shared by the tests that need nothing special."""
    srv = EpeServer(tmp_path_factory.mktemp("epe-data")).start()
    yield srv
    srv.stop()


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
