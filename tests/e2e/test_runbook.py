"""docs/runbook.md, executed: every block marked `<!-- runbook: NAME -->` runs as written, in order,
in bash, against two real Portico instances (the standby with its gateway) and Azurite; only the
variables of "Values used below" are set to this test's servers. Region A "fails" (its server is
stopped) before the failover and comes back before the failback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.dr_support import Rest, populate, snapshot
from tests.e2e.sched_support import container, sched_env
from tests.support.azurite import AzuriteServer
from tests.support.server import REPO, PorticoServer, free_port

pytestmark = pytest.mark.slow
RUNBOOK = REPO / "docs" / "runbook.md"
BLOCK = re.compile(r"<!-- runbook: ([\w-]+) -->\s*\n```bash\n(.*?)\n```", re.DOTALL)


def runbook_blocks() -> dict[str, str]:
    blocks = dict(BLOCK.findall(RUNBOOK.read_text()))
    assert list(blocks) == [
        "env", "app", "standby", "schedule", "status", "drill", "failover", "check",
        "standby-schedule", "failback", "cleanup",
    ]  # fmt: skip
    return blocks


class _Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_runbook(
    server_factory: Callable[..., PorticoServer],
    azurite: AzuriteServer,
    tmp_path_factory: pytest.TempPathFactory,
    backend: str,
) -> None:
    blocks = runbook_blocks()
    d1, d2 = tmp_path_factory.mktemp("region-a"), tmp_path_factory.mktemp("region-b")
    primary = server_factory(env=sched_env(azurite, d1), data_dir=d1)
    gw_port = free_port()
    standby = server_factory(
        env=sched_env(azurite, d2, PORTICO_GATEWAY_PORT=str(gw_port), PORTICO_GATEWAY_DOMAIN="gw-b.test"),
        data_dir=d2,
    )
    account, key, blobs = container(azurite, "apim-backups")

    # The primary service, as it exists before this runbook starts.
    a = Rest(primary)
    a.service("rg-apis", "contoso")
    populate(a, "rg-apis", "contoso")
    a.put(
        "rg-apis",
        "contoso",
        "apis/health",
        {"path": "health", "displayName": "Health", "serviceUrl": backend, "protocols": ["http", "https"]},
    )
    a.put(
        "rg-apis",
        "contoso",
        "apis/health/operations/status",
        {"displayName": "Status", "method": "GET", "urlTemplate": "/status"},
    )
    a.call(
        "PATCH",
        a.svc("rg-apis", "contoso"),
        {"properties": {"hostnameConfigurations": [{"type": "Proxy", "hostName": "api.contoso.com"}]}},
    )
    original = snapshot(a, "rg-apis", "contoso")
    a.http.close()

    pa = primary.admin()
    env: dict[str, str] = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PORTICO_", "AZURE_"))},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "200",
        "PRIMARY_URL": primary.url, "PRIMARY_CA": primary.ca,
        "STANDBY_URL": standby.url, "STANDBY_CA": standby.ca,
        "PRIMARY_CLIENT_ID": pa["client_id"], "PRIMARY_CLIENT_SECRET": pa["client_secret"],
        "PORTICO_SUBSCRIPTION": "00000000-0000-0000-0000-000000000001", "PORTICO_RESOURCE_GROUP": "rg-apis",
        "PRIMARY_SERVICE": "contoso", "STANDBY_SERVICE": "contoso-dr",
        "STORAGE_ACCOUNT": account, "CONTAINER": "apim-backups", "PORTICO_STORAGE_KEY": key,
        "STANDBY_GATEWAY": f"http://127.0.0.1:{gw_port}", "SUBSCRIPTION_KEY": "pk-all-apis-0001",
    }  # fmt: skip

    def run(step: str, **extra: str) -> str:
        script = "set -euo pipefail\n" + blocks["env"] + "\n" + blocks[step] + "\n"
        r = subprocess.run(
            ["bash", "-c", script],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=180,
            cwd=REPO,
        )
        assert r.returncode == 0, f"runbook step '{step}' failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        if step != "app":  # app create prints its new secret once, by design
            for secret in (key, pa["client_secret"], env["STANDBY_CLIENT_SECRET"]):
                assert secret not in r.stdout + r.stderr, f"a secret was printed by step '{step}'"
        return r.stdout

    # 1. the standby: an app for the automation (server side, on the standby's data), its service
    app = json.loads(run("app", PORTICO_DATA_DIR=str(standby.data_dir)))
    env["STANDBY_CLIENT_ID"], env["STANDBY_CLIENT_SECRET"] = app["client_id"], app["client_secret"]
    assert "ready" in run("standby")
    # 2. schedule + a first backup now
    out = run("schedule")
    assert "schedule 'nightly' of 'contoso' created" in out and "run of schedule 'nightly' succeeded" in out
    assert "nightly" in out and "Succeeded" in out
    # 3. RPO
    out = run("status")
    assert "schedule nightly" in out and "RPO" in out
    m = re.search(r'^portico_backup_rpo_seconds\{service="contoso"[^}]*\} ([0-9.]+)$', out, re.MULTILINE)
    assert m and float(m.group(1)) < 120, out
    # 4. the drill
    out = run("drill")
    assert "equivalent" in out and "1/1 probes succeeded" in out, out
    # 5. region A goes down; fail over to B
    primary.stop()
    out = run("failover")
    assert "restoring nightly/contoso-" in out and "restore of 'contoso-dr' succeeded" in out
    assert run("check").strip() == "200"
    b = Rest(standby)
    assert snapshot(b, "rg-apis", "contoso-dr") == original
    svc = b.call("GET", b.svc("rg-apis", "contoso-dr")).json()
    assert [h["hostName"] for h in svc["properties"]["hostnameConfigurations"]] == ["api.contoso.com"]
    out = run("standby-schedule")
    assert "schedule 'while-live' of 'contoso-dr' created" in out
    # a change made while B is live, which must come back to A
    b.put(
        "rg-apis", "contoso-dr", "namedValues/added-during-failover", {"displayName": "added", "value": "x"}
    )
    during = snapshot(b, "rg-apis", "contoso-dr")
    b.http.close()
    # 6. region A is back: fail back
    primary.start()
    out = run("failback")
    assert "backup of 'contoso-dr' succeeded" in out and "restore of 'contoso' succeeded" in out
    a = Rest(primary)
    assert snapshot(a, "rg-apis", "contoso") == during
    a.http.close()
    out = run("cleanup")
    assert "schedule 'while-live' of 'contoso-dr' deleted" in out and "recent runs" in out
    names = [b.name for b in blobs.get_container_client("apim-backups").list_blobs()]
    assert any(n.startswith("nightly/contoso-") for n in names)
    assert any(n.startswith("failback/contoso-dr-") for n in names)
    assert any(n.startswith("drill/contoso-") for n in names)
    primary.stop()
    standby.stop()
