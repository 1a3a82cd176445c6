"""The ASGI application: identity provider + management API + error mapping, on one origin."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from portico.arm.errors import ArmError
from portico.arm.http import json_response
from portico.deployments.service import Deployments, environment_document
from portico.dr.recovery import recover_operation
from portico.dr.scheduler import Scheduler
from portico.identity.credentials.consent import build_consent_routes
from portico.identity.issuer import build_identity_router
from portico.identity.keys import SigningKeys
from portico.identity.people import build_people
from portico.identity.validation import TokenValidator
from portico.jobs.runner import JobRunner
from portico.metrics import build_metrics_route
from portico.resources.keyvault_refresh import KeyVaultRefresher
from portico.runtime import Runtime
from portico.secrets_box import load_or_create
from portico.server.management import build_management_route
from portico.server.openapi import build_document
from portico.server.routes import ROUTES
from portico.settings import Settings
from portico.store import stores
from portico.store.db import Database
from portico.store.sealing import SealedSecretError, check_key, seal_clear_rows
from portico.store.services import group_subscriptions

log = logging.getLogger("portico")


def build_jobs(settings: Settings, db: Database) -> JobRunner:
    """The job runner, with the recoverers of every kind of operation and its background work."""
    jobs = JobRunner(settings, db)
    for kind in ("backup", "restore"):
        jobs.recoverers.register(kind, lambda op: recover_operation(db, op))
    # Stores a stopped process retired but did not finish deleting.
    jobs.add_background([lambda: stores.collect_retired(db)])
    return jobs


async def _warn_of_unoffered_subscriptions(db: Database, settings: Settings) -> None:
    """Management requests answer only under PORTICO_SUBSCRIPTIONS: a database whose resource groups
    sit in another subscription (configured differently before) would seem to have lost them."""
    if not settings.subscriptions_enforced:
        return
    async with db.read() as conn:
        held = await group_subscriptions(conn)
    missing = sorted(sub for sub in held if not settings.offers_subscription(sub))
    if missing:
        log.warning(
            "resource groups exist in subscription(s) not in PORTICO_SUBSCRIPTIONS, so unreachable "
            "(404 SubscriptionNotFound) until listed there: %s",
            ", ".join(missing[:20]),
        )


def create_app(settings: Settings) -> FastAPI:
    # The server's secrets box (created on a first start) seals entity secrets in the database.
    box = load_or_create(settings)
    db = Database(settings.resolved_database_url, box)
    keys = SigningKeys(db)
    rt = Runtime(settings=settings, db=db, keys=keys, validator=TokenValidator(settings, keys))
    rt.routes = ROUTES

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await db.start()
        await check_key(db)  # a node with another key than the database's refuses to start
        await seal_clear_rows(db, box)  # rows written before secrets were sealed at rest
        await keys.start()
        await _warn_of_unoffered_subscriptions(db, settings)
        rt.jobs = build_jobs(settings, db)
        await rt.jobs.start()
        # The backup scheduler starts after job recovery, so that ended runs are closed first.
        scheduler = rt.scheduler = Scheduler(rt, box=box)
        await scheduler.start()
        rt.deployments = Deployments(
            db,
            rt.jobs.node_id,
            environment_document(settings.resolved_public_url, settings.tenant_id, settings.audience),
            settings.tenant_id,
        )
        await rt.deployments.start()
        rt.keyvault = KeyVaultRefresher(db, settings)
        await rt.keyvault.start()
        try:
            yield
        finally:
            await rt.keyvault.stop()
            await rt.deployments.stop()
            await scheduler.stop()
            await rt.jobs.stop()
            await rt.validator.aclose()
            await db.close()

    app = FastAPI(title="Portico", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = rt
    # People sign-in: its pages first, they own /authorize.
    people = build_people(settings, db, keys)
    app.include_router(people.router)
    app.include_router(
        build_identity_router(
            settings, db, keys, extra_grants=people.grants, extra_discovery=people.discovery
        )
    )
    app.add_route("/metrics", build_metrics_route(rt), methods=["GET"])
    openapi_document: list[dict[str, Any]] = []  # built on first request: not a start-up cost

    async def openapi(_request: Request) -> Response:
        if not openapi_document:
            openapi_document.append(build_document(ROUTES, settings.resolved_public_url))
        return json_response(openapi_document[0])

    app.add_route("/openapi.json", openapi, methods=["GET"])
    # Consent of credential manager connections: login links and providers' redirects (browsers).
    app.router.routes.extend(build_consent_routes(settings.resolved_public_url, db, lambda: rt.scheduler.box))
    # Last: the management API's catch-all route, behind every fixed path above.
    app.router.routes.append(build_management_route(rt))

    @app.exception_handler(ArmError)
    async def arm_error(_request: Request, exc: ArmError) -> Response:
        return json_response(exc.body(), exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "ResourceNotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "BadRequest")
        return json_response(
            {"error": {"code": code, "message": str(exc.detail), "details": []}}, exc.status_code
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> Response:
        return json_response(
            {
                "error": {
                    "code": "InvalidRequestContent",
                    "message": "The request is malformed.",
                    "details": [],
                }
            },
            400,
        )

    @app.exception_handler(SealedSecretError)
    async def sealed_secret(request: Request, exc: SealedSecretError) -> Response:
        # The node's server secret key cannot open what the store holds: say which entity and why
        # (the message carries no secret), not a bare internal error.
        log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
        return json_response(
            {"error": {"code": "SealedSecretUnreadable", "message": str(exc), "details": []}}, 500
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Log the type and the route only: exception text may carry request data.
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
        return json_response(
            {
                "error": {
                    "code": "InternalServerError",
                    "message": "An internal error occurred.",
                    "details": [],
                }
            },
            500,
        )

    return app
