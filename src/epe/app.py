"""The app factory: settings in, a ready FastAPI app out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from epe import __version__
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
from epe.api.middleware import BodyLimit, DeprecateV1, FormBodyAsJson
from epe.core.operations import API_ROOT, API_VERSIONS
from epe.runner.executor import Executor
from epe.service.jobs import JobManager
from epe.service.services import open_services
from epe.settings import Settings
from epe.store import Store


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


def create_app(settings: Settings, executor: Executor | None = None,
               store: Store | None = None) -> FastAPI:
    """The app; ``store``: the metadata store, if the caller opened it already (``epe serve``
    does, to say in one line why it cannot)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = open_services(settings, executor, store)
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
            services.close()

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
    for version in API_VERSIONS:
        app.include_router(versioned_router(), prefix=f"{API_ROOT}/{version}")
    return app
