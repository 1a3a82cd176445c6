"""Client side of the CLI: talks to a Portico (or Azure) management endpoint like the Azure SDK does."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()
err = Console(stderr=True)

DEFAULT_API_VERSION = "2024-05-01"


@dataclass
class Endpoint:
    url: str
    tenant: str
    client_id: str
    client_secret: str
    ca: str | None
    subscription: str
    resource_group: str

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")  # so every path joins as f"{url}/subscriptions/..."

    def verify(self) -> Any:
        return self.ca if self.ca else True

    def token(self) -> str:
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import ClientSecretCredential

        kwargs: dict[str, Any] = {"authority": self.url, "disable_instance_discovery": True}
        if self.ca:
            kwargs["connection_verify"] = self.ca
        cred = ClientSecretCredential(self.tenant, self.client_id, self.client_secret, **kwargs)
        try:
            return cred.get_token("https://management.azure.com/.default").token
        except ClientAuthenticationError as exc:
            fail(f"authentication failed: {exc.message.splitlines()[0] if exc.message else exc}")
        raise AssertionError

    def service_url(self, service: str) -> str:
        return f"{self.url}/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/Microsoft.ApiManagement/service/{service}"

    def client(self) -> httpx.Client:
        return httpx.Client(
            verify=self.verify(), headers={"Authorization": f"Bearer {self.token()}"}, timeout=60
        )


def fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)


URL = typer.Option(
    "https://localhost:8443",
    "--url",
    envvar="PORTICO_URL",
    help="Management endpoint (also the token authority).",
)
TENANT = typer.Option(
    "portico", "--tenant", envvar="AZURE_TENANT_ID", help="Tenant of the identity provider."
)
CLIENT_ID = typer.Option(
    ..., "--client-id", envvar="AZURE_CLIENT_ID", help="App (service principal) client id."
)
CLIENT_SECRET = typer.Option(
    ..., "--client-secret", envvar="AZURE_CLIENT_SECRET", help="App secret (prefer the environment variable)."
)
CA = typer.Option(
    None, "--ca", envvar="PORTICO_CA", help="CA certificate to trust (the server's data_dir/tls/ca.pem)."
)
SUBSCRIPTION = typer.Option(
    ..., "--subscription", "-s", envvar="PORTICO_SUBSCRIPTION", help="Subscription id."
)
RESOURCE_GROUP = typer.Option(
    ..., "--resource-group", "-g", envvar="PORTICO_RESOURCE_GROUP", help="Resource group."
)


def arm_error(resp: httpx.Response) -> str:
    try:
        e = resp.json()["error"]
        return f"({e.get('code')}) {e.get('message')}"
    except Exception:
        return f"HTTP {resp.status_code}"


def check(resp: httpx.Response) -> httpx.Response:
    if resp.status_code >= 400:
        fail(arm_error(resp))
    return resp


def follow_operation(http: httpx.Client, resp: httpx.Response, title: str) -> dict[str, Any]:
    """Poll the Azure-AsyncOperation status with a progress bar, then read the Location result."""
    status_url = resp.headers.get("azure-asyncoperation")
    location = resp.headers.get("location")
    if not status_url or not location:
        fail("the server did not return an operation to follow")
    assert status_url and location
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task(title, total=100, detail="")
        while True:
            st = check(http.get(status_url)).json()
            counters = st.get("properties", {}).get("counters", {})
            detail = st.get("properties", {}).get("phase", "") + (
                " " + " ".join(f"{k}={v}" for k, v in counters.items()) if counters else ""
            )
            bar.update(task, completed=float(st.get("percentComplete") or 0), detail=detail)
            if st.get("status") in ("Succeeded", "Failed", "Canceled"):
                break
            time.sleep(float(resp.headers.get("retry-after", "1")) / 2)
    if st["status"] != "Succeeded":
        e = st.get("error") or {}
        fail(f"({e.get('code')}) {e.get('message')}")
    return st
