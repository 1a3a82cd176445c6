"""Client side of the CLI: talks to a Portico (or Azure) management endpoint like the Azure SDK does.

The connection options (`--url`, `--tenant`, `--client-id`, `--client-secret`, `--ca`,
`--subscription`, `--resource-group`) are declared once here; a command takes them all by being
decorated with `connection()` and receives the resulting `Endpoint` as its `ep` argument.
"""

from __future__ import annotations

import functools
import inspect
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()
err = Console(stderr=True)

DEFAULT_API_VERSION = "2024-05-01"
SUBSCRIPTIONS_API_VERSION = "2022-12-01"
WELL_KNOWN_SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
"""The subscription a Portico server serves when it does not list subscriptions."""
SUBSCRIPTION_ENV = ("PORTICO_SUBSCRIPTION", "AZURE_SUBSCRIPTION_ID")


def fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@dataclass
class Endpoint:
    url: str
    tenant: str
    client_id: str
    client_secret: str
    ca: str | None
    subscription: str | None
    """None: the caller's only subscription (see `subscription_id`)."""
    resource_group: str
    _token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")  # so every path joins as f"{url}/subscriptions/..."

    def verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=self.ca) if self.ca else True

    def token(self) -> str:
        if self._token is not None:
            return self._token
        # azure-identity is imported only when a token is needed: it is slow to import (--help, errors)
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import ClientSecretCredential

        kwargs: dict[str, Any] = {"authority": self.url, "disable_instance_discovery": True}
        if self.ca:
            kwargs["connection_verify"] = self.ca
        cred = ClientSecretCredential(self.tenant, self.client_id, self.client_secret, **kwargs)
        try:
            self._token = cred.get_token("https://management.azure.com/.default").token
        except ClientAuthenticationError as exc:
            fail(f"authentication failed: {exc.message.splitlines()[0] if exc.message else exc}")
        assert self._token is not None
        return self._token

    def subscription_id(self) -> str:
        """The subscription given, else the only one the caller can see (GET /subscriptions), else
        — on a server that does not list subscriptions — the well-known default one. Says on
        stderr which one it took."""
        if self.subscription:
            return self.subscription
        with self.client() as http:
            resp = http.get(f"{self.url}/subscriptions", params={"api-version": SUBSCRIPTIONS_API_VERSION})
        if _lists_no_subscriptions(resp):
            self.subscription = WELL_KNOWN_SUBSCRIPTION
            how = "the default subscription; the server does not list subscriptions"
        else:
            check(resp)
            ids = [
                str(s.get("subscriptionId")) for s in resp.json().get("value", []) if s.get("subscriptionId")
            ]
            if len(ids) != 1:
                fail(
                    f"{len(ids)} subscriptions are visible to this client"
                    + (f" ({', '.join(ids[:5])})" if ids else "")
                    + ": give one with --subscription or AZURE_SUBSCRIPTION_ID",
                    2,
                )
            self.subscription = ids[0]
            how = "the only subscription visible to this client"
        err.print(f"note: using subscription {self.subscription} ({how})", highlight=False, soft_wrap=True)
        return self.subscription

    def service_url(self, service: str) -> str:
        return (
            f"{self.url}/subscriptions/{self.subscription_id()}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ApiManagement/service/{service}"
        )

    def client(self) -> httpx.Client:
        return httpx.Client(
            verify=self.verify(), headers={"Authorization": f"Bearer {self.token()}"}, timeout=60
        )


def _lists_no_subscriptions(resp: httpx.Response) -> bool:
    """The server has no subscription list: 404, or — Portico servers from before the list — 400
    for an api-version it knows only for services (never Azure's answer to this request)."""
    if resp.status_code == 404:
        return True
    if resp.status_code != 400:
        return False
    try:
        return bool(resp.json()["error"]["code"] == "InvalidApiVersionParameter")
    except (ValueError, KeyError, TypeError):
        return False


# --- the connection options, declared once -------------------------------------------------------------
def _option(default: Any, *decls: str, **kw: Any) -> Any:
    return typer.Option(default, *decls, **kw)


URL = _option(
    "https://localhost:8443",
    "--url",
    envvar="PORTICO_URL",
    help="Management endpoint (also the token authority).",
)
TENANT = _option("portico", "--tenant", envvar="AZURE_TENANT_ID", help="Tenant of the identity provider.")
CA = _option(
    None, "--ca", envvar="PORTICO_CA", help="CA certificate to trust (the server's data_dir/tls/ca.pem)."
)

