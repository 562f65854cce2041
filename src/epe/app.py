"""The app factory: settings in, a ready FastAPI app out."""

from __future__ import annotations

import asyncio
import functools
import gc
import importlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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
    groups,
    jobs,
    meta,
    metrics,
    models,
    openapi,
    query,
    run,
    scripts,
    signin,
    tables,
    tokens,
    usage,
    users,
)
from epe.api.middleware import (
    BodyLimit,
    DeprecateV1,
    Draining,
    FormBodyAsJson,
    Observe,
    RefuseLoneSurrogates,
    TenantPaths,
)
from epe.core.operations import API_ROOT, API_VERSIONS
from epe.errors import InvalidSetting
from epe.runner.local.forkserver import Launched
from epe.service import backup, control
from epe.service.jobs import JobManager
from epe.service.models import Models
from epe.service.schedules import ScoringJobs
from epe.service.services import Services, open_services
from epe.settings import Settings
from epe.store import Store

log = logging.getLogger("epe.app")


def versioned_routers() -> tuple[APIRouter, APIRouter]:
    """Everything under ``/oml/api/py-scripts/{v1,v2}``, the same behaviour in both: the
    run routes, and the rest (scripts, jobs, tables, datastores, query, environments)."""
    rest = APIRouter()
    for resource in (scripts, jobs, tables, datastores, query, envs):
        rest.include_router(resource.router)
    return run.router(), rest


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


def create_app(settings: Settings, store: Store | None = None,
               launched: Launched | None = None) -> FastAPI:
    """The app; ``store``: the metadata store, if the caller opened it already (``epe serve``
    does, to say in one line why it cannot); ``launched``: the default fork server, if the
    caller launched it already (``epe serve`` does, before it imports this module)."""
    load_plugins(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = open_services(settings, store, launched)
        await asyncio.gather(services.environments.start(),
                             asyncio.to_thread(services.catalog.warm_up))
        manager = JobManager(services)
        await manager.start()
        scoring = ScoringJobs(services, manager)
        await scoring.start()
        app.state.services, app.state.jobs = services, manager
        app.state.models, app.state.scoring_jobs = Models(services), scoring
        app.state.drain = functools.partial(drain, services, manager)  # epe serve's SIGTERM
        stop_metrics = serve_metrics(settings)
        stop_control = await serve_control(services, manager)
        # What the server holds once started (modules, routes, the store's metadata) stays
        # for its life: frozen, a full collection no longer walks it. Unfrozen, each one
        # walked it all, about 100 ms at a time, every few runs of 10,000 groups.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            await stop_control()
            await scoring.stop()
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
    app.add_middleware(TenantPaths)  # outside DeprecateV1: a tenant-scoped v1 path is v1
    app.add_middleware(FormBodyAsJson)
    app.add_middleware(BodyLimit, limit=settings.max_body_size,
                       upload_limit=settings.max_upload_size,
                       model_limit=settings.max_model_size)
    app.add_middleware(Draining)
    app.add_middleware(Observe)  # outermost: it sees every answer, the 413s too
    # The run routes first, then the rest of each version: FastAPI tries routes one by
    # one, and a run matched after every other router's routes spent a fifth of a sync
    # do-eval's time in the server (docs/benchmarks.md#do-eval-latency).
    runs, rest = zip(*(versioned_routers() for _ in API_VERSIONS), strict=True)
    for routers in (runs, rest):
        for version, router in zip(API_VERSIONS, routers, strict=True):
            app.include_router(router, prefix=f"{API_ROOT}/{version}")
    app.include_router(meta.router)
    app.include_router(metrics.router)
    app.include_router(auth.router)
    app.include_router(users.router)
    app.include_router(tokens.router)
    app.include_router(groups.router)
    app.include_router(signin.router)
    app.include_router(audit.router)
    app.include_router(usage.router)
    app.include_router(models.router)
    console.install(app)
    return app


async def drain(services: Services, manager: JobManager) -> None:
    """The first step of stopping (docs/deploy.md, restarting without losing work): no
    more new work, waiting jobs back to the queue, what runs finishes within the grace
    or is stopped; then the server may stop listening."""
    began = time.monotonic()
    services.drain.begin()
    running, runs = manager.running, services.drain.runs
    handed = await manager.hand_back()
    log.info("draining: not ready, no new runs or jobs; %d waiting jobs handed back to the "
             "queue; waiting up to %g s for %d running jobs and %d runs", handed,
             services.drain.grace, running, runs)
    if await services.drain.settle(lambda: manager.idle):
        log.info("drained in %.1f s", time.monotonic() - began)
        return
    runs = services.drain.interrupt_runs()
    jobs = await manager.interrupt(services.drain.stopped_message("job"))
    log.warning("stopping: %d jobs and %d runs were still running and were stopped (FAILED, "
                "they say why)", jobs, runs)


async def serve_control(services: Services, manager: JobManager
                        ) -> Callable[[], Awaitable[None]]:
    """Listen on the data folder's control socket (``epe backup`` asks there), unless
    another server runs on the folder."""
    if not manager.queue.owns_folder:
        return _nothing
    return await control.serve(services.settings.data_dir, {
        "backup": functools.partial(backup.answer, services.settings, services.catalog)})


async def _nothing() -> None:
    pass


def serve_metrics(settings: Settings) -> Callable[[], None]:
    """Start the metrics listener ``EPE_METRICS_ADDRESS`` names; how to stop it."""
    if not settings.metrics_address:
        return lambda: None
    address, stop = epe.observe.metrics.serve(settings.metrics_address)
    log.info("metrics on http://%s/metrics", address)
    return stop
