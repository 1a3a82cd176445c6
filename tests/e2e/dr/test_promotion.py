"""Promotion between environments: restore options beyond Azure's body, the CLI and its what-if."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.dr_support import Rest, populate, snapshot
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow
_n = iter(range(10_000))


def uniq(prefix: str) -> str:
    return f"{prefix}{next(_n)}x{os.getpid() % 1000}"


def _prod(rest: Rest, name: str) -> None:
    """The target environment: its own users, subscriptions, secrets and a hotfixed API."""
    rest.service("rg-prod", name)
    rest.put(
        "rg-prod",
        name,
        "apis/echo",
        {"path": "echo", "displayName": "Echo (prod hotfix)", "serviceUrl": "https://prod.contoso.com/echo"},
    )
    rest.put(
        "rg-prod",
        name,
        "users/carol",
        {"email": "carol@contoso.com", "firstName": "Carol", "lastName": "Prod"},
    )
    rest.put(
        "rg-prod",
        name,
        "subscriptions/carol-all",
        {
            "scope": "/apis",
            "displayName": "Carol",
            "ownerId": "/users/carol",
            "state": "active",
            "primaryKey": "prod-primary-key-1",
            "secondaryKey": "prod-secondary-key-1",
        },
    )
    rest.put(
        "rg-prod",
        name,
        "namedValues/secret",
        {"displayName": "secret", "value": "prod-only-secret", "secret": True},
    )


def _backup(rest: Rest, rg: str, name: str, account: str, key: str) -> str:
    blob = uniq("dev-")
    r = rest.call(
        "POST",
        rest.svc(rg, name, "backup"),
        {"storageAccount": account, "containerName": "backups", "backupName": blob, "accessKey": key},
    )
    assert rest.wait(r.headers["location"]).status_code == 200
    return blob


def test_promotion_keeps_runtime_data_and_overrides_secrets(
    region_a: PorticoServer, region_b: PorticoServer, storage: Any
) -> None:
    account, key, _ = storage
    dev, prod = Rest(region_a), Rest(region_b)
    src, dst = uniq("dev"), uniq("prod")
    dev.service("rg-dev", src)
    populate(dev, "rg-dev", src)
    _prod(prod, dst)
    blob = _backup(dev, "rg-dev", src, account, key)
    body = {
        "storageAccount": account,
        "containerName": "backups",
        "backupName": blob,
        "accessKey": key,
        "excludeRuntimeData": True,
        "namedValueOverrides": {
            "secret": {"value": "prod-override", "secret": True},
            "new-one": "added-by-override",
        },
    }
    before = snapshot(prod, "rg-prod", dst)
    preview = prod.call("POST", prod.svc("rg-prod", dst, "restorePreview"), body).json()
    assert snapshot(prod, "rg-prod", dst) == before  # what-if changes nothing
    assert preview["byKind"]["user"] == {
        "added": 0,
        "changed": 0,
        "removed": 0,
        "unchanged": 1,
    }  # carol stays, dev users not added
    assert preview["byKind"]["api"]["changed"] == 1 and preview["byKind"]["api"]["added"] == 1
    assert preview["overriddenNamedValues"] == ["new-one", "secret"] and not preview["blockers"]

    r = prod.call("POST", prod.svc("rg-prod", dst, "restore"), body)
    assert prod.wait(r.headers["location"]).status_code == 200
    status = prod.status(r.headers["location"])
    assert "prod-override" not in json.dumps(status) and "added-by-override" not in json.dumps(status)
    after = snapshot(prod, "rg-prod", dst)
    dev_snap = snapshot(dev, "rg-dev", src)
    users = sorted(k for k in after if k.startswith("users/"))
    assert users == ["users/carol"]  # dev's alice and bob did not travel
    assert sorted(k.split("#")[0] for k in after if k.startswith("subscriptions/") and "#" not in k) == [
        "subscriptions/carol-all"
    ]
    assert after["subscriptions/carol-all#secrets"] == {
        "primaryKey": "prod-primary-key-1",
        "secondaryKey": "prod-secondary-key-1",
    }
    assert after["namedValues/secret#value"] == {"value": "prod-override"}
    assert after["namedValues/new-one#value"] == {"value": "added-by-override"}
    assert after["namedValues/plain"] == dev_snap["namedValues/plain"]
    for path in (
        "apis/echo",
        "apis/echo/operations/get-item",
        "products/starter",
        "backends/b1",
        "policies/policy",
    ):
        assert after[path] == dev_snap[path], path  # configuration came from dev
    assert "groups/partners/users/alice" not in after  # group memberships are runtime data too


def test_exclusions_keep_the_targets_entities(
    region_a: PorticoServer, region_b: PorticoServer, storage: Any
) -> None:
    account, key, _ = storage
    dev, prod = Rest(region_a), Rest(region_b)
    src, dst = uniq("dev"), uniq("prod")
    dev.service("rg-dev", src)
    populate(dev, "rg-dev", src)
    _prod(prod, dst)
    prod_echo = snapshot(prod, "rg-prod", dst)["apis/echo"]
    blob = _backup(dev, "rg-dev", src, account, key)
    body = {
        "storageAccount": account,
        "containerName": "backups",
        "backupName": blob,
        "accessKey": key,
        "excludeApis": ["echo"],
        "excludeTypes": ["backends"],
    }
    r = prod.call("POST", prod.svc("rg-prod", dst, "restore"), body)
    assert prod.wait(r.headers["location"]).status_code == 200
    after = snapshot(prod, "rg-prod", dst)
    assert after["apis/echo"] == prod_echo  # the hotfixed API stays
    assert "apis/echo/operations/get-item" not in after  # and dev's operations of it did not come
    assert "apis/orders-v1" in after and "backends/b1" not in after
    assert "users/alice" in after  # runtime data was not excluded this time; the target's carol is gone
    assert "users/carol" not in after


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("excludeTypes", ["widgets"], "unknown entity type"),
        ("excludeRuntimeData", "yes", "excludeRuntimeData"),
        ("namedValueOverrides", {"x": {"value": 5}}, "override of 'x'"),
    ],
)
def test_bad_promotion_options(
    region_b: PorticoServer, storage: Any, field: str, value: Any, fragment: str
) -> None:
    account, key, _ = storage
    prod = Rest(region_b)
    dst = uniq("prod")
    prod.service("rg-prod", dst)
    body = {
        "storageAccount": account,
        "containerName": "backups",
        "backupName": "x",
        "accessKey": key,
        field: value,
    }
    r = prod.http.post(prod.svc("rg-prod", dst, "restore"), params={"api-version": "2024-05-01"}, json=body)
    assert (
        r.status_code == 400
        and r.json()["error"]["code"] == "InvalidParameters"
        and fragment in r.json()["error"]["message"]
    )


def _cli(server: PorticoServer, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    creds = server.admin()
    full_env = {
        **os.environ,
        **env,
        "AZURE_CLIENT_ID": creds["client_id"],
        "AZURE_CLIENT_SECRET": creds["client_secret"],
        "PORTICO_URL": server.url,
        "PORTICO_CA": server.ca,
        "PORTICO_SUBSCRIPTION": "00000000-0000-0000-0000-000000000001",
    }
    return subprocess.run(
        [sys.executable, "-m", "portico.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_backup_list_verify_promote(
    region_a: PorticoServer, region_b: PorticoServer, storage: Any, tmp_path: Path
) -> None:
    account, key, _ = storage
    dev, prod = Rest(region_a), Rest(region_b)
    src, dst = uniq("dev"), uniq("prod")
    dev.service("rg-dev", src)
    populate(dev, "rg-dev", src)
    _prod(prod, dst)
    store = ["--storage-account", account, "--container", "backups"]
    env = {"PORTICO_STORAGE_KEY": key, "PORTICO_RESOURCE_GROUP": "rg-dev"}
    blob = uniq("cli-")
    r = _cli(region_a, "backup", "--service", src, "--name", blob, *store, env=env)
    assert r.returncode == 0, r.stderr
    assert "succeeded" in r.stdout and key not in r.stdout + r.stderr
    r = _cli(region_a, "backup", "list", "--service", src, *store, "--prefix", blob, "--json", env=env)
    assert r.returncode == 0, r.stderr
    [entry] = json.loads(r.stdout)
    assert (
        entry["name"] == blob
        and entry["service"] == src
        and entry["sku"]["name"] == "Developer"
        and not entry["verified"]
    )
    r = _cli(region_a, "backup", "verify", "--service", src, "--name", blob, *store, env=env)
    assert r.returncode == 0 and "intact" in r.stdout, r.stdout + r.stderr
    r = _cli(region_a, "backup", "list", "--service", src, *store, "--prefix", blob, "--json", env=env)
    assert json.loads(r.stdout)[0]["verified"]
    overrides = tmp_path / "prod.yaml"
    overrides.write_text("namedValues:\n  secret:\n    value: from-the-file\n    secret: true\n")
    prod_env = {**env, "PORTICO_RESOURCE_GROUP": "rg-prod"}
    r = _cli(
        region_b,
        "promote",
        "--from",
        blob,
        "--to",
        dst,
        *store,
        "--exclude-runtime-data",
        "--overrides",
        str(overrides),
        "--what-if",
        env=prod_env,
    )
    assert r.returncode == 0, r.stderr
    assert "would" in r.stdout and "secret" in r.stdout and "from-the-file" not in r.stdout
    r = _cli(
        region_b,
        "promote",
        "--from",
        blob,
        "--to",
        dst,
        *store,
        "--exclude-runtime-data",
        "--overrides",
        str(overrides),
        env=prod_env,
    )
    assert r.returncode == 0, r.stderr
    assert prod.call("POST", prod.svc("rg-prod", dst, "namedValues/secret/listValue")).json() == {
        "value": "from-the-file"
    }
    r = _cli(region_b, "restore", "--service", dst, "--name", "no-such-backup", *store, env=prod_env)
    assert r.returncode == 1 and "(RestoreFailed)" in r.stderr and "not found" in r.stderr
