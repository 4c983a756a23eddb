"""The Litestar application: wiring only (settings, database, blob store, routes, error mapping)."""

from __future__ import annotations

import ctypes
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

import registry
from monitoring.workers import ProfilePool
from registry import _libc, observability, ui
from registry.api import mlflow
from registry.api.errors import EXCEPTION_HANDLERS, document_errors
from registry.api.security import ROLE_GUARDS, TokenCache, authenticate, current_actor
from registry.api.v1 import artifacts, automations, gates, models, monitor, runs, system, tokens, webhooks
from registry.api.v1._common import ApiRequest, refuse_nul
from registry.db import Database
from registry.settings import Settings
from registry.storage import BlobStore, open_store


def create_app(settings: Settings, *, db: Database | None = None, store: BlobStore | None = None) -> Litestar:
    """Build the app. ``db``/``store`` are created from ``settings`` unless given (and then not closed)."""
    owns_db, owns_store = db is None, store is None
    database = db or Database(settings.resolved_database_url, pool_size=settings.db_pool_size)
    blobs = store or open_store(settings)
    # Its processes start with the first batch or baseline, and only once the lifespan has started it: an app
    # run without its lifespan (httpx's ASGITransport in tests) profiles in-process.
    profiling = ProfilePool(settings.monitor_workers)
    if owns_db:
        for name, engine, capacity in database.pools():
            observability.watch_pool(engine, name, capacity)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Background work of this replica: the outbox dispatcher and the slot-claiming scheduler.
        from automations import scheduler
        from automations.dispatcher import Dispatcher

        profiling.start()
        # Bound while they start too: the scheduler's timers and job tasks copy this context, so its jobs (a check
        # may set a baseline from lineage) profile in the pool as well.
        with profiling.bound():
            dispatcher = Dispatcher(database, blobs, settings) if settings.dispatcher_enabled else None
            jobs = scheduler.start(database, settings, me=settings.instance) if settings.scheduler_enabled else None
            if dispatcher is not None:
                dispatcher.start()
        try:
            yield
        finally:
            if jobs is not None:
                jobs.shutdown(wait=False)
            if dispatcher is not None:
                await dispatcher.stop()
            await profiling.close()
            observability.mark_process_dead()
            if owns_store:
                await blobs.close()
            if owns_db:
                await database.dispose()

    api_v1 = Router(
        path="/api/v1",
        guards=[authenticate],
        route_handlers=[
            system.EventsController,
            system.AuditController,
            tokens.TokensController,
            runs.ExperimentsController,
            runs.RunsController,
            artifacts.BlobsController,
            artifacts.UploadsController,
            artifacts.RunArtifactsController,
            artifacts.ArtifactVersionsController,
            models.ModelsController,
            gates.GatesController,
            monitor.MonitorController,
            webhooks.WebhooksController,
            automations.AutomationsController,
        ],
        security=[{"bearer": []}],
    )
    app = Litestar(
        route_handlers=[
            system.health,
            system.metrics,
            api_v1,
            automations.hooks_router,
            *mlflow.routers(),
            *ui.route_handlers(),
        ],
        template_config=ui.template_config(),
        dependencies={
            "db": Provide(lambda: database, sync_to_thread=False),
            "store": Provide(lambda: blobs, sync_to_thread=False),
            "settings": Provide(lambda: settings, sync_to_thread=False),
            "actor": Provide(current_actor, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=ApiRequest,
        before_request=refuse_nul,
        middleware=[
            _request_context(profiling),
            PrometheusConfig(
                app_name="modelkeep", prefix="modelkeep_http", group_path=True, exclude=["^/metrics$"]
            ).middleware,
        ],
        request_max_body_size=settings.max_request_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Modelkeep registry",
            version=registry.__version__,
            path="/schema",
            # Swagger UI from the bundled files: the docs work where the internet is out of reach.
            render_plugins=ui.openapi_render_plugins(),
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", description="API token")}
            ),
        ),
        lifespan=[lifespan],
        # Logging is configure_logging's (text or JSON lines, request ids); Litestar's default would replace
        # the root handler with its own format at start-up. Errors are logged by EXCEPTION_HANDLERS.
        logging_config=None,
        debug=False,
    )
    document_errors(app, prefix="/api/v1/", role_guards=ROLE_GUARDS)
    app.state.db = database
    app.state.store = blobs
    app.state.settings = settings
    app.state.token_cache = TokenCache(settings.auth_cache_seconds)
    return app


def _request_context(pool: ProfilePool) -> Callable[[ASGIApp], ASGIApp]:
    """Middleware giving each request its id (``X-Request-ID``: the client's or load balancer's when well
    formed, else a new one), echoed in the response and seen by logs, events and audit entries; and binding
    the app's profiling pool (``monitoring.workers.run`` finds it)."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def bound(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                with pool.bound():
                    await app(scope, receive, send)
                return
            sent = next((v for k, v in scope["headers"] if k == REQUEST_ID_HEADER), None)
            rid = observability.accept_request_id(sent.decode("latin-1") if sent else None)
            header = (REQUEST_ID_HEADER, rid.encode())

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", ()), header]}
                await send(message)

            token = observability.request_id.set(rid)
            try:
                with pool.bound():
                    await app(scope, receive, send_with_id)
            finally:
                observability.request_id.reset(token)

        return bound

    return middleware


REQUEST_ID_HEADER = observability.REQUEST_ID_HEADER.encode()


M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def tune_allocator() -> None:
    """On glibc, keep freed heap for reuse instead of trimming it after every streamed batch.

    Uploads pass through in 4 MiB batches; by default glibc returns such buffers to the kernel at once and
    page-faults them back in for the next batch (up to a CPU-second per GB). Raising the trim and mmap
    thresholds keeps a few batches' worth of heap mapped; RSS stays bounded by the batch size.
    """
    mallopt = _libc.function("mallopt")
    if mallopt is None:  # not glibc on Linux: nothing to tune
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt(M_MMAP_THRESHOLD, 16 * 1024 * 1024)
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024)


QUIET_LOGGERS = ("apscheduler", "httpx", "httpcore", "aiosqlite")
"""Libraries that log every scheduled run or outgoing request at INFO: one line each would swamp the log.
aiosqlite logs every statement with its bound values at DEBUG (webhook secrets, token digests), which
``hide_parameters`` cannot hide, so it stays quiet even when the root logger is at DEBUG."""


OWN_LOGGERS = ("registry", "automations", "gates", "monitoring")


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """``level`` (MODELKEEP_LOG_LEVEL) for Modelkeep's own loggers, INFO for the rest, WARNING for chatty
    libraries; lines as ``fmt`` (MODELKEEP_LOG_FORMAT: text or json), with the request id; in every worker
    process."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(observability.log_handler(fmt))
        root.setLevel(logging.INFO)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def from_env() -> Litestar:
    """Factory for ASGI servers (``uvicorn --factory registry.api.app:from_env``), run in each worker."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    tune_allocator()
    return create_app(settings)
