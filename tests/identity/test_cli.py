"""`portico app ...` / `portico role ...` through typer's CliRunner."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from portico.cli.identity import app_cli, role_cli
from portico.cli.users import user_cli
from portico.identity.apps import verify_secret

from .util import open_db, prepare_db_sync

SVC = "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.ApiManagement/service/svc1"
IDP = "https://idp.example/tenant-x/v2.0"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    prepare_db_sync(tmp_path / "portico.db")
    return tmp_path


def run(runner: CliRunner, cli, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(cli, list(args), catch_exceptions=False)


def check_secret_sync(data_dir: Path, client_id: str, secret: str) -> bool:
    async def main() -> bool:
        db = await open_db(data_dir / "portico.db")
        try:
            return await verify_secret(db, client_id, secret)
        finally:
            await db.close()

    return asyncio.run(main())


def test_app_and_role_commands(data_dir: Path) -> None:
    runner = CliRunner()
    dd = ["--data-dir", str(data_dir)]
    r = run(
        runner,
        app_cli,
        "create",
        "--name",
        "ci-bot",
        "--role",
        "api management service operator role",
        "--scope",
        SVC,
        "--json",
        *dd,
    )
    assert r.exit_code == 0, r.output
    created = json.loads(r.stdout)
    client_id, secret = created["client_id"], created["client_secret"]
    assert created["role_assignment"]["role"] == "API Management Service Operator Role"
    assert check_secret_sync(data_dir, client_id, secret)

    r = run(runner, app_cli, "list", "--json", *dd)
    listed = json.loads(r.stdout)
    assert [a["client_id"] for a in listed] == [client_id]
    assert secret not in r.stdout

    r = run(runner, app_cli, "list", *dd)  # table form
    assert r.exit_code == 0 and "ci-bot" in r.stdout

    r = run(
        runner,
        role_cli,
        "assign",
        "--principal",
        "ext-oid",
        "--issuer",
        IDP,
        "--role",
        "READER",
        "--scope",
        "/subscriptions/s1",
        "--json",
        *dd,
    )
    assert r.exit_code == 0, r.output
    assignment = json.loads(r.stdout)
    assert (assignment["role"], assignment["issuer"]) == ("Reader", IDP)

    r = run(runner, role_cli, "list", "--json", *dd)
    assert {(a["principal_id"], a["issuer"]) for a in json.loads(r.stdout)} == {
        (client_id, "local"),
        ("ext-oid", IDP),
    }
    r = run(runner, role_cli, "list", "--principal", "ext-oid", "--json", *dd)
    assert [a["id"] for a in json.loads(r.stdout)] == [assignment["id"]]
    r = run(runner, role_cli, "list", "--issuer", "local", "--json", *dd)
    assert [a["principal_id"] for a in json.loads(r.stdout)] == [client_id]
    r = run(runner, role_cli, "list", *dd)
    assert r.exit_code == 0 and "Reader" in r.stdout and "Issuer" in r.stdout

    r = run(runner, role_cli, "delete", assignment["id"], *dd)
    assert r.exit_code == 0
    r = run(runner, role_cli, "delete", assignment["id"], *dd)
    assert r.exit_code == 2 and "No role assignment" in r.stderr

    r = run(runner, app_cli, "delete", client_id, *dd)
    assert r.exit_code == 0
    r = run(runner, role_cli, "list", "--json", *dd)
    assert json.loads(r.stdout) == []  # the app's assignments went with it
    r = run(runner, app_cli, "delete", client_id, *dd)
    assert r.exit_code == 2 and "No app" in r.stderr


def test_role_assign_issuer(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--issuer: 'local' by default, Portico's own issuer URL means local, an outside issuer is a URL
    (warned about when this process does not trust it)."""
    monkeypatch.setenv("PORTICO_PUBLIC_URL", "https://portico.test")
    monkeypatch.setenv("PORTICO_TRUSTED_ISSUERS", f"{IDP}|api://portico")
    runner = CliRunner()
    dd = ["--data-dir", str(data_dir)]
    base = ["assign", "--role", "Reader", "--scope", SVC, "--json", *dd]
    r = run(runner, role_cli, *base, "--principal", "p1")
    assert r.exit_code == 0 and json.loads(r.stdout)["issuer"] == "local"
    r = run(runner, role_cli, *base, "--principal", "p2", "--issuer", "https://portico.test/portico/v2.0")
    assert r.exit_code == 0 and json.loads(r.stdout)["issuer"] == "local"
    r = run(runner, role_cli, *base, "--principal", "p1", "--issuer", IDP)
    assert r.exit_code == 0 and json.loads(r.stdout)["issuer"] == IDP and "Warning" not in r.stderr
    r = run(runner, role_cli, *base, "--principal", "p1", "--issuer", "https://untrusted.example/v2.0")
    assert r.exit_code == 0 and "not in PORTICO_TRUSTED_ISSUERS" in r.stderr
    r = run(runner, role_cli, *base, "--principal", "p1", "--issuer", "idp.example")
    assert r.exit_code == 2 and "Invalid issuer" in r.stderr
    r = run(runner, role_cli, "list", "--issuer", "nope", *dd)
    assert r.exit_code == 2 and "Invalid issuer" in r.stderr
    r = run(runner, role_cli, "list", "--principal", "p1", "--json", *dd)
    assert sorted(a["issuer"] for a in json.loads(r.stdout)) == [
        "https://idp.example/tenant-x/v2.0",
        "https://untrusted.example/v2.0",
        "local",
    ]


