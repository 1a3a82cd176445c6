"""Backup and restore end to end: the real Azure SDK over HTTPS, Azurite, two Portico instances."""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.apimanagement import models as M

from tests.conftest import sdk_client
from tests.e2e.dr.conftest import dr_env as _env
from tests.e2e.dr_support import SUB, Rest, populate, seed_bulk, snapshot
from tests.support.azurite import AzuriteServer
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow


_n = iter(range(10_000))


def uniq(prefix: str) -> str:
    return f"{prefix}{next(_n)}{os.getpid() % 1000}"


def params(
    account: str, key: str | None, name: str, container: str = "backups", **kw: Any
) -> M.ApiManagementServiceBackupRestoreParameters:
    return M.ApiManagementServiceBackupRestoreParameters(
        storage_account=account, container_name=container, backup_name=name, access_key=key, **kw
    )


def test_full_cycle_to_another_instance_and_name(
    region_a: PorticoServer, region_b: PorticoServer, storage: Any
) -> None:
    account, key, blobs = storage
    a, b = Rest(region_a), Rest(region_b)
    src, dst = uniq("primary"), uniq("standby")
    a.service("rg-a", src)
    populate(a, "rg-a", src)
    standby_hosts = [{"type": "Proxy", "hostName": "api.standby.contoso.com"}]
    b.service(
        "rg-b",
        dst,
        hostnameConfigurations=standby_hosts,
        customProperties={"Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10": "False"},
    )
    b.put(
        "rg-b", dst, "apis/only-on-standby", {"path": "standby-only"}
    )  # the target becomes the backup: this goes

    client_a, client_b = sdk_client(region_a, SUB), sdk_client(region_b, SUB)
    name = uniq("full-")
    result = client_a.api_management_service.begin_backup("rg-a", src, params(account, key, name)).result()
    assert result.name == src and result.provisioning_state == "Succeeded"
    props = blobs.get_blob_client("backups", name).get_blob_properties()
    assert props.size > 0 and props.metadata  # the catalog reads the metadata

    restored = client_b.api_management_service.begin_restore("rg-b", dst, params(account, key, name)).result()
    assert restored.name == dst
    assert snapshot(b, "rg-b", dst) == snapshot(a, "rg-a", src)
    after = client_b.api_management_service.get("rg-b", dst)
    assert [h.host_name for h in after.hostname_configurations] == [
        "api.standby.contoso.com"
    ]  # the target keeps its names
    assert after.custom_properties == {
        "Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10": "False"
    }
    # references follow the target's name
    sub = client_b.subscription.get("rg-b", dst, "alice-starter")
    assert sub.owner_id.endswith(f"/service/{dst}/users/alice") and sub.scope.endswith(
        f"/service/{dst}/products/starter"
    )
    assert client_b.subscription.list_secrets("rg-b", dst, "all-apis").primary_key == "pk-all-apis-0001"


def test_old_api_version_and_operation_resources(region_a: PorticoServer, storage: Any) -> None:
    account, key, _ = storage
    rest = Rest(region_a)
    name = uniq("old")
    rest.service("rg-a", name)
    r = rest.http.post(
        rest.svc("rg-a", name, "backup"),
        params={"api-version": "2019-12-01"},
        json={"storageAccount": account, "containerName": "backups", "backupName": "x"},
    )
    assert (
        r.status_code == 400
        and r.json()["error"]["code"] == "InvalidParameters"
        and "accessKey" in r.json()["error"]["message"]
    )
    r = rest.http.post(
        rest.svc("rg-a", name, "backup"),
        params={"api-version": "2019-12-01"},
        json={
            "storageAccount": account,
            "containerName": "backups",
            "backupName": uniq("old-"),
            "accessKey": key,
        },
    )
    assert r.status_code == 202 and r.headers["retry-after"] == "1"
    assert r.headers["location"].startswith("https://") and "api-version=2019-12-01" in r.headers["location"]
    final = rest.wait(r.headers["location"])
    assert final.status_code == 200 and final.json()["name"] == name
    st = rest.http.get(r.headers["azure-asyncoperation"]).json()
    assert (
        st["status"] == "Succeeded"
        and st["percentComplete"] == 100
        and st["properties"]["counters"]["written"] >= 1
    )
    assert key not in str(st) and st["endTime"] and st["startTime"]


