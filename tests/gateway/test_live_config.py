"""Live configuration: management changes reach the gateway within a second, including a whole
restore onto a second Portico instance (PostgreSQL) whose gateway then takes the source's keys."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from azure.mgmt.apimanagement import models as M

from tests.gateway.conftest import (
    RG,
    GatewayEnv,
    eventually,
    gateway_env,
    make_certificate,
    make_service,
    presented,
    unique,
)
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow


def _timed(check: Callable[[], Any], limit: float = 1.0) -> float:
    """Seconds until `check` passes; fails when it takes longer than `limit` (+ request time)."""
    t0 = time.monotonic()
    eventually(check, timeout=limit + 0.3, interval=0.02)
    return time.monotonic() - t0


def _code(r: httpx.Response, code: int) -> httpx.Response:
    assert r.status_code == code, r.text
    return r


def test_changes_apply_within_a_second(gw: GatewayEnv, backend: str) -> None:
    key = gw.subscription(unique("live"), "/apis")
    name = unique("live")
    gw.api(name, name, backend)
    assert _timed(lambda: _code(gw.get(f"/{name}/x", key=key), 200)) <= 1.0
    # a new key works, a regenerated one stops working
    sub = unique("rot")
    new_key = gw.subscription(sub, f"/apis/{name}")
    _timed(lambda: _code(gw.get(f"/{name}/x", key=new_key), 200))
    gw.client.subscription.regenerate_primary_key(RG, gw.service, sub)
    assert _timed(lambda: _code(gw.get(f"/{name}/x", key=new_key), 401)) <= 1.0
    # suspending a subscription
    gw.client.subscription.update(RG, gw.service, sub, "*", {"properties": {"state": "suspended"}})
    secondary = gw.client.subscription.list_secrets(RG, gw.service, sub).secondary_key
    _timed(lambda: _code(gw.get(f"/{name}/x", key=secondary), 401))
    # a custom Proxy hostname on the service
    gw.hostnames([{"type": "Proxy", "hostName": f"{gw.service}.contoso.test"}])
    _timed(lambda: _code(gw.get(f"/{name}/x", key=key, host=f"{gw.service}.contoso.test"), 200))
    # deleting the API
    gw.client.api.begin_delete(RG, gw.service, name, "*").result()
    assert _timed(lambda: _code(gw.get(f"/{name}/x", key=key), 404)) <= 1.0


def test_restore_onto_second_instance_serves_source_keys_at_once(
    gw_server: PorticoServer,
    server_factory: Callable[..., PorticoServer],
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # the standby region: another Portico with its own PostgreSQL database and gateway, sharing
    # the local blob storage of the primary (symlinked: one storage account, two servers)
    standby_dir = tmp_path_factory.mktemp("standby")
    os.symlink(gw_server.data_dir / "storage", standby_dir / "storage", target_is_directory=True)
    account = unique("gwacct")
    (gw_server.data_dir / "storage").mkdir(exist_ok=True)
    access_key = gw_server.cli("storage", "account", "create", account).stdout.strip()
    gw_server.cli("storage", "container", "create", account, "backups")
    standby = server_factory(db="postgres", env=gateway_env(), data_dir=standby_dir)

    src = unique("src")
    client = make_service(gw_server, src)
    primary = GatewayEnv(gw_server, client, httpx.Client(timeout=30), src)
    primary.api("orders", "orders", backend + "/orders")
    primary.policy(
        '<policies><inbound><base /><set-header name="X-Restored" exists-action="override"><value>yes</value></set-header></inbound>'
        "<backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>",
        api="orders",
    )
    key = primary.subscription("orders-sub", "/apis/orders")
    eventually(lambda: _code(primary.get("/orders/1", key=key), 200), timeout=2)

    dst = unique("dst")
    sclient = make_service(standby, dst)
    secondary = GatewayEnv(standby, sclient, httpx.Client(timeout=30), dst)
    secondary.api("before", "before", backend)
    skey = secondary.subscription("before-sub", "/apis")
    eventually(
        lambda: _code(secondary.get("/before/x", key=skey), 200), timeout=2
    )  # usage recorded before the restore

    # the standby's own custom domain and certificate, set up in advance: target-owned, so they stay
    # through the restore, and moving traffic is a DNS change (TLS included)
    custom = f"api.{dst}.test"
    pfx, pem = make_certificate(custom, tmp_path_factory.mktemp("certs"), "pw")
    secondary.hostnames(
        [{"type": "Proxy", "hostName": custom, "encodedCertificate": pfx, "certificatePassword": "pw"}],
    )

    params = M.ApiManagementServiceBackupRestoreParameters(
        storage_account=account, container_name="backups", backup_name=src, access_key=access_key
    )
    client.api_management_service.begin_backup(RG, src, params).result()
    sclient.api_management_service.begin_restore(RG, dst, params).result()
    restored_at = time.monotonic()
    r = eventually(lambda: _code(secondary.get("/orders/42", key=key), 200), timeout=1.0, interval=0.02)
    elapsed = time.monotonic() - restored_at
    assert elapsed <= 1.0, elapsed
    assert r.json()["headers"]["x-restored"] == "yes" and r.json()["path"] == "/orders/42"
    assert secondary.get("/before/x", key=skey).status_code in (401, 404)  # the standby now is the backup
    cn, _status = presented(secondary, custom, pem, key, "/orders/7")
    assert cn == custom

    # usage data is not in backups and survives the restore of its service
    def usage() -> None:
        recs = list(sclient.reports.list_by_api(RG, dst, "timestamp ge datetime'2000-01-01T00:00:00'"))
        by = {x.api_id: x.call_count_total for x in recs}
        assert by.get("/apis/before", 0) >= 1 and by.get("/apis/orders", 0) >= 1, by

    eventually(usage, timeout=5)
    primary.http.close()
    secondary.http.close()
