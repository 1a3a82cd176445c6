"""`portico schedule create|update|list|show|delete|run-now`: backup schedules of a service (client side).

Same authentication options as `portico backup` (`--url`, `--client-id`, `--client-secret`, `--ca`,
`-s`, `-g`, or their environment variables). The storage key goes in `PORTICO_STORAGE_KEY` (or
`--access-key`); the server stores it encrypted and never returns it.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from portico.cli.client import (
    Endpoint,
    check,
    connection,
    console,
    fail,
    follow_operation,
)

schedule_cli = typer.Typer(
    help="Backup schedules of a service: cron, storage, retention.", no_args_is_help=True
)

API_VERSION = typer.Option("2024-05-01", "--api-version", help="Management api-version to use.")
SERVICE = typer.Option(..., "--service", help="The service whose schedules these are.")
NAME = typer.Option(..., "--name", help="Schedule name (1-80 letters, digits, '-', '_').")
JSON_OUT = typer.Option(False, "--json", help="Print JSON.")


def _run_text(run: dict[str, Any] | None) -> str:
    if not run:
        return "-"
    text = f"{run.get('time', '')} {run.get('status', '')}"
    if run.get("trigger") and run["trigger"] != "Schedule":
        text += f" ({run['trigger']})"
    if run.get("error"):
        text += f": {run['error'].get('message', '')}"
    ret = run.get("retention")
    if ret and ret.get("deleted"):
        text += f"; retention deleted {ret['deleted']}"
    return text


@schedule_cli.command("create")
@connection()
def create(
    ep: Endpoint,
    service: str = SERVICE,
    name: str = NAME,
    cron: str = typer.Option(..., "--cron", help="5-field cron expression, e.g. '0 2 * * *' (02:00 daily)."),
    time_zone: str = typer.Option("UTC", "--time-zone", help="IANA time zone of the cron expression."),
    storage_account: str = typer.Option(..., "--storage-account", help="Storage account name."),
    container: str = typer.Option(..., "--container", help="Blob container (must exist)."),
    prefix: str = typer.Option(
        "", "--prefix", help="Blob name prefix: backups are named <prefix><service>-<UTC time>."
    ),
    access_type: str = typer.Option(
        "AccessKey",
        "--access-type",
        help="AccessKey, SystemAssignedManagedIdentity or UserAssignedManagedIdentity.",
    ),
    access_key: str = typer.Option(
        None,
        "--access-key",
        envvar="PORTICO_STORAGE_KEY",
        help="Storage account key (prefer the environment variable).",
    ),
    identity_client_id: str = typer.Option(
        None, "--identity-client-id", help="Client id of the user-assigned identity."
    ),
    encryption_key: str = typer.Option(
        None,
        "--encryption-key",
        envvar="PORTICO_BACKUP_KEY",
        help="Base64 32-byte key to encrypt the backups.",
    ),
    keep_last: int = typer.Option(None, "--keep-last", help="Keep at most the N newest backups."),
    keep_days: float = typer.Option(
        None, "--keep-days", help="Delete backups older than N days (at most the validity period)."
    ),
    disabled: bool = typer.Option(False, "--disabled", help="Create the schedule disabled."),
    as_json: bool = JSON_OUT,
    api_version: str = API_VERSION,
) -> None:
    """Create or replace a backup schedule (PUT .../backupSchedules/NAME)."""
    props: dict[str, Any] = {
        "cron": cron,
        "timeZone": time_zone,
        "storageAccount": storage_account,
        "containerName": container,
        "namePrefix": prefix,
        "accessType": access_type,
        "enabled": not disabled,
    }
    if access_key and access_type == "AccessKey":
        props["accessKey"] = access_key
    if identity_client_id:
        props["clientId"] = identity_client_id
    if encryption_key:
        props["encryptionKey"] = encryption_key
    props.update(_retention(keep_last, keep_days))
    _write(ep, "PUT", service, name, props, api_version, as_json)


@schedule_cli.command("update")
@connection()
def update(
    ep: Endpoint,
    service: str = SERVICE,
    name: str = NAME,
    cron: str = typer.Option(None, "--cron", help="New 5-field cron expression."),
    time_zone: str = typer.Option(None, "--time-zone", help="New IANA time zone."),
    prefix: str = typer.Option(None, "--prefix", help="New blob name prefix."),
    keep_last: int = typer.Option(None, "--keep-last", help="Keep at most the N newest backups."),
    keep_days: float = typer.Option(None, "--keep-days", help="Delete backups older than N days."),
    enable: bool = typer.Option(None, "--enable/--disable", help="Resume or pause the schedule."),
    as_json: bool = JSON_OUT,
    api_version: str = API_VERSION,
) -> None:
    """Change only the given settings of a schedule (PATCH .../backupSchedules/NAME); the stored
    storage key and everything not named stay as they are."""
    props: dict[str, Any] = {
        k: v
        for k, v in (("cron", cron), ("timeZone", time_zone), ("namePrefix", prefix), ("enabled", enable))
        if v is not None
    }
    props.update(_retention(keep_last, keep_days))
    if not props:
        fail(
            "nothing to change: give at least one of --cron, --time-zone, --prefix, --keep-last, --keep-days, --enable/--disable"
        )
    _write(ep, "PATCH", service, name, props, api_version, as_json)


def _retention(keep_last: int | None, keep_days: float | None) -> dict[str, Any]:
    retention = {k: v for k, v in (("keepLast", keep_last), ("keepDays", keep_days)) if v is not None}
    return {"retention": retention} if retention else {}


def _write(
    ep: Endpoint, method: str, service: str, name: str, props: dict[str, Any], api_version: str, as_json: bool
) -> None:
    """PUT (create or replace) or PATCH (change) a schedule, and say what it now is."""
    with ep.client() as http:
        resp = check(
            http.request(
                method,
                f"{ep.service_url(service)}/backupSchedules/{name}",
                params={"api-version": api_version},
                json={"properties": props},
            )
        )
    body = resp.json()
    if as_json:
        console.print_json(json.dumps(body))
        return
    verb = "created" if resp.status_code == 201 else "updated"
    p = body["properties"]
    state = "enabled" if p.get("enabled") else "disabled"
    console.print(
        f"[green]schedule '{name}' of '{service}' {verb}[/]: '{p['cron']}' ({p['timeZone']}), {state}, next run {p.get('nextRun') or '-'}"
    )


@schedule_cli.command("list")
@connection()
def list_(
    ep: Endpoint,
    service: str = SERVICE,
    as_json: bool = JSON_OUT,
    api_version: str = API_VERSION,
) -> None:
    """The schedules of a service, with their next and last runs."""
    with ep.client() as http:
        items = check(
            http.get(f"{ep.service_url(service)}/backupSchedules", params={"api-version": api_version})
        ).json()["value"]
    if as_json:
        console.print_json(json.dumps(items))
        return
    table = Table(
        "name",
        "cron",
        "time zone",
        "target",
        "retention",
        "enabled",
        "next run",
        "last run",
        title=f"backup schedules of '{service}'",
    )
    for s in items:
        p = s["properties"]
        ret = p.get("retention") or {}
        table.add_row(
            s["name"],
            p["cron"],
            p["timeZone"],
            f"{p['storageAccount']}/{p['containerName']}/{p.get('namePrefix', '')}",
            ", ".join(f"{k}={v}" for k, v in ret.items()) or "-",
            "yes" if p.get("enabled") else "no",
            p.get("nextRun") or "-",
            _run_text(p.get("lastRun")),
        )
    console.print(table)


@schedule_cli.command("show")
@connection()
def show(
    ep: Endpoint,
    service: str = SERVICE,
    name: str = NAME,
    as_json: bool = JSON_OUT,
    api_version: str = API_VERSION,
) -> None:
    """One schedule with its recent runs."""
    with ep.client() as http:
        body = check(
            http.get(f"{ep.service_url(service)}/backupSchedules/{name}", params={"api-version": api_version})
        ).json()
    if as_json:
        console.print_json(json.dumps(body))
        return
    p = body["properties"]
    console.print(
        f"[bold]{body['name']}[/] of '{service}': '{p['cron']}' ({p['timeZone']}), enabled: {p.get('enabled')}"
    )
    console.print(
        f"  target {p['storageAccount']}/{p['containerName']}, names '{p.get('namePrefix', '')}{service}-<UTC time>', access {p['accessType']}"
        + (" (key stored encrypted)" if p.get("hasAccessKey") else "")
    )
    console.print(
        f"  retention {p.get('retention') or 'none (expired backups are still pruned)'}; next run {p.get('nextRun') or '-'}"
    )
    table = Table(
        "time", "trigger", "status", "operation", "backup", "retention", "error", title="recent runs"
    )
    for r in p.get("runs") or []:
        ret = r.get("retention") or {}
        table.add_row(
            r.get("time") or "",
            r.get("trigger") or "",
            r.get("status") or "",
            r.get("operationId") or "-",
            r.get("backupName") or "-",
            (f"deleted {ret.get('deleted', 0)}, kept {ret.get('kept', 0)}" if ret else "-"),
            (r.get("error") or {}).get("message", ""),
        )
    console.print(table)


@schedule_cli.command("delete")
@connection()
def delete(
    ep: Endpoint,
    service: str = SERVICE,
    name: str = NAME,
    api_version: str = API_VERSION,
) -> None:
    """Delete a schedule (its backups stay)."""
    with ep.client() as http:
        resp = check(
            http.delete(
                f"{ep.service_url(service)}/backupSchedules/{name}", params={"api-version": api_version}
            )
        )
    if resp.status_code == 204:
        fail(f"schedule '{name}' of '{service}' does not exist")
    console.print(f"schedule '{name}' of '{service}' deleted")


@schedule_cli.command("run-now")
@connection()
def run_now(
    ep: Endpoint,
    service: str = SERVICE,
    name: str = NAME,
    no_wait: bool = typer.Option(False, "--no-wait", help="Print the operation URL and return at once."),
    api_version: str = API_VERSION,
) -> None:
    """Run a schedule now (its retention applies afterwards), following the backup's progress."""
    with ep.client() as http:
        resp = check(
            http.post(
                f"{ep.service_url(service)}/backupSchedules/{name}/runNow",
                params={"api-version": api_version},
            )
        )
        if no_wait:
            console.print(resp.headers.get("location", ""))
            return
        st = follow_operation(http, resp, f"schedule {name} of {service}")
        backup = st.get("properties", {}).get("backupName", "")
    console.print(f"[green]run of schedule '{name}' succeeded[/]: backup '{backup}'")