@pytest.mark.parametrize(
    ("mutate", "code", "fragment"),
    [
        (
            lambda p: setattr(p, "container_name", "nosuchcontainer"),
            "BackupFailed",
            "container 'nosuchcontainer' does not exist",
        ),
        (
            lambda p: setattr(p, "access_key", base64.b64encode(b"0" * 64).decode()),
            "BackupFailed",
            "access key",
        ),
        (
            lambda p: setattr(p, "storage_account", "nosuchaccount"),
            "BackupFailed",
            "storage account 'nosuchaccount'",
        ),
    ],
)
def test_backup_storage_errors_are_clear(
    region_a: PorticoServer, storage: Any, mutate: Any, code: str, fragment: str
) -> None:
    account, key, blobs = storage
    name = uniq("err")
    Rest(region_a).service("rg-a", name)
    p = params(account, key, uniq("never-"))
    mutate(p)
    with pytest.raises(HttpResponseError) as err:
        sdk_client(region_a, SUB).api_management_service.begin_backup("rg-a", name, p).result()
    assert f"({code})" in str(err.value.message) and fragment in str(err.value.message)
    assert key not in str(err.value.message)
    assert not [b for b in blobs.get_container_client("backups").list_blobs(name_starts_with=p.backup_name)]


def test_restore_rules(region_a: PorticoServer, storage: Any) -> None:
    account, key, _ = storage
    rest, client = Rest(region_a), sdk_client(region_a, SUB)
    dev, premium, cons = uniq("dev"), uniq("prem"), uniq("cons")
    rest.service("rg-a", dev)
    rest.service("rg-a", premium, sku="Premium")
    rest.service("rg-a", cons, sku="Consumption", capacity=0)
    name = uniq("rules-")
    client.api_management_service.begin_backup("rg-a", dev, params(account, key, name)).result()
    with pytest.raises(HttpResponseError) as err:
        client.api_management_service.begin_restore("rg-a", premium, params(account, key, name)).result()
    assert (
        "(RestoreFailed) Cannot restore: current SKU is 'Premium', backup SKU is 'Developer'"
        in err.value.message
    )
    with pytest.raises(HttpResponseError) as err:
        client.api_management_service.begin_restore(
            "rg-a", dev, params(account, key, "no-such-backup")
        ).result()
    assert "(RestoreFailed)" in err.value.message and "'no-such-backup' was not found" in err.value.message
    with pytest.raises(HttpResponseError) as err:
        client.api_management_service.begin_backup("rg-a", cons, params(account, key, uniq("c-")))
    assert err.value.status_code == 400 and "Consumption" in err.value.message


def test_expired_backup_cannot_be_restored(
    server_factory: Callable[..., PorticoServer], azurite: AzuriteServer, storage: Any
) -> None:
    account, key, _ = storage
    server = server_factory(env=_env(azurite, PORTICO_BACKUP_VALIDITY_DAYS=str(1 / 86400)))  # one second
    rest, client = Rest(server), sdk_client(server, SUB)
    name = uniq("exp")
    rest.service("rg-a", name)
    client.api_management_service.begin_backup("rg-a", name, params(account, key, name)).result()
    time.sleep(1.5)
    with pytest.raises(HttpResponseError) as err:
        client.api_management_service.begin_restore("rg-a", name, params(account, key, name)).result()
    assert "(RestoreFailed) Cannot restore: backup expired" in err.value.message


def test_managed_identity_access(
    server_factory: Callable[..., PorticoServer], azurite: AzuriteServer, storage: Any
) -> None:
    account, key, _ = storage
    server = server_factory(env=_env(azurite, PORTICO_MANAGED_IDENTITY_CREDENTIALS=f"{account}=key:{key}"))
    rest, client = Rest(server), sdk_client(server, SUB)
    name = uniq("mi")
    rest.service("rg-a", name)
    p = params(account, None, uniq("mi-"), access_type="SystemAssignedManagedIdentity")
    with pytest.raises(HttpResponseError) as err:  # the service has no identity yet
        client.api_management_service.begin_backup("rg-a", name, p)
    assert "system-assigned managed identity" in err.value.message
    rest.call("PATCH", rest.svc("rg-a", name), {"identity": {"type": "SystemAssigned"}})
    client.api_management_service.begin_backup("rg-a", name, p).result()
    client.api_management_service.begin_restore("rg-a", name, p).result()
    log = (server.data_dir / "server.log").read_text()
    assert key not in log