_CONNECTION: list[tuple[str, Any, Any]] = [
    ("url", str, URL),
    ("tenant", str, TENANT),
    (
        "client_id",
        str | None,
        _option(None, "--client-id", envvar="AZURE_CLIENT_ID", help="App (service principal) client id."),
    ),
    (
        "client_secret",
        str | None,
        _option(
            None,
            "--client-secret",
            envvar="AZURE_CLIENT_SECRET",
            help="App secret (prefer the environment variable).",
        ),
    ),
    ("ca", str | None, CA),
    (
        "subscription",
        str | None,
        _option(
            None,
            "--subscription",
            "-s",
            envvar=list(SUBSCRIPTION_ENV),
            help="Subscription id (default: the only subscription the client can see).",
        ),
    ),
    (
        "resource_group",
        str | None,
        _option(None, "--resource-group", "-g", envvar="PORTICO_RESOURCE_GROUP", help="Resource group."),
    ),
]
CONNECTION_OPTIONS = tuple(name for name, _, _ in _CONNECTION)

F = TypeVar("F", bound=Callable[..., Any])


def endpoint_from(values: dict[str, Any], *, need_group: bool = True) -> Endpoint:
    """The `Endpoint` of the connection options' values; exits 2 naming what is missing."""
    missing = [
        opt
        for opt, name in (("--client-id", "client_id"), ("--client-secret", "client_secret"))
        if not values.get(name)
    ]
    if need_group and not values.get("resource_group"):
        missing.append("--resource-group")
    if missing:
        fail(f"missing {', '.join(missing)}", 2)
    return Endpoint(
        values["url"],
        values["tenant"],
        values["client_id"],
        values["client_secret"],
        values.get("ca"),
        values.get("subscription") or None,
        values.get("resource_group") or "",
    )


def connection(*, need_group: bool = True) -> Callable[[F], F]:
    """Give a command the connection options; it receives them as `ep: Endpoint` (None in a group's
    callback when a subcommand runs). Unexpected errors end the command with one line
    (`one_line_errors`).

    `need_group=False` for commands that can work without a resource group (an operation URL)."""

    def decorate(func: F) -> F:
        own = [p for p in inspect.signature(func, eval_str=True).parameters.values() if p.name != "ep"]
        extra = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=kind)
            for name, kind, opt in _CONNECTION
        ]
        # typer hands the context to one parameter only: the command's own, else one added here
        context = next((p.name for p in own if p.annotation is typer.Context), None)
        if context is None:
            extra.append(
                inspect.Parameter(_CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
            )

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in CONNECTION_OPTIONS}
            ctx = kwargs[context] if context is not None else kwargs.pop(_CONTEXT)
            if ctx.invoked_subcommand is not None:
                return func(*args, ep=None, **kwargs)  # a group's callback: its subcommand connects
            return func(*args, ep=endpoint_from(values, need_group=need_group), **kwargs)

        command.__signature__ = inspect.Signature([*own, *extra])  # type: ignore[attr-defined]
        command.__annotations__ = {k: v for k, v in func.__annotations__.items() if k != "ep"}
        return one_line_errors(command)  # type: ignore[return-value]

    return decorate


_CONTEXT = "connection_context"


# --- responses -----------------------------------------------------------------------------------------
def arm_error(resp: httpx.Response) -> str:
    try:
        e = resp.json()["error"]
        return _one_line(f"({e.get('code')}) {e.get('message')}")
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
    return dict(st)


# --- unexpected errors -----------------------------------------------------------------------------------
DEBUG_ENV = "PORTICO_DEBUG"


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def unexpected_error_line(exc: BaseException) -> str:
    """One line for an error the commands do not expect (no traceback)."""
    if isinstance(exc, httpx.TransportError):
        where = _request_url(exc)
        target = f"{where.scheme}://{where.netloc.decode()}" if where is not None else "the server"
        return f"cannot reach {target}: {_one_line(str(exc)) or type(exc).__name__}"
    detail = _one_line(str(exc))
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _request_url(exc: httpx.TransportError) -> httpx.URL | None:
    try:
        return exc.request.url
    except RuntimeError:  # raised outside a request
        return None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:2000]


def one_line_errors(func: F) -> F:
    """An error a command does not expect ends it with one `error: ...` line and exit code 1, never
    a traceback (set PORTICO_DEBUG=1 to see the traceback instead)."""

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except Exception as exc:
            if debugging():
                raise
            err.print(
                f"[red]error:[/] {escape(unexpected_error_line(exc))} (set {DEBUG_ENV}=1 for the traceback)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return command  # type: ignore[return-value]
