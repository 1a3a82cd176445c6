"""`portico drill`: a measured failover drill between two Portico instances (client side).

The drill itself is `portico.dr.drill`; this command gathers the two endpoints and prints the
report as a table, or JSON with `--json`. Exit code 0 when the standby is equivalent and (if a
gateway was available) a request succeeded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table

from portico.cli.client import SUBSCRIPTION_ENV, TENANT, Endpoint, console, err, fail, one_line_errors
from portico.dr.drill import DrillError, Side, run_drill

drill_cli = typer.Typer(
    help="Failover drill: back up the primary, restore into the standby, verify, measure RPO/RTO."
)


@drill_cli.callback(invoke_without_command=True)
@one_line_errors
def drill(
    primary_url: str = typer.Option(
        ..., "--primary-url", envvar="PORTICO_PRIMARY_URL", help="Primary's management endpoint."
    ),
    primary_service: str = typer.Option(..., "--primary-service", help="Service to back up on the primary."),
    primary_ca: str = typer.Option(
        None, "--primary-ca", envvar="PORTICO_PRIMARY_CA", help="CA certificate of the primary."
    ),
    primary_client_id: str = typer.Option(
        None,
        "--primary-client-id",
        envvar="PORTICO_PRIMARY_CLIENT_ID",
        help="App on the primary (default --client-id).",
    ),
    primary_client_secret: str = typer.Option(
        None, "--primary-client-secret", envvar="PORTICO_PRIMARY_CLIENT_SECRET"
    ),
    primary_subscription: str = typer.Option(
        None,
        "--primary-subscription",
        help="Default: --subscription, else the only one visible on the primary.",
    ),
    primary_resource_group: str = typer.Option(
        None, "--primary-resource-group", help="Default: --resource-group."
    ),
    standby_url: str = typer.Option(
        ..., "--standby-url", envvar="PORTICO_STANDBY_URL", help="Standby's management endpoint."
    ),
    standby_service: str = typer.Option(
        ..., "--standby-service", help="Service to restore into on the standby."
    ),
    standby_ca: str = typer.Option(
        None, "--standby-ca", envvar="PORTICO_STANDBY_CA", help="CA certificate of the standby."
    ),
    standby_client_id: str = typer.Option(
        None,
        "--standby-client-id",
        envvar="PORTICO_STANDBY_CLIENT_ID",
        help="App on the standby (default --client-id).",
    ),
    standby_client_secret: str = typer.Option(
        None, "--standby-client-secret", envvar="PORTICO_STANDBY_CLIENT_SECRET"
    ),
    standby_subscription: str = typer.Option(
        None,
        "--standby-subscription",
        help="Default: --subscription, else the only one visible on the standby.",
    ),
    standby_resource_group: str = typer.Option(
        None, "--standby-resource-group", help="Default: --resource-group."
    ),
    standby_gateway: str = typer.Option(
        None,
        "--standby-gateway",
        help="Standby gateway address, e.g. https://standby.example:8081 (default: the service's gatewayUrl).",
    ),
    host_header: str = typer.Option(
        None, "--host-header", help="Host header for the gateway (default: the standby's gatewayUrl host)."
    ),
    probe: list[str] = typer.Option(
        None,
        "--probe",
        help="Gateway path to request (repeatable); default: up to 5 GET operations without parameters.",
    ),
    probe_timeout: float = typer.Option(
        10.0, "--probe-timeout", help="Seconds to retry a probe until it succeeds."
    ),
    storage_account: str = typer.Option(
        ..., "--storage-account", help="Storage account both instances reach."
    ),
    container: str = typer.Option(..., "--container", help="Blob container (must exist)."),
    access_key: str = typer.Option(
        None, "--access-key", envvar="PORTICO_STORAGE_KEY", help="Storage account key."
    ),
    access_type: str = typer.Option("AccessKey", "--access-type"),
    identity_client_id: str = typer.Option(None, "--identity-client-id"),
    encryption_key: str = typer.Option(None, "--encryption-key", envvar="PORTICO_BACKUP_KEY"),
    name: str = typer.Option(None, "--name", help="Backup name (default drill/<primary>-<UTC time>)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    tenant: str = TENANT,
    client_id: str = typer.Option(
        None, "--client-id", envvar="AZURE_CLIENT_ID", help="App used on both sides unless overridden."
    ),
    client_secret: str = typer.Option(None, "--client-secret", envvar="AZURE_CLIENT_SECRET"),
    subscription: str = typer.Option(None, "--subscription", "-s", envvar=list(SUBSCRIPTION_ENV)),
    resource_group: str = typer.Option(None, "--resource-group", "-g", envvar="PORTICO_RESOURCE_GROUP"),
    api_version: str = typer.Option("2024-05-01", "--api-version"),
) -> None:
    """Back up the primary, restore into the standby, verify entity by entity, probe the gateway,
    report RPO and RTO."""

    def need(value: str | None, opt: str) -> str:
        if not value:
            fail(f"missing {opt}", 2)
        return str(value)

    p_ep = Endpoint(
        primary_url,
        tenant,
        need(primary_client_id or client_id, "--primary-client-id or --client-id"),
        need(primary_client_secret or client_secret, "--primary-client-secret or --client-secret"),
        primary_ca,
        primary_subscription or subscription or None,
        need(primary_resource_group or resource_group, "--primary-resource-group or --resource-group"),
    )
    s_ep = Endpoint(
        standby_url,
        tenant,
        need(standby_client_id or client_id, "--standby-client-id or --client-id"),
        need(standby_client_secret or client_secret, "--standby-client-secret or --client-secret"),
        standby_ca,
        standby_subscription or subscription or None,
        need(standby_resource_group or resource_group, "--standby-resource-group or --resource-group"),
    )
    started = datetime.now(UTC)
    backup_name = name or f"drill/{primary_service}-{started.strftime('%Y%m%dT%H%M%SZ')}"
    body: dict[str, Any] = {
        "storageAccount": storage_account,
        "containerName": container,
        "accessType": access_type,
        "backupName": backup_name,
    }
    if access_key:
        body["accessKey"] = access_key
    if identity_client_id:
        body["clientId"] = identity_client_id
    if encryption_key:
        body["encryptionKey"] = encryption_key
    with p_ep.client() as ph, s_ep.client() as sh:
        primary = Side(ph, p_ep.url, p_ep.service_url(primary_service), primary_service, api_version, p_ep.ca)
        standby = Side(sh, s_ep.url, s_ep.service_url(standby_service), standby_service, api_version, s_ep.ca)
        try:
            report = run_drill(
                primary,
                standby,
                body,
                started,
                standby_gateway,
                host_header,
                list(probe or []),
                probe_timeout,
                None if as_json else err.print,
            )
        except DrillError as exc:
            fail(str(exc))
            return
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    traffic = report["traffic"]
    if not report["verification"]["equivalent"] or (
        traffic.get("available") and not traffic.get("succeeded")
    ):
        raise typer.Exit(1)


def _secs(v: float | None, none: str = "-") -> str:
    return none if v is None else f"{v:.3f} s"


def _print(r: dict[str, Any]) -> None:
    t = Table(
        "measure", "value", title=f"failover drill {r['primary']['service']} → {r['standby']['service']}"
    )
    rpo, rto, v, tr = r["rpo"], r["rto"], r["verification"], r["traffic"]
    t.add_row(
        "RPO: since the primary's last backup (before the drill)",
        _secs(rpo["sinceLastBackupBeforeDrillSeconds"], "no earlier backup"),
    )
    t.add_row("RPO: drill snapshot age when the restore completed", _secs(rpo["snapshotAgeAtRestoreSeconds"]))
    t.add_row("RTO: backup time", _secs(rto["backupSeconds"]))
    t.add_row("RTO: restore time", _secs(rto["restoreSeconds"]))
    t.add_row("RTO: restore end → first successful request", _secs(rto["firstSuccessfulRequestSeconds"]))
    t.add_row("RTO: failover (restore + first request)", _secs(rto["failoverSeconds"]))
    verdict = "[green]equivalent[/]" if v["equivalent"] else "[red]DIFFERENT[/]"
    t.add_row("verification", f"{verdict}: {v['entities']} entities hashed on both sides")
    if tr.get("available"):
        t.add_row(
            "gateway traffic",
            f"{tr['succeeded']}/{len(tr['probes'])} probes succeeded via {tr['gateway']} (Host {tr['host']})",
        )
    else:
        t.add_row("gateway traffic", str(tr.get("reason")))
    t.add_row(
        "backup", f"{r['backup']['storageAccount']}/{r['backup']['containerName']}/{r['backup']['name']}"
    )
    console.print(t)
    if not v["equivalent"]:
        for label in ("missingOnStandby", "extraOnStandby", "different"):
            if v[label]:
                console.print(f"[red]{label}[/]: " + ", ".join(v[label][:20]))
    for p in tr.get("probes", []):
        mark = "[green]ok[/]" if p["ok"] else "[red]failed[/]"
        console.print(
            f"  probe GET {p['path']} → {p['status']} {mark} ({p['attempts']} attempts, key {'sent' if p['withKey'] else 'none'})"
        )
