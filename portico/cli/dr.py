"""`portico backup`, `portico restore`, `portico backup list|verify`, `portico operation show`."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from portico.cli.client import Endpoint, check, connection, console, fail, follow_operation

backup_cli = typer.Typer(
    help="Back up a service to blob storage; list and verify backups.", invoke_without_command=True
)
restore_cli = typer.Typer(help="Restore a service from a backup.")
operation_cli = typer.Typer(help="Long-running operations.")

API_VERSION = typer.Option("2024-05-01", "--api-version", help="Management api-version to use.")
ACCOUNT = typer.Option(None, "--storage-account", help="Storage account name.")
CONTAINER = typer.Option(None, "--container", help="Blob container (must exist).")
ACCESS_KEY = typer.Option(
    None,
    "--access-key",
    envvar="PORTICO_STORAGE_KEY",
    help="Storage account key (prefer the environment variable).",
)
ACCESS_TYPE = typer.Option(
    "AccessKey",
    "--access-type",
    help="AccessKey, SystemAssignedManagedIdentity or UserAssignedManagedIdentity.",
)
IDENTITY_CLIENT = typer.Option(None, "--identity-client-id", help="Client id of the user-assigned identity.")
ENCRYPTION_KEY = typer.Option(
    None,
    "--encryption-key",
    envvar="PORTICO_BACKUP_KEY",
    help="Base64 32-byte key to encrypt/decrypt the backup.",
)
NO_WAIT = typer.Option(False, "--no-wait", help="Print the operation URL and return at once.")
JSON_OUT = typer.Option(False, "--json", help="Print JSON.")


def _storage_body(
    account: str | None,
    container: str | None,
    access_type: str,
    access_key: str | None,
    identity_client: str | None,
    encryption_key: str | None,
) -> dict[str, Any]:
    if not account or not container:
        fail("--storage-account and --container are required", 2)
    body: dict[str, Any] = {"storageAccount": account, "containerName": container, "accessType": access_type}
    if access_key:
        body["accessKey"] = access_key
    if identity_client:
        body["clientId"] = identity_client
    if encryption_key:
        body["encryptionKey"] = encryption_key
    return body


def _run(
    ep: Endpoint, service: str, action: str, body: dict[str, Any], api_version: str, no_wait: bool
) -> None:
    with ep.client() as http:
        resp = check(
            http.post(f"{ep.service_url(service)}/{action}", params={"api-version": api_version}, json=body)
        )
        if resp.status_code == 200:
            console.print(f"{action} of '{service}' completed")
            return
        if no_wait:
            console.print(resp.headers.get("location", ""))
            return
        st = follow_operation(http, resp, f"{action} {service}")
        props = st.get("properties", {})
        console.print(
            f"[green]{action} of '{service}' succeeded[/] in {_duration(st)}: {props.get('counters', {})}, {props.get('bytes', 0):,} bytes"
        )


def sku_text(sku: Any) -> str:
    """`Developer/1` for the catalog's {name, capacity}."""
    if isinstance(sku, dict):
        return f"{sku.get('name', '?')}/{sku.get('capacity', '?')}"
    return "" if sku is None else str(sku)


def verify_text(name: str, report: dict[str, Any]) -> str:
    """What verifyBackup answered, in one line (contents are decoded only with the key)."""
    facts = f"{report.get('size', 0):,} bytes, sha256 {str(report.get('payloadSha256') or '')[:16]}…"
    if report.get("contentsVerified"):
        counts = ", ".join(f"{k} {v}" for k, v in (report.get("counts") or {}).items())
        return f"[green]backup '{escape(name)}' is intact[/]: {report.get('recordCount')} records ({escape(counts)}), {facts}"
    return f"[yellow]backup '{escape(name)}': {escape(str(report.get('message') or ''))}[/], {facts}"


def _duration(st: dict[str, Any]) -> str:
    try:
        a = datetime.fromisoformat(st["startTime"].replace("Z", "+00:00"))
        b = datetime.fromisoformat(st["endTime"].replace("Z", "+00:00"))
        return f"{(b - a).total_seconds():.2f}s"
    except (KeyError, TypeError, ValueError):
        return "?"


@backup_cli.callback()
@connection()
def backup(
    ep: Endpoint | None,
    ctx: typer.Context,
    service: str = typer.Option(None, "--service", help="Service to back up."),
    name: str = typer.Option(None, "--name", help="Backup (blob) name."),
    storage_account: str = ACCOUNT,
    container: str = CONTAINER,
    access_key: str = ACCESS_KEY,
    access_type: str = ACCESS_TYPE,
    identity_client_id: str = IDENTITY_CLIENT,
    encryption_key: str = ENCRYPTION_KEY,
    no_wait: bool = NO_WAIT,
    api_version: str = API_VERSION,
) -> None:
    """Back up SERVICE to a blob: `portico backup --service S --storage-account A --container C --name N`."""
    if ep is None or ctx.invoked_subcommand is not None:
        return  # `backup list` or `backup verify`: their own options apply
    missing = [o for o, v in (("--service", service), ("--name", name)) if not v]
    if missing:
        fail(f"missing {', '.join(missing)}", 2)
    body = _storage_body(
        storage_account, container, access_type, access_key, identity_client_id, encryption_key
    )
    body["backupName"] = name
    _run(ep, service, "backup", body, api_version, no_wait)


