"""`portico app create --public` and `portico user ...` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from portico.cli.identity import app_cli
from portico.cli.users import user_cli

from .util import prepare_db_sync


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    prepare_db_sync(tmp_path / "portico.db")
    return tmp_path


def test_public_client_registration(data_dir: Path) -> None:
    runner = CliRunner()
    dd = ["--data-dir", str(data_dir)]
    ok = runner.invoke(
        app_cli,
        ["create", "--name", "runbook", "--public", "--redirect-uri", "http://localhost", "--json", *dd],
    )
    assert ok.exit_code == 0, ok.output
    created = json.loads(ok.output)
    assert created["public_client"] is True and "client_secret" not in created
    for args, message in (
        (["--redirect-uri", "http://localhost"], "add --public"),
        (["--public", "--redirect-uri", "http://intranet.test/cb"], "plain http is allowed only"),
        (["--public"], "at least one --redirect-uri"),
        (
            ["--public", "--redirect-uri", "http://localhost", "--role", "Owner", "--scope", "/"],
            "assign roles to users",
        ),
    ):
        bad = runner.invoke(app_cli, ["create", "--name", "x", *args, *dd])
        assert bad.exit_code == 2 and message in bad.output, (args, bad.output)


def test_user_commands(data_dir: Path) -> None:
    runner = CliRunner()
    dd = ["--data-dir", str(data_dir)]
    short = runner.invoke(user_cli, ["create", "--upn", "a@b.test", "--password-stdin", *dd], input="short\n")
    assert short.exit_code == 2 and "8 to 256 characters" in short.output
    bad_name = runner.invoke(
        user_cli, ["create", "--upn", "alice", "--password-stdin", *dd], input="long enough pw\n"
    )
    assert bad_name.exit_code == 2 and "email address" in bad_name.output
    # Interactive: the password is prompted twice and never echoed.
    made = runner.invoke(
        user_cli, ["create", "--upn", "a@b.test", "--name", "A", *dd], input="s3cret-pass\ns3cret-pass\n"
    )
    assert made.exit_code == 0 and "s3cret-pass" not in made.output, made.output
    listed = json.loads(runner.invoke(user_cli, ["list", "--json", *dd]).output)
    assert [u["upn"] for u in listed] == ["a@b.test"]
    reset = runner.invoke(
        user_cli, ["reset-password", "A@B.TEST", "--password-stdin", *dd], input="another-pass\n"
    )
    assert reset.exit_code == 0 and "reset" in reset.output
    assert runner.invoke(user_cli, ["delete", listed[0]["oid"], *dd]).exit_code == 0
    missing = runner.invoke(user_cli, ["delete", "a@b.test", *dd])
    assert missing.exit_code == 2 and "No user" in missing.output
