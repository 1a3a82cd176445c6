"""`portico storage ...` (local backend administration) through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from portico.cli.storage import storage_cli
from portico.dr.storage import AccountKey, LocalAccounts, LocalTrusted, open_container

runner = CliRunner()


def run(data_dir: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(storage_cli, [*args, "--data-dir", str(data_dir)], input=input)
    return result.exit_code, result.stdout, result.stderr


def test_account_create_prints_the_key_once(tmp_path: Path) -> None:
    code, stdout, stderr = run(tmp_path, "account", "create", "backups1")
    assert code == 0, stderr
    key = stdout.strip()
    assert len(key) == 88 and "shown only this once" in stderr
    stored = (tmp_path / "storage" / "accounts.json").read_text()
    assert key not in stored and "scrypt$" in stored
    assert LocalAccounts(tmp_path / "storage").verify("backups1", key)
    assert not LocalAccounts(tmp_path / "storage").verify("backups1", key[:-4] + "AAA=")
    code, _, stderr = run(tmp_path, "account", "create", "backups1")
    assert code == 2 and "already exists" in stderr


@pytest.mark.parametrize("bad", ["ab", "UPPER", "has-hyphen", "x" * 25])
def test_bad_account_names(tmp_path: Path, bad: str) -> None:
    code, stdout, stderr = run(tmp_path, "account", "create", bad)
    assert code == 2 and "invalid storage account name" in stderr and stdout == ""


def test_containers(tmp_path: Path) -> None:
    run(tmp_path, "account", "create", "acct1")
    assert run(tmp_path, "container", "create", "acct1", "backups")[0] == 0
    assert run(tmp_path, "container", "create", "acct1", "more-backups")[0] == 0
    code, stdout, _ = run(tmp_path, "container", "list", "acct1")
    assert code == 0 and stdout.split() == ["backups", "more-backups"]
    code, stdout, _ = run(tmp_path, "container", "list", "acct1", "--json")
    assert json.loads(stdout) == ["backups", "more-backups"]
    code, _, stderr = run(tmp_path, "container", "create", "acct1", "backups")
    assert code == 2 and "already exists" in stderr
    code, _, stderr = run(tmp_path, "container", "create", "acct1", "Bad_Name")
    assert code == 2 and "invalid container name" in stderr
    code, _, stderr = run(tmp_path, "container", "create", "nosuchacct", "backups")
    assert code == 2 and "does not exist" in stderr
    code, _, stderr = run(tmp_path, "container", "list", "nosuchacct")
    assert code == 2 and "does not exist" in stderr
    code, stdout, _ = run(tmp_path, "account", "list", "--json")
    assert json.loads(stdout)[0]["containers"] == ["backups", "more-backups"]
    code, stdout, _ = run(tmp_path, "account", "list")
    assert code == 0 and "acct1" in stdout and "more-backups" in stdout


async def test_created_account_serves_the_local_backend(tmp_path: Path) -> None:
    _, stdout, _ = run(tmp_path, "account", "create", "acct1")
    key = stdout.strip()
    run(tmp_path, "container", "create", "acct1", "backups")
    async with open_container(
        "local",
        account="acct1",
        container="backups",
        credential=AccountKey("acct1", key),
        local_root=tmp_path / "storage",
    ) as c:
        w = await c.open_writer("x")
        await w.write(b"data")
        await w.commit()
    code, _, stderr = run(tmp_path, "container", "delete", "acct1", "backups")
    assert code == 2 and "not empty" in stderr
    assert run(tmp_path, "container", "delete", "acct1", "backups", "--force", "--yes")[0] == 0
    assert run(tmp_path, "container", "list", "acct1")[1] == ""
    # renewing the key invalidates the old one
    code, stdout, _ = run(tmp_path, "account", "renew-key", "acct1", "--yes")
    new_key = stdout.strip()
    assert code == 0 and new_key != key
    accounts = LocalAccounts(tmp_path / "storage")
    assert accounts.verify("acct1", new_key) and not accounts.verify("acct1", key)
    async with open_container(
        "local",
        account="acct1",
        container="backups",
        credential=LocalTrusted("acct1"),
        local_root=tmp_path / "storage",
    ) as c:
        assert await c.exists() is False


def test_account_delete(tmp_path: Path) -> None:
    run(tmp_path, "account", "create", "acct1")
    run(tmp_path, "container", "create", "acct1", "backups")
    code, _, _ = run(tmp_path, "account", "delete", "acct1", input="n\n")
    assert code == 1  # aborted at the prompt
    assert LocalAccounts(tmp_path / "storage").account_exists("acct1")
    code, _, stderr = run(tmp_path, "account", "delete", "acct1", input="y\n")
    assert code == 0, stderr
    assert not LocalAccounts(tmp_path / "storage").account_exists("acct1")
    assert not (tmp_path / "storage" / "accounts" / "acct1").exists()
    code, _, stderr = run(tmp_path, "account", "delete", "acct1", "--yes")
    assert code == 2 and "does not exist" in stderr


def test_data_dir_from_environment(tmp_path: Path) -> None:
    result = runner.invoke(
        storage_cli, ["account", "create", "envacct"], env={"PORTICO_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 0
    assert LocalAccounts(tmp_path / "storage").account_exists("envacct")
    result = runner.invoke(storage_cli, ["account", "list"], env={"PORTICO_DATA_DIR": str(tmp_path)})
    assert "envacct" in result.stdout


def test_empty_list(tmp_path: Path) -> None:
    code, stdout, stderr = run(tmp_path, "account", "list")
    assert code == 0 and stdout == "" and "No storage accounts" in stderr