@backup_cli.command("list")
@connection()
def backup_list(
    ep: Endpoint,
    service: str = typer.Option(
        ..., "--service", help="Any service you may back up (authorises the listing)."
    ),
    storage_account: str = ACCOUNT,
    container: str = CONTAINER,
    access_key: str = ACCESS_KEY,
    access_type: str = ACCESS_TYPE,
    identity_client_id: str = IDENTITY_CLIENT,
    prefix: str = typer.Option("", "--prefix"),
    as_json: bool = JSON_OUT,
    api_version: str = API_VERSION,
) -> None:
    """The backup catalog of a container, from blob metadata (no download)."""
    body = _storage_body(storage_account, container, access_type, access_key, identity_client_id, None)
    body["prefix"] = prefix
    with ep.client() as http:
        items = check(
            http.post(
                f"{ep.service_url(service)}/listBackups", params={"api-version": api_version}, json=body
            )
        ).json()["value"]
    if as_json:
        console.print_json(json.dumps(items))
        return
    table = Table(
        "name",
        "service",
        "sku",
        "created",
        "expires",
        "size",
        "encrypted",
        "verified",
        title=f"{storage_account}/{container}",
    )
    for b in items:
        table.add_row(
            b["name"],
            b.get("service", ""),
            sku_text(b.get("sku")),
            b.get("created") or "",
            (b.get("expires") or "") + (" (expired)" if b.get("expired") else ""),
            f"{b.get('size', 0):,}",
            str(b.get("encrypted", "")),
            b.get("verified") or "no",
        )
    console.print(table)


@backup_cli.command("verify")
@connection()
def backup_verify(
    ep: Endpoint,
    service: str = typer.Option(..., "--service", help="Any service you may back up (authorises the check)."),
    name: str = typer.Option(..., "--name", help="Backup (blob) name."),
    storage_account: str = ACCOUNT,
    container: str = CONTAINER,
    access_key: str = ACCESS_KEY,
    access_type: str = ACCESS_TYPE,
    identity_client_id: str = IDENTITY_CLIENT,
    encryption_key: str = ENCRYPTION_KEY,
    as_json: bool = JSON_OUT,
    api_version: str = API_VERSION,
) -> None:
    """Download a backup, check its checksums and decode every record, without restoring."""
    body = _storage_body(
        storage_account, container, access_type, access_key, identity_client_id, encryption_key
    )
    body["backupName"] = name
    with ep.client() as http:
        report = check(
            http.post(
                f"{ep.service_url(service)}/verifyBackup", params={"api-version": api_version}, json=body
            )
        ).json()
    if as_json:
        console.print_json(json.dumps(report))
    else:
        console.print(verify_text(name, report), highlight=False)


@restore_cli.callback(invoke_without_command=True)
@connection()
def restore(
    ep: Endpoint,
    service: str = typer.Option(..., "--service", help="Service to restore into."),
    name: str = typer.Option(..., "--name", help="Backup (blob) name."),
    storage_account: str = ACCOUNT,
    container: str = CONTAINER,
    access_key: str = ACCESS_KEY,
    access_type: str = ACCESS_TYPE,
    identity_client_id: str = IDENTITY_CLIENT,
    encryption_key: str = ENCRYPTION_KEY,
    no_wait: bool = NO_WAIT,
    what_if: bool = typer.Option(
        False, "--what-if", help="Show what the restore would add, change and remove; change nothing."
    ),
    as_json: bool = JSON_OUT,
    api_version: str = API_VERSION,
) -> None:
    """Restore SERVICE from a backup (all-or-nothing)."""
    body = _storage_body(
        storage_account, container, access_type, access_key, identity_client_id, encryption_key
    )
    body["backupName"] = name
    if not what_if:
        _run(ep, service, "restore", body, api_version, no_wait)
        return
    with ep.client() as http:
        diff = check(
            http.post(
                f"{ep.service_url(service)}/restorePreview", params={"api-version": api_version}, json=body
            )
        ).json()
    _print_preview(diff, name, service, as_json)


