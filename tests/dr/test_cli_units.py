"""The CLI's client plumbing on its own: the default subscription, the shared connection options, one-line
errors, and the text of `backup list` and `backup verify` (no server)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import typer
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from portico.cli.client import WELL_KNOWN_SUBSCRIPTION, Endpoint, connection, one_line_errors
from portico.cli.dr import sku_text, verify_text
from portico.cli.main import app as portico_app

Handler = Callable[[httpx.Request], httpx.Response]


def _endpoint(monkeypatch: pytest.MonkeyPatch, handler: Handler, subscription: str | None = None) -> Endpoint:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    ep = Endpoint("https://portico.example/", "portico", "id", "secret", None, subscription, "rg")
    monkeypatch.setattr(ep, "client", lambda: httpx.Client(transport=httpx.MockTransport(record)))
    ep.requests = seen  # type: ignore[attr-defined]
    return ep


def test_the_only_visible_subscription_is_the_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/subscriptions"
        assert request.url.params["api-version"] == "2022-12-01"
        return httpx.Response(200, json={"value": [{"id": "/subscriptions/abc", "subscriptionId": "abc"}]})

    ep = _endpoint(monkeypatch, handler)
    assert ep.service_url("svc") == (
        "https://portico.example/subscriptions/abc/resourceGroups/rg/providers/Microsoft.ApiManagement/service/svc"
    )
    ep.service_url("other")  # asked once
    assert len(ep.requests) == 1  # type: ignore[attr-defined]
    assert (
        "note: using subscription abc (the only subscription visible to this client)"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(404, json={"error": {"code": "ResourceNotFound", "message": "No resource type"}}),
        httpx.Response(
            400, json={"error": {"code": "InvalidApiVersionParameter", "message": "no such version"}}
        ),
    ],
)
def test_a_server_without_the_list_means_the_default_subscription(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], response: httpx.Response
) -> None:
    ep = _endpoint(monkeypatch, lambda _: response)
    assert ep.subscription_id() == WELL_KNOWN_SUBSCRIPTION
    assert (
        f"note: using subscription {WELL_KNOWN_SUBSCRIPTION} (the default subscription"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("response", "fragment"),
    [
        (httpx.Response(200, json={"value": []}), "0 subscriptions are visible"),
        (
            httpx.Response(200, json={"value": [{"subscriptionId": "a"}, {"subscriptionId": "b"}]}),
            "2 subscriptions are visible to this client (a, b): give one with --subscription",
        ),
        (
            httpx.Response(403, json={"error": {"code": "AuthorizationFailed", "message": "no"}}),
            "(AuthorizationFailed) no",
        ),
        (
            httpx.Response(400, json={"error": {"code": "BadRequest", "message": "other"}}),
            "(BadRequest) other",
        ),
    ],
)
def test_no_single_subscription_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    response: httpx.Response,
    fragment: str,
) -> None:
    ep = _endpoint(monkeypatch, lambda _: response)
    with pytest.raises(typer.Exit):
        ep.subscription_id()
    assert fragment in " ".join(capsys.readouterr().err.split())


def test_a_given_subscription_asks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    ep = _endpoint(monkeypatch, handler, subscription="given")
    assert ep.subscription_id() == "given"


def test_connection_options_are_declared_once_and_shared() -> None:
    command = typer.main.get_command(portico_app)
    assert isinstance(command, typer.core.TyperGroup)
    ctx = typer.Context(command)

    def leaf(path: list[str]) -> Any:
        cmd: Any = command
        for name in path:
            cmd = cmd.get_command(ctx, name)
        return cmd

    clients = [["backup"], ["backup", "list"], ["backup", "verify"], ["restore"], ["operation", "show"],
               ["promote"], ["status"], ["analytics", "export"]]  # fmt: skip
    clients += [["schedule", c] for c in ("create", "update", "list", "show", "delete", "run-now")]
    assert len(clients) == 14
    for path in clients:
        opts = {o for p in leaf(path).params for o in getattr(p, "opts", [])}
        assert {
            "--url",
            "--tenant",
            "--client-id",
            "--client-secret",
            "--ca",
            "--subscription",
            "-s",
        } <= opts, path
        assert {"--resource-group", "-g"} <= opts, path
        subscription = next(p for p in leaf(path).params if p.name == "subscription")
        assert subscription.required is False and list(subscription.envvar) == [
            "PORTICO_SUBSCRIPTION",
            "AZURE_SUBSCRIPTION_ID",
        ]


def _tiny_app(fail_with: BaseException) -> typer.Typer:
    tiny = typer.Typer()

    @tiny.command()
    @connection()
    def go(ep: Endpoint, service: str = typer.Option("s", "--service")) -> None:
        raise fail_with

    return tiny


ENV = {
    "AZURE_CLIENT_ID": "id",
    "AZURE_CLIENT_SECRET": "secret",
    "PORTICO_RESOURCE_GROUP": "rg",
    "PORTICO_DEBUG": None,
}


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (
            httpx.ConnectError(
                "[Errno 111] Connection refused", request=httpx.Request("GET", "https://h.example:8443/x")
            ),
            "error: cannot reach https://h.example:8443: [Errno 111] Connection refused",
        ),
        (KeyError("properties"), "error: KeyError: 'properties'"),
        (ValueError("two\nlines"), "error: ValueError: two lines"),
    ],
)
def test_unexpected_errors_are_one_line(exc: BaseException, line: str) -> None:
    r = CliRunner().invoke(_tiny_app(exc), [], env=ENV)
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [f"{line} (set PORTICO_DEBUG=1 for the traceback)"]
    assert "Traceback" not in r.stdout + r.stderr


def test_portico_debug_shows_the_traceback() -> None:
    r = CliRunner().invoke(_tiny_app(KeyError("properties")), [], env={**ENV, "PORTICO_DEBUG": "1"})
    assert isinstance(r.exception, KeyError)


def test_missing_credentials_name_the_options() -> None:
    r = CliRunner().invoke(_tiny_app(KeyError("x")), [], env={"AZURE_CLIENT_ID": None, "AZURE_CLIENT_SECRET": None,
                                                              "PORTICO_RESOURCE_GROUP": None})  # fmt: skip
    assert r.exit_code == 2 and "missing --client-id, --client-secret, --resource-group" in r.stderr


def test_one_line_errors_keep_exits() -> None:
    @one_line_errors
    def quits() -> None:
        raise typer.Exit(3)

    with pytest.raises(typer.Exit):
        quits()


def test_backup_list_and_verify_texts() -> None:
    assert sku_text({"name": "Developer", "capacity": 1}) == "Developer/1"
    table = Table("sku")
    table.add_row(sku_text({"name": "Premium", "capacity": 2}))
    out = Console(width=80, record=True)
    out.print(table)
    assert "Premium/2" in out.export_text()
    report = {"contentsVerified": True, "recordCount": 4, "counts": {"api": 3, "service": 1}, "size": 1234,
              "payloadSha256": "ab" * 32}  # fmt: skip
    text = verify_text("n", report)
    assert "4 records (api 3, service 1)" in text and "1,234 bytes" in text and "abababab" in text
    partial = verify_text("n", {"contentsVerified": False, "message": "contents not decoded (no key)"})
    assert "contents not decoded (no key)" in partial and "intact" not in partial
