"""The app factory: settings in, a ready FastAPI app out."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

import epe.observe.metrics
from epe import __version__, console
from epe.api import (
    audit,
    auth,
    datastores,
    envs,
    errors,
    jobs,
    meta,
    metrics,
    openapi,
    query,
    run,
    scripts,
    tables,
    users,
)
from epe.api.middleware import (
    BodyLimit,
    DeprecateV1,
    FormBodyAsJson,
    Observe,
    RefuseLoneSurrogates,
)
from epe.core.operations import API_ROOT, API_VERSIONS
from epe.errors import InvalidSetting
from epe.service.jobs import JobManager
from epe.service.services import open_services
from epe.settings import Settings
from epe.store import Store

log = logging.getLogger("epe.app")


def versioned_router() -> APIRouter:
    """Everything under ``/oml/api/py-scripts/{v1,v2}``: the same behaviour in both."""
    router = APIRouter()
    router.include_router(scripts.router)
    router.include_router(run.router())
    router.include_router(jobs.router)
    router.include_router(tables.router)
    router.include_router(datastores.router)
    router.include_router(query.router)
    router.include_router(envs.router)
    return router


def load_plugins(settings: Settings) -> None:
    """Import the modules ``EPE_PLUGINS`` names, before any route is made: a module
    registers its operations when it is imported (docs/architecture.md#adding-an-operation).
    Importing one twice does nothing."""
    for name in filter(None, (n.strip() for n in settings.plugins.split(","))):
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise InvalidSetting(f"EPE_PLUGINS names {name}, which cannot be imported: {e}"
                                 ) from None


def create_app(settings: Settings, store: Store | None = None) -> FastAPI:
    """The app; ``store``: the metadata store, if the caller opened it already (``epe serve``
    does, to say in one line why it cannot)."""
    load_plugins(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = open_services(settings, store)
        await asyncio.gather(services.environments.start(),
                             asyncio.to_thread(services.catalog.warm_up))
        manager = JobManager(services)
        await manager.start()
        app.state.services, app.state.jobs = services, manager
        stop_metrics = serve_metrics(settings)
        try:
            yield
        finally:
            await manager.stop()
            await services.environments.stop()
            services.close()  # the audit trail's last entries are written here
            stop_metrics()
            epe.observe.metrics.process_exit()

    app = FastAPI(title="epe", version=__version__, lifespan=lifespan,
                  description="Embedded Python Execution, OML4Py-compatible.")
    errors.install(app)
    openapi.install(app, settings.max_timeout)
    app.add_middleware(RefuseLoneSurrogates)
    app.add_middleware(DeprecateV1)
    app.add_middleware(FormBodyAsJson)
    app.add_middleware(BodyLimit, limit=settings.max_body_size,
                       upload_limit=settings.max_upload_size)
    app.add_middleware(Observe)  # outermost: it sees every answer, the 413s too
    app.include_router(meta.router)
    app.include_router(metrics.router)
    app.include_router(auth.router)
    app.include_router(users.router)
    app.include_router(audit.router)
    for version in API_VERSIONS:
        app.include_router(versioned_router(), prefix=f"{API_ROOT}/{version}")
    console.install(app)
    return app


def serve_metrics(settings: Settings) -> Callable[[], None]:
    """Start the metrics listener ``EPE_METRICS_ADDRESS`` names; how to stop it."""
    if not settings.metrics_address:
        return lambda: None
    address, stop = epe.observe.metrics.serve(settings.metrics_address)
    log.info("metrics on http://%s/metrics", address)
    return stop