def _print_preview(diff: dict[str, Any], name: str, service: str, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(diff))
        return
    table = Table(
        "kind",
        "added",
        "changed",
        "removed",
        "unchanged",
        title=f"restore of '{name}' into '{service}' would:",
    )
    for kind, c in sorted(diff["byKind"].items()):
        table.add_row(kind, str(c["added"]), str(c["changed"]), str(c["removed"]), str(c["unchanged"]))
    console.print(table)
    for verb in ("added", "changed", "removed"):
        items = diff.get(verb, [])
        if items:
            console.print(f"[bold]{verb}[/] ({len(items)} shown): " + ", ".join(items[:50]))
    if diff.get("service"):
        console.print(f"service properties that would change: {', '.join(diff['service'])}")
    if diff.get("overriddenNamedValues"):
        console.print(f"named values overridden: {', '.join(diff['overriddenNamedValues'])}")
    for blocker in diff.get("blockers", []):
        console.print(f"[red]{blocker}[/]")


@operation_cli.command("show")
@connection(need_group=False)
def operation_show(
    ep: Endpoint,
    operation: str = typer.Argument(..., help="Operation id, or the Location / Azure-AsyncOperation URL."),
    service: str = typer.Option(None, "--service", help="Service of the operation (when an id is given)."),
    api_version: str = API_VERSION,
) -> None:
    """Status, phase, percent and counters of a backup or restore."""
    if operation.startswith("https://") or operation.startswith("http://"):
        status_url = operation.replace("/operationresults/", "/operationstatuses/")
    else:
        if not (service and ep.resource_group):
            fail("give the operation URL, or --service and --resource-group with an id", 2)
        status_url = f"{ep.service_url(service)}/operationstatuses/{operation}?api-version={api_version}"
    with ep.client() as http:
        st = check(http.get(status_url)).json()
    console.print_json(json.dumps(st))


promote_cli = typer.Typer(help="Promote a service between environments from a backup.")


def _load_overrides(path: Path) -> dict[str, Any]:
    """`namedValues: {id: value | {value, secret}}` from YAML or JSON."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        fail(f"cannot read overrides file {path}: {exc}", 2)
    if not isinstance(doc, dict) or not isinstance(doc.get("namedValues", {}), dict):
        fail(f"{path}: expected a mapping with a 'namedValues' mapping of id → value or {{value, secret}}", 2)
    return dict(doc.get("namedValues") or {})


@promote_cli.callback(invoke_without_command=True)
@connection()
def promote(
    ep: Endpoint,
    backup_name: str = typer.Option(..., "--from", help="Backup (blob) name to promote from."),
    service: str = typer.Option(..., "--to", help="Target service (in the target environment)."),
    storage_account: str = ACCOUNT,
    container: str = CONTAINER,
    access_key: str = ACCESS_KEY,
    access_type: str = ACCESS_TYPE,
    identity_client_id: str = IDENTITY_CLIENT,
    encryption_key: str = ENCRYPTION_KEY,
    exclude_runtime_data: bool = typer.Option(
        False, "--exclude-runtime-data", help="Keep the target's users, subscriptions and group memberships."
    ),
    include_types: list[str] = typer.Option(
        None,
        "--include-type",
        help="Only these entity types from the backup (repeatable): apis, products, groups, users, subscriptions, namedValues, backends, tags, apiVersionSets, policies, groupUsers.",
    ),
    exclude_types: list[str] = typer.Option(
        None, "--exclude-type", help="Entity types to keep from the target (repeatable)."
    ),
    exclude_apis: list[str] = typer.Option(
        None, "--exclude-api", help="An API to keep from the target (repeatable)."
    ),
    exclude_products: list[str] = typer.Option(
        None, "--exclude-product", help="A product to keep from the target (repeatable)."
    ),
    overrides: Path = typer.Option(
        None,
        "--overrides",
        help="YAML/JSON file: namedValues: {id: value | {value, secret}} set after the restore.",
    ),
    what_if: bool = typer.Option(False, "--what-if", help="Show what would change; change nothing."),
    no_wait: bool = NO_WAIT,
    as_json: bool = JSON_OUT,
    api_version: str = API_VERSION,
) -> None:
    """Restore a backup into another environment's service without carrying what it should not."""
    body = _storage_body(
        storage_account, container, access_type, access_key, identity_client_id, encryption_key
    )
    body["backupName"] = backup_name
    body["excludeRuntimeData"] = exclude_runtime_data
    for key, values in (
        ("includeTypes", include_types),
        ("excludeTypes", exclude_types),
        ("excludeApis", exclude_apis),
        ("excludeProducts", exclude_products),
    ):
        if values:
            body[key] = list(values)
    if overrides is not None:
        body["namedValueOverrides"] = _load_overrides(overrides)
    if what_if:
        with ep.client() as http:
            diff = check(
                http.post(
                    f"{ep.service_url(service)}/restorePreview",
                    params={"api-version": api_version},
                    json=body,
                )
            ).json()
        _print_preview(diff, backup_name, service, as_json)
        return
    _run(ep, service, "restore", body, api_version, no_wait)
