"""The app factory: settings in, a ready FastAPI app out."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from epe import __version__, console
from epe.api import (
    auth,
    datastores,
    envs,
    errors,
    jobs,
    meta,
    query,
    run,
    scripts,
    tables,
    users,
)
from epe.api.deps import Services
from epe.api.middleware import BodyLimit, DeprecateV1, FormBodyAsJson
from epe.auth.tokens import TokenService, load_or_create_key
from epe.data import Catalog
from epe.jobs import JobManager
from epe.runner.environments import EnvironmentPools
from epe.runner.executor import Executor
from epe.runner.pool import LocalPool
from epe.settings import Settings
from epe.store import Store

API_ROOT = "/oml/api/py-scripts"


def prepare_data_dir(settings: Settings) -> None:
    """Create the data folder: others may pass through it (workers run named
    environments from ``envs/``) but not list it; what is private is 0600/0700."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o711)
    for private in ("tables", "jobs"):
        (settings.data_dir / private).mkdir(exist_ok=True)
        os.chmod(settings.data_dir / private, 0o700)


def open_services(settings: Settings, executor: Executor | None = None) -> Services:
    prepare_data_dir(settings)
    store = Store.open_sqlite(settings.metadata_path)
    tokens = TokenService(load_or_create_key(settings.key_path), settings.token_lifetime,
                          settings.token_chain_lifetime)
    executor = executor or LocalPool(settings)
    return Services(settings, store, tokens, executor, open_catalog(settings),
                    EnvironmentPools(settings, executor))


def open_catalog(settings: Settings) -> Catalog:
    return Catalog(settings.data_dir / "tables", settings.query_timeout)


def versioned_router() -> APIRouter:
    """Everything under ``/oml/api/py-scripts/{v1,v2}``: the same behaviour in both."""
    router = APIRouter()
    router.include_router(scripts.router)
    router.include_router(run.router)
    router.include_router(jobs.router)
    router.include_router(tables.router)
    router.include_router(datastores.router)
    router.include_router(query.router)
    router.include_router(envs.router)
    return router


def create_app(settings: Settings, executor: Executor | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = open_services(settings, executor)
        await asyncio.gather(services.executor.start(),
                             asyncio.to_thread(services.catalog.warm_up))
        await services.environments.start()
        manager = JobManager(services)
        await manager.start()
        app.state.services, app.state.jobs = services, manager
        try:
            yield
        finally:
            await manager.stop()
            await services.environments.stop()
            await services.executor.stop()
            services.catalog.close()
            services.store.close()

    app = FastAPI(title="epe", version=__version__, lifespan=lifespan,
                  description="Embedded Python Execution, OML4Py-compatible.")
    errors.install(app)
    app.add_middleware(DeprecateV1)
    app.add_middleware(FormBodyAsJson)
    app.add_middleware(BodyLimit, limit=settings.max_body_size,
                       upload_limit=settings.max_upload_size)
    app.include_router(meta.router)
    app.include_router(auth.router)
    app.include_router(users.router)
    for version in ("v1", "v2"):
        app.include_router(versioned_router(), prefix=f"{API_ROOT}/{version}")
    console.install(app)
    return app
