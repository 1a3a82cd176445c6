"""Start the server: TLS material, first-start bootstrap, uvicorn."""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from rich.console import Console

from portico.gateway.server import serve_with_gateway
from portico.identity.apps import ensure_bootstrap_admin
from portico.secrets_box import load_or_create
from portico.server.app import create_app
from portico.server.tls import ensure_tls
from portico.settings import Settings, configure_logging
from portico.store.db import Database
from portico.store.sealing import SealedSecretError, check_key

console = Console(stderr=True)


async def _bootstrap(settings: Settings) -> str | None:
    db = Database(settings.resolved_database_url, load_or_create(settings))
    await db.start()
    try:
        try:
            await check_key(db)
        except SealedSecretError as exc:
            # Another key than the one the database's secrets were sealed with: serving would fail
            # on every secret, and sealing new ones with this key would mix keys.
            raise SystemExit(f"portico: the database's secrets cannot be opened: {exc}") from None
        path = await ensure_bootstrap_admin(
            db, settings.data_dir, tenant_id=settings.tenant_id, authority=settings.resolved_public_url
        )
    finally:
        await db.close()
    return str(path) if path else None


def serve(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    configure_logging(settings)
    admin = asyncio.run(_bootstrap(settings))
    ssl: dict[str, str] = {}
    if not settings.insecure_http:
        if settings.tls_cert and settings.tls_key:
            cert, key, ca = settings.tls_cert, settings.tls_key, None
        else:
            ca, cert, key = ensure_tls(settings.data_dir, [settings.host, socket.gethostname()])
        ssl = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        if ca:
            console.print(
                f"[bold]TLS[/]: CA certificate {ca.resolve()} (clients trust it with connection_verify= or REQUESTS_CA_BUNDLE)"
            )
    url = settings.resolved_public_url
    console.print(
        f"[bold]Portico[/] management API and identity provider on {url} (tenant '{settings.tenant_id}')"
    )
    console.print(
        f"  token endpoint: {url}/{settings.tenant_id}/oauth2/v2.0/token   database: {settings.resolved_database_url.split('://')[0]}"
    )
    if admin:
        console.print(
            f"[bold yellow]First start[/]: an admin app (role Owner at '/') was created; its client id and secret are in {admin} (readable only by you)."
        )
    else:
        console.print(
            "  admin credential: `portico app create --name NAME --role Owner --scope /` prints a new one."
        )
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=2,
        **ssl,  # type: ignore[arg-type]
    )
    if settings.gateway_port or settings.gateway_https_port:
        # The gateway runs beside the management API: same process, same event loop.
        serve_with_gateway(settings, config, console)
    else:
        uvicorn.Server(config).run()