def test_encrypted_backup_needs_its_key(region_a: PorticoServer, storage: Any) -> None:
    account, key, blobs = storage
    rest = Rest(region_a)
    name = uniq("enc")
    rest.service("rg-a", name)
    populate(rest, "rg-a", name)
    before = snapshot(rest, "rg-a", name)
    enc_key = base64.b64encode(os.urandom(32)).decode()
    body = {"storageAccount": account, "containerName": "backups", "backupName": name, "accessKey": key}
    r = rest.call("POST", rest.svc("rg-a", name, "backup"), {**body, "encryptionKey": enc_key})
    assert rest.wait(r.headers["location"]).status_code == 200
    raw = blobs.get_blob_client("backups", name).download_blob().readall()
    assert b"s3cr3t-value" not in raw and b"pk-all-apis-0001" not in raw
    r = rest.call("POST", rest.svc("rg-a", name, "restore"), body)
    final = rest.wait(r.headers["location"])
    assert final.status_code == 400 and final.json()["error"]["code"] == "RestoreFailed"
    assert (
        "encrypt" in final.json()["error"]["message"].lower()
        and "key" in final.json()["error"]["message"].lower()
    )
    r = rest.call(
        "POST",
        rest.svc("rg-a", name, "restore"),
        {**body, "encryptionKey": base64.b64encode(os.urandom(32)).decode()},
    )
    assert rest.wait(r.headers["location"]).status_code == 400
    r = rest.call("POST", rest.svc("rg-a", name, "restore"), {**body, "encryptionKey": enc_key})
    assert rest.wait(r.headers["location"]).status_code == 200
    assert snapshot(rest, "rg-a", name) == before


@pytest.mark.parametrize("damage", ["truncate", "flip-payload", "flip-trailer", "garbage"])
def test_corrupt_backup_leaves_target_unchanged(region_a: PorticoServer, storage: Any, damage: str) -> None:
    account, key, blobs = storage
    rest = Rest(region_a)
    src, dst = uniq("csrc"), uniq("cdst")
    rest.service("rg-a", src)
    populate(rest, "rg-a", src)
    seed_bulk(region_a, src, 2000, 1)  # several zstd frames/blocks
    rest.service("rg-a", dst)
    rest.put("rg-a", dst, "apis/mine", {"path": "mine"})
    before = snapshot(rest, "rg-a", dst)
    good = uniq("good-")
    r = rest.call(
        "POST",
        rest.svc("rg-a", src, "backup"),
        {"storageAccount": account, "containerName": "backups", "backupName": good, "accessKey": key},
    )
    assert rest.wait(r.headers["location"]).status_code == 200
    data = bytearray(blobs.get_blob_client("backups", good).download_blob().readall())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip-payload":
        data[len(data) // 3] ^= 0x40
    elif damage == "flip-trailer":
        data[-20] ^= 0x01
    else:
        data = bytearray(os.urandom(len(data)))
    bad = uniq("bad-")
    blobs.get_blob_client("backups", bad).upload_blob(bytes(data))
    r = rest.call(
        "POST",
        rest.svc("rg-a", dst, "restore"),
        {"storageAccount": account, "containerName": "backups", "backupName": bad, "accessKey": key},
    )
    final = rest.wait(r.headers["location"])
    assert final.status_code == 400, final.text
    assert (
        final.json()["error"]["code"] == "RestoreFailed"
        and "Cannot restore" in final.json()["error"]["message"]
    )
    assert snapshot(rest, "rg-a", dst) == before
    rest.put("rg-a", dst, "apis/after", {"path": "after"})  # and the target is writable again


def test_backup_is_a_point_in_time_snapshot(region_a: PorticoServer, storage: Any) -> None:
    """Writers keep going during the backup; the backup holds exactly a prefix of their writes."""
    account, key, _ = storage
    rest = Rest(region_a)
    src, dst = uniq("pit"), uniq("pitdst")
    rest.service("rg-a", src)
    seed_bulk(region_a, src, 20000, 2)  # big enough that the backup takes a while
    rest.service("rg-a", dst)
    written: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        w = Rest(region_a)
        i = 0
        while not stop.is_set():
            w.put("rg-a", src, f"namedValues/w{i:05d}", {"displayName": f"w{i:05d}", "value": str(i)})
            written.append(i)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.3)
    deadline = time.monotonic() + 30
    while not written and time.monotonic() < deadline:  # a loaded machine: let the writer land one write
        time.sleep(0.05)
    name = uniq("pit-")
    r = rest.call(
        "POST",
        rest.svc("rg-a", src, "backup"),
        {"storageAccount": account, "containerName": "backups", "backupName": name, "accessKey": key},
    )
    assert rest.wait(r.headers["location"]).status_code == 200
    time.sleep(0.3)
    stop.set()
    t.join()
    r = rest.call(
        "POST",
        rest.svc("rg-a", dst, "restore"),
        {"storageAccount": account, "containerName": "backups", "backupName": name, "accessKey": key},
    )
    assert rest.wait(r.headers["location"]).status_code == 200
    restored = sorted(
        int(v["name"][1:])
        for v in rest.call(
            "GET", rest.svc("rg-a", dst, "namedValues") + "?api-version=2024-05-01&$top=1000"
        ).json()["value"]
    )
    source = sorted(
        int(v["name"][1:])
        for v in rest.call(
            "GET", rest.svc("rg-a", src, "namedValues") + "?api-version=2024-05-01&$top=1000"
        ).json()["value"]
    )
    assert source == written  # nothing written during the backup was lost
    assert restored == list(range(len(restored)))  # a prefix: one consistent point in time
    assert 0 < len(restored) < len(written)


