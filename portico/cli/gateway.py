"""`portico gateway` (a gateway-only node) and `portico analytics export`.

The export is client-side, like `portico backup`: it pages through the reports REST API with a
service principal's token, so it works from anywhere the management API is reachable, under the
same RBAC as the API (Reader may export), against Portico or Azure API Management alike, and
needs no database credentials on the operator's machine.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import typer

from portico.cli.client import (
    Endpoint,
    check,
    connection,
    console,
    fail,
)

analytics_cli = typer.Typer(
    help="Usage analytics (the data backups leave out): export reports for retention."
)

REPORTS = {
    "byrequest": "byRequest",
    "byapi": "byApi",
    "byoperation": "byOperation",
    "byproduct": "byProduct",
    "bysubscription": "bySubscription",
    "byuser": "byUser",
    "bytime": "byTime",
}


def gateway(
    data_dir: Path = typer.Option(
        None, envvar="PORTICO_DATA_DIR", help="Data directory (TLS material; SQLite database by default)."
    ),
    database_url: str = typer.Option(
        None, envvar="PORTICO_DATABASE_URL", help="The database of the management nodes (SQLAlchemy URL)."
    ),
    host: str = typer.Option(None, envvar="PORTICO_GATEWAY_HOST", help="Bind address (default 127.0.0.1)."),
    port: int = typer.Option(None, envvar="PORTICO_GATEWAY_PORT", help="HTTP port (default 8080, 0 = off)."),
    https_port: int = typer.Option(
        None, envvar="PORTICO_GATEWAY_HTTPS_PORT", help="HTTPS port (default 8081, 0 = off)."
    ),
    gateway_domain: str = typer.Option(
        None, envvar="PORTICO_GATEWAY_DOMAIN", help="Services answer as {service}.{domain}."
    ),
    tls_cert: Path = typer.Option(
        None, envvar="PORTICO_TLS_CERT", help="Server certificate (PEM); generated when absent."
    ),
    tls_key: Path = typer.Option(None, envvar="PORTICO_TLS_KEY", help="Server private key (PEM)."),
    workers: int = typer.Option(
        None,
        envvar="PORTICO_GATEWAY_WORKERS",
        help="Worker processes sharing the ports (default: one per CPU; 0 = in this process).",
    ),
    gateway_name: str = typer.Option(
        None,
        "--gateway-name",
        envvar="PORTICO_GATEWAY_NAME",
        help="Serve only the APIs linked to this self-hosted gateway entity (needs --token).",
    ),
    token: str = typer.Option(
        None,
        "--token",
        envvar="PORTICO_GATEWAY_TOKEN",
        help="A token of the gateway entity's generateToken action (GatewayKey ...).",
    ),
) -> None:
    """Run a gateway-only node: serves every service of the database (or, with --gateway-name and
    --token, the APIs of one self-hosted gateway), no management API."""

    from portico.gateway.server import serve_with_gateway
    from portico.settings import configure_logging, settings_from_options

    settings = settings_from_options(
        data_dir=data_dir,
        database_url=database_url,
        gateway_host=host,
        gateway_port=port,
        gateway_https_port=https_port,
        gateway_domain=gateway_domain,
        tls_cert=tls_cert,
        tls_key=tls_key,
        gateway_workers=workers,
        gateway_name=gateway_name,
        gateway_token=token,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    configure_logging(settings)
    if bool(gateway_name) != bool(token):
        fail("--gateway-name and --token go together", 2)
    _check_secret_key(settings)
    if gateway_name and token:
        _check_token(settings, gateway_name, token)
    if not settings.gateway_port and not settings.gateway_https_port:
        fail("both gateway ports are 0: nothing to serve", 2)
    serve_with_gateway(settings, None, console)


def _check_secret_key(settings: Any) -> None:
    """Refuse to start a node whose server secret key cannot open the secrets the database holds
    (certificates, secret named values): it would serve without them."""
    import asyncio

    from portico.secrets_box import load_or_create
    from portico.store.db import Database
    from portico.store.sealing import SealedSecretError, check_key

    async def check() -> str | None:
        db = Database(settings.resolved_database_url, load_or_create(settings))
        await db.start()  # the node would bring the schema up to date anyway
        try:
            await check_key(db)
            return None
        except SealedSecretError as exc:
            return str(exc)
        finally:
            await db.close()

    problem = asyncio.run(check())
    if problem is not None:
        fail(f"the database's secrets cannot be opened: {problem}", 2)


def _check_token(settings: Any, name: str, token: str) -> None:
    """Refuse to start (rather than workers failing one after another) with a token that does not
    authenticate the gateway."""
    import asyncio

    from portico.gateway.selfhosted import TokenError, resolve
    from portico.secrets_box import load_or_create
    from portico.store.db import Database
    from portico.store.sealing import SealedSecretError

    async def check() -> str:
        db = Database(settings.resolved_database_url, load_or_create(settings))
        await db.start(migrate_schema=False)
        try:
            async with db.read() as conn:
                return (await resolve(conn, name, token)).name
        except (TokenError, SealedSecretError) as exc:
            return f"error: {exc}"
        finally:
            await db.close()

    outcome = asyncio.run(check())
    if outcome.startswith("error: "):
        fail(f"gateway '{name}': {outcome.removeprefix('error: ')}", 2)
    console.print(f"self-hosted gateway '{outcome}': serving the APIs linked to it")


@analytics_cli.command("export")
@connection()
def export(
    ep: Endpoint,
    service: str = typer.Option(..., "--service", help="Service whose usage to export."),
    start: str = typer.Option(None, "--from", help="Start (ISO 8601, UTC when no offset), inclusive."),
    end: str = typer.Option(None, "--to", help="End (ISO 8601), inclusive."),
    report: str = typer.Option(
        "byRequest",
        "--report",
        help="byRequest (one row per call) or an aggregate: byApi, byOperation, byProduct, bySubscription, byUser, byTime.",
    ),
    interval: str = typer.Option("PT15M", "--interval", help="Bucket of byTime (ISO 8601 duration)."),
    fmt: str = typer.Option("csv", "--format", help="csv or json."),
    output: Path = typer.Option(None, "--output", "-o", help="File to write (default: standard output)."),
    page_size: int = typer.Option(1000, "--page-size", min=1, max=1000),
    api_version: str = typer.Option("2024-05-01", "--api-version"),
) -> None:
    """Export usage (the reports REST API, all pages) as CSV or JSON, for retention."""
    name = REPORTS.get(report.lower())
    if name is None:
        fail(f"unknown report '{report}' (use {', '.join(REPORTS.values())})", 2)
    if fmt not in ("csv", "json"):
        fail("--format must be csv or json", 2)
    terms = []
    if start:
        terms.append(f"timestamp ge datetime'{start}'")
    if end:
        terms.append(f"timestamp le datetime'{end}'")
    params: dict[str, Any] = {"api-version": api_version, "$top": page_size}
    if terms:
        params["$filter"] = " and ".join(terms)
    if name == "byTime":
        params["interval"] = interval
    rows: list[dict[str, Any]] = []
    with ep.client() as http:
        next_url: str | None = f"{ep.service_url(service)}/reports/{name}"
        first = True
        while next_url:
            resp = check(http.get(next_url, params=params if first else None))
            first = False
            doc = resp.json()
            rows.extend(doc.get("value", []))
            next_url = doc.get("nextLink")
    out = output.open("w", newline="") if output else sys.stdout
    try:
        if fmt == "json":
            json.dump(rows, out, indent=1)
            out.write("\n")
        else:
            columns: list[str] = []
            for r in rows:
                for k in r:
                    if k not in columns:
                        columns.append(k)
            writer = csv.DictWriter(out, fieldnames=columns)
            writer.writeheader()
            for r in rows:
                writer.writerow(r)
    finally:
        if output:
            out.close()
    if output:
        console.print(f"exported {len(rows)} {name} record(s) of '{service}' to {output}", style="green")


def register(app: typer.Typer) -> None:
    """Add `portico gateway` and `portico analytics export` to the `portico` command."""
    app.command("gateway")(gateway)
    app.add_typer(analytics_cli, name="analytics")
