"""`portico drill` end to end: two Portico instances (the standby with its gateway), Azurite, a real
HTTP backend. The report's comparison and probe planning on their own: tests/dr/test_drill_units.py."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.dr_support import Rest, populate
from tests.e2e.sched_support import container, sched_env
from tests.support.azurite import AzuriteServer
from tests.support.server import PorticoServer, free_port

pytestmark = pytest.mark.slow

CONTAINER = "drills"
DOMAIN = "gw.invalid"  # never resolves: without --standby-gateway the gateway is "not available"


class _Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        out = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def pair(
    server_factory: Callable[..., PorticoServer],
    azurite: AzuriteServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PorticoServer, PorticoServer]]:
    d1, d2 = tmp_path_factory.mktemp("primary"), tmp_path_factory.mktemp("standby")
    primary = server_factory(env=sched_env(azurite, d1, PORTICO_GATEWAY_DOMAIN=DOMAIN), data_dir=d1)
    standby = server_factory(
        env=sched_env(azurite, d2, PORTICO_GATEWAY_DOMAIN=DOMAIN, PORTICO_GATEWAY_PORT=str(free_port())),
        data_dir=d2,
    )
    yield primary, standby
    primary.stop()
    standby.stop()


def _invoke(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from portico.cli.main import app

    r = CliRunner().invoke(app, args, env=env)
    return r.exit_code, r.stdout, r.stderr


def test_drill_report(
    pair: tuple[PorticoServer, PorticoServer], azurite: AzuriteServer, backend: str
) -> None:
    primary, standby = pair
    account, key, blobs = container(azurite, CONTAINER)
    a, b = Rest(primary), Rest(standby)
    a.service("rg-p", "drillsrc")
    populate(a, "rg-p", "drillsrc")
    a.put(
        "rg-p",
        "drillsrc",
        "apis/health",
        {"path": "health", "displayName": "Health", "serviceUrl": backend, "protocols": ["http", "https"]},
    )
    a.put(
        "rg-p",
        "drillsrc",
        "apis/health/operations/status",
        {"displayName": "Status", "method": "GET", "urlTemplate": "/status"},
    )
    b.service(
        "rg-s", "drilldst", hostnameConfigurations=[{"type": "Proxy", "hostName": "api.standby.example"}]
    )
    pc, sc = primary.admin(), standby.admin()
    env = {**os.environ, "PORTICO_STORAGE_KEY": key, "COLUMNS": "200"}
    common = [
        "drill",
        "--primary-url", primary.url, "--primary-ca", primary.ca, "--primary-service", "drillsrc",
        "--primary-client-id", pc["client_id"], "--primary-client-secret", pc["client_secret"],
        "--primary-resource-group", "rg-p",
        "--standby-url", standby.url, "--standby-ca", standby.ca, "--standby-service", "drilldst",
        "--standby-client-id", sc["client_id"], "--standby-client-secret", sc["client_secret"],
        "--standby-resource-group", "rg-s",
        "-s", a.sub, "--storage-account", account, "--container", CONTAINER,
    ]  # fmt: skip
    gw = f"http://127.0.0.1:{standby.env['PORTICO_GATEWAY_PORT']}"
    code, out, err = _invoke([*common, "--standby-gateway", gw, "--json"], env)
    assert code == 0, out + err
    report = json.loads(out)
    v = report["verification"]
    assert v["equivalent"] is True and v["entities"] > 25, v
    assert v["byKind"]["subscriptions"] == {"primary": 3, "standby": 3, "equal": 3}
    assert v["byKind"]["namedValues"]["equal"] == 2
    t = report["traffic"]
    assert t["available"] is True and t["succeeded"] == 1, t
    [probe] = t["probes"]
    assert (
        probe["path"] == "/health/status"
        and probe["status"] == 200
        and probe["withKey"]
        and probe["keyAccepted"]
    )
    assert t["host"] == f"drilldst.{DOMAIN}"
    rto, rpo = report["rto"], report["rpo"]
    assert rto["backupSeconds"] > 0 and rto["restoreSeconds"] > 0
    assert rto["firstSuccessfulRequestSeconds"] is not None and rto["firstSuccessfulRequestSeconds"] >= 0
    assert rto["failoverSeconds"] >= rto["restoreSeconds"]
    assert rpo["sinceLastBackupBeforeDrillSeconds"] is None  # no backup before this drill
    assert 0 < rpo["snapshotAgeAtRestoreSeconds"] < 120
    name = report["backup"]["name"]
    assert name.startswith("drill/drillsrc-") and blobs.get_blob_client(CONTAINER, name).exists()
    for secret in ("pk-all-apis-0001", "s3cr3t-value", key, pc["client_secret"], sc["client_secret"]):
        assert secret not in out + err
    # the standby kept its own hostname (restore does not change it): DNS can point at it
    svc = b.call("GET", b.svc("rg-s", "drilldst")).json()
    assert [h["hostName"] for h in svc["properties"]["hostnameConfigurations"] if h["type"] == "Proxy"] == [
        "api.standby.example"
    ]

    # Second drill, table output, without a reachable gateway: reported honestly; RPO before it
    # is the first drill's backup.
    code, out, err = _invoke(common, env)
    assert code == 0, out + err
    assert "gateway: not available" in out and "equivalent" in out
    assert "RPO: since the primary's last backup" in out and "no earlier backup" not in out
    for secret in ("pk-all-apis-0001", "s3cr3t-value", key):
        assert secret not in out + err
    a.http.close()
    b.http.close()


def test_drill_failure_is_clear(pair: tuple[PorticoServer, PorticoServer], azurite: AzuriteServer) -> None:
    primary, standby = pair
    account, key, _ = container(azurite, CONTAINER)
    Rest(primary).service("rg-p", "drillsku")
    Rest(standby).service("rg-s", "drillprem", sku="Premium")
    pc, sc = primary.admin(), standby.admin()
    code, out, err = _invoke(
        [
            "drill",
            "--primary-url",
            primary.url,
            "--primary-ca",
            primary.ca,
            "--primary-service",
            "drillsku",
            "--primary-client-id",
            pc["client_id"],
            "--primary-client-secret",
            pc["client_secret"],
            "--standby-url",
            standby.url,
            "--standby-ca",
            standby.ca,
            "--standby-service",
            "drillprem",
            "--standby-client-id",
            sc["client_id"],
            "--standby-client-secret",
            sc["client_secret"],
            "--primary-resource-group",
            "rg-p",
            "--standby-resource-group",
            "rg-s",
            "-s",
            Rest(primary).sub,
            "--storage-account",
            account,
            "--container",
            CONTAINER,
            "--json",
        ],
        {**os.environ, "PORTICO_STORAGE_KEY": key},
    )
    assert code == 1
    assert (
        "restore of 'drillprem' failed: (RestoreFailed) Cannot restore: current SKU is 'Premium'"
        in " ".join(err.split())
    )
    assert key not in out + err
