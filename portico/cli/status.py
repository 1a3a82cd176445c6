"""`portico status --service S`: recovery-point status of a service (GET .../backupStatus)."""

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
)

status_cli = typer.Typer(help="Recovery-point status of a service: last backup, RPO, next run, last failure.")


def age(seconds: float | None) -> str:
    if seconds is None:
        return "never backed up"
    s = int(seconds)
    if s < 120:
        return f"{seconds:.1f} s"
    if s < 7200:
        return f"{s // 60} min {s % 60} s"
    if s < 172800:
        return f"{s // 3600} h {(s % 3600) // 60} min"
    return f"{s // 86400} d {(s % 86400) // 3600} h"


@status_cli.callback(invoke_without_command=True)
@connection()
def status(
    ep: Endpoint,
    service: str = typer.Option(..., "--service", help="The service."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    latest_backup: bool = typer.Option(
        False,
        "--latest-backup",
        help="Print only the blob name of the newest successful backup (for scripts).",
    ),
    api_version: str = typer.Option("2024-05-01", "--api-version"),
) -> None:
    """Last successful backup, its age (the current RPO), next scheduled run, last failure."""
    with ep.client() as http:
        body = check(
            http.get(f"{ep.service_url(service)}/backupStatus", params={"api-version": api_version})
        ).json()
    p: dict[str, Any] = body["properties"]
    if latest_backup:
        last = p.get("lastSuccess")
        if not last:
            raise typer.Exit(1)
        print(last["backupName"])
        return
    if as_json:
        console.print_json(json.dumps(body))
        return
    table = Table("", "", title=f"backup status of '{service}'", show_header=False)
    last = p.get("lastSuccess")
    if last:
        where = f"{last.get('storageAccount')}/{last.get('containerName')}/{last.get('backupName')}"
        by = f" (schedule {last['schedule']})" if last.get("schedule") else " (manual)"
        table.add_row("last successful backup", f"{last['time']}{by}\n{where}")
        table.add_row("recovery point", last.get("recoveryPoint") or "")
    else:
        table.add_row("last successful backup", "[red]none[/]")
    rpo = p.get("rpoSeconds")
    table.add_row("RPO (age of recovery point)", age(rpo))
    nxt = p.get("nextScheduledRun")
    table.add_row(
        "next scheduled run", f"{nxt['time']} (schedule {nxt['schedule']})" if nxt else "no enabled schedule"
    )
    fail_ = p.get("lastFailure")
    if fail_:
        err = fail_.get("error") or {}
        src = f"schedule {fail_['schedule']}" if fail_.get("schedule") else "manual"
        table.add_row(
            "last failure", f"{fail_.get('time')} ({src}): [red]({err.get('code')}) {err.get('message')}[/]"
        )
    else:
        table.add_row("last failure", "none")
    running = p.get("inProgress")
    if running:
        table.add_row(
            "in progress",
            f"operation {running['operationId']} {running.get('phase')} {running.get('percentComplete')}%",
        )
    console.print(table)