def test_writes_during_restore_get_409(region_a: PorticoServer, storage: Any) -> None:
    account, key, _ = storage
    rest = Rest(region_a)
    src, dst = uniq("big"), uniq("bigdst")
    rest.service("rg-a", src)
    seed_bulk(region_a, src, 3000, 2)
    rest.service("rg-a", dst)
    name = uniq("big-")
    body = {"storageAccount": account, "containerName": "backups", "backupName": name, "accessKey": key}
    assert (
        rest.wait(rest.call("POST", rest.svc("rg-a", src, "backup"), body).headers["location"]).status_code
        == 200
    )
    hold = region_a.hold_restores  # type: ignore[attr-defined]
    hold.touch()  # the restore pauses while loading until the file goes (PORTICO_PAUSEPOINTS)
    try:
        r = rest.call("POST", rest.svc("rg-a", dst, "restore"), body)
        w = rest.http.put(
            rest.svc("rg-a", dst, "apis/during"),
            params={"api-version": "2024-05-01"},
            json={"properties": {"path": "during"}},
        )
        assert w.status_code == 409 and w.json()["error"]["code"] == "ServiceRestoreInProgress"
        s = rest.http.patch(
            rest.svc("rg-a", dst),
            params={"api-version": "2024-05-01"},
            json={"sku": {"name": "Developer", "capacity": 1}},
        )
        assert s.status_code == 409
        again = rest.http.post(
            rest.svc("rg-a", dst, "restore"), params={"api-version": "2024-05-01"}, json=body
        )
        assert again.status_code == 409 and again.json()["error"]["code"] == "ServiceBusy"
        deadline = time.monotonic() + 20
        while (st := rest.status(r.headers["location"]))["properties"]["phase"] != "Loading":
            assert st["status"] == "InProgress" and time.monotonic() < deadline, st
            time.sleep(0.05)
        w = rest.http.put(
            rest.svc("rg-a", dst, "apis/loading"),
            params={"api-version": "2024-05-01"},
            json={"properties": {"path": "x"}},
        )
        assert w.status_code == 409  # and still refused while it loads
    finally:
        hold.unlink(missing_ok=True)
    assert rest.wait(r.headers["location"]).status_code == 200
    rest.put("rg-a", dst, "apis/after", {"path": "after"})