def test_table_output_shows_secret_once(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTICO_DATA_DIR", str(data_dir))  # the envvar works like --data-dir
    monkeypatch.setenv("COLUMNS", "200")
    r = run(CliRunner(), app_cli, "create", "--name", "human")
    assert r.exit_code == 0, r.output
    assert "Client secret" in r.stdout and "cannot be shown again" in r.stderr


def test_cli_errors(data_dir: Path) -> None:
    runner = CliRunner()
    dd = ["--data-dir", str(data_dir)]
    r = run(runner, role_cli, "assign", "--principal", "p", "--role", "Superuser", "--scope", SVC, *dd)
    assert r.exit_code == 2 and "Unknown role" in r.stderr
    r = run(runner, role_cli, "assign", "--principal", "p", "--role", "Reader", "--scope", "bad/scope", *dd)
    assert r.exit_code == 2 and "Invalid scope" in r.stderr
    r = run(runner, app_cli, "create", "--name", "x", "--role", "Reader", *dd)
    assert r.exit_code == 2 and "--scope" in r.stderr
    r = run(runner, app_cli, "create", "--name", "x", "--role", "Nope", "--scope", SVC, *dd)
    assert r.exit_code == 2
    r = run(runner, app_cli, "list", "--json", *dd)
    assert json.loads(r.stdout) == []  # nothing half-created


def test_help_and_markup_in_user_data(data_dir: Path) -> None:
    runner = CliRunner()
    for cli, cmd in (
        (app_cli, "create"),
        (app_cli, "list"),
        (app_cli, "delete"),
        (role_cli, "assign"),
        (role_cli, "list"),
        (role_cli, "delete"),
    ):
        r = run(runner, cli, cmd, "--help")
        assert r.exit_code == 0, (cmd, r.output)
    dd = ["--data-dir", str(data_dir)]
    r = run(runner, app_cli, "create", "--name", "[/evil] [bold]x", *dd)
    assert r.exit_code == 0, r.output
    r = run(runner, app_cli, "list", *dd)
    assert r.exit_code == 0 and "[/evil]" in r.stdout
    r = run(runner, role_cli, "assign", "--principal", "[p]", "--role", "Reader", "--scope", "[/x]", *dd)
    assert r.exit_code == 2 and "[/x]" in r.stderr


def test_user_commands_print_tables_and_json(data_dir: Path) -> None:
    runner = CliRunner()
    dd = ["--data-dir", str(data_dir)]
    r = runner.invoke(
        user_cli,
        ["create", "--upn", "bob@contoso.test", "--name", "[b]Bob[/b]", "--password-stdin", *dd],
        input="bob's long password\n",
    )
    assert r.exit_code == 0, r.output
    assert "[b]Bob[/b]" in r.stdout and "Object id" in r.stdout  # names are text, never markup
    r = run(runner, user_cli, "list", "--json", *dd)
    listed = json.loads(r.stdout)
    assert [(u["upn"], u["display_name"]) for u in listed] == [("bob@contoso.test", "[b]Bob[/b]")]
    r = run(runner, user_cli, "list", *dd)
    assert r.exit_code == 0 and "Users" in r.stdout and "[b]Bob[/b]" in r.stdout
    assert listed[0]["oid"][:8] in r.stdout and "password" not in r.stdout