@pytest.mark.parametrize(
    ("point", "outcome"),
    [
        ("restore.after_validate", "Failed"),
        ("restore.mid_load", "Failed"),
        ("restore.before_switch", "Failed"),
        ("restore.after_switch", "Succeeded"),
    ],
)
def test_kill_during_restore(
    server_factory: Callable[..., PorticoServer],
    azurite: AzuriteServer,
    storage: Any,
    point: str,
    outcome: str,
) -> None:
    """kill -9 at each step of a restore, restart: the target is as before, or fully restored."""
    account, key, _ = storage
    server = server_factory(env=_env(azurite))
    rest = Rest(server)
    src, dst = uniq("ksrc"), uniq("kdst")
    rest.service("rg-a", src)
    populate(rest, "rg-a", src)
    seed_bulk(server, src, 6000, 1)  # 12,000 records: several 5,000-record batches, so mid_load is mid-stream
    rest.service("rg-a", dst)
    rest.put("rg-a", dst, "apis/mine", {"path": "mine"})
    before_src, before_dst = snapshot(rest, "rg-a", src), snapshot(rest, "rg-a", dst)
    name = uniq("k-")
    body = {"storageAccount": account, "containerName": "backups", "backupName": name, "accessKey": key}
    assert (
        rest.wait(rest.call("POST", rest.svc("rg-a", src, "backup"), body).headers["location"]).status_code
        == 200
    )
    server.stop()
    server.env["PORTICO_FAILPOINTS"] = point
    server.start()
    rest = Rest(server)
    location = rest.call("POST", rest.svc("rg-a", dst, "restore"), body).headers["location"]
    assert server.proc is not None
    server.proc.wait(60)  # the failpoint killed it
    server.env.pop("PORTICO_FAILPOINTS")
    server.start()
    rest = Rest(server)
    final = rest.wait(location, timeout=30)
    st = rest.status(location)
    assert st["status"] == outcome, st
    if outcome == "Failed":
        assert final.status_code == 400 and "interrupted" in final.json()["error"]["message"]
        assert snapshot(rest, "rg-a", dst) == before_dst
    else:
        assert final.status_code == 200
        restored = snapshot(rest, "rg-a", dst)
        assert {
            k: v for k, v in restored.items() if not k.startswith(("users/bulk", "subscriptions/bulk"))
        } == {k: v for k, v in before_src.items() if not k.startswith(("users/bulk", "subscriptions/bulk"))}
    rest.put("rg-a", dst, "apis/after-crash", {"path": "after-crash"})  # the busy marker is gone


def test_node_death_on_shared_database(
    server_factory: Callable[..., PorticoServer], azurite: AzuriteServer, storage: Any, pg_url: str
) -> None:
    """Two nodes, one PostgreSQL database: the survivor answers status and closes the dead node's restore."""
    from tests.support.postgres import create_database

    account, key, _ = storage
    url = create_database(pg_url, uniq("shared_"))
    node1 = server_factory(env=_env(azurite, PORTICO_NODE_ID="node1"), database_url=url)
    node2 = server_factory(env=_env(azurite, PORTICO_NODE_ID="node2"), database_url=url)
    # one admin app in the shared database; node2 has its own data dir (and TLS)
    (node2.data_dir / "admin-credentials.json").write_text(
        (node1.data_dir / "admin-credentials.json").read_text()
    )
    r1 = Rest(node1)
    src, dst = uniq("nsrc"), uniq("ndst")
    r1.service("rg-a", src)
    populate(r1, "rg-a", src)
    r1.service("rg-a", dst)
    before = snapshot(r1, "rg-a", dst)
    name = uniq("n-")
    body = {"storageAccount": account, "containerName": "backups", "backupName": name, "accessKey": key}
    assert (
        r1.wait(r1.call("POST", r1.svc("rg-a", src, "backup"), body).headers["location"]).status_code == 200
    )
    node1.stop()
    node1.env["PORTICO_FAILPOINTS"] = "restore.before_switch"
    node1.start()
    r1 = Rest(node1)
    location = r1.call("POST", r1.svc("rg-a", dst, "restore"), body).headers["location"]
    assert node1.proc is not None
    node1.proc.wait(60)
    # node2 (different data dir, same database) answers for the operation and fails it after the lease.
    r2 = Rest(node2)
    loc2 = location.replace(node1.url, node2.url)
    final = r2.wait(loc2, timeout=30)
    assert final.status_code == 400 and "interrupted" in final.json()["error"]["message"]
    assert snapshot(r2, "rg-a", dst) == before
