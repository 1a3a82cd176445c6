"""A whole disaster-recovery scenario driven by the Azure SDK for JavaScript (tests/e2e/js/dr_scenario.mjs).

The script uses `@azure/identity` and `@azure/arm-apimanagement` unchanged apart from their
custom-cloud options and prints one JSON line per step (name, ok, detail) and a summary; this test
asserts on every step. Steps the JavaScript SDK itself cannot do against a custom cloud are listed
in KNOWN_SDK_LIMITS with the reason: they must fail (so the list is kept honest), every other step
must pass.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_real_clients import JS, ensure_clients, storage  # noqa: F401 - fixture
from tests.support.azurite import AzuriteServer
from tests.support.server import REPO, PorticoServer

pytestmark = pytest.mark.slow

SCRIPT = REPO / "tests" / "e2e" / "js" / "dr_scenario.mjs"

# Step name -> why the JavaScript SDK cannot do it (against Azure too); the script works around each.
KNOWN_SDK_LIMITS: dict[str, str] = {
    "apiPolicy.get returns the policy document": (
        "@azure/arm-apimanagement 10.0.0 marks the policy GET operations isXML, so core-client looks up "
        "a literal 'properties.value' key in the JSON answer and returns no value (Azure/azure-sdk-for-js#31566); "
        "apiPolicy.listByApi / apiOperationPolicy.listByOperation read the documents instead"
    ),
}

STEPS = [
    "create resource group (REST with the SDK credential's token)",
    "create primary and standby services",
    "named values: plain and secret, listValue",
    "backend",
    "API from an OpenAPI definition (openapi+json)",
    "API created plainly, with operations",
    "API and operation policies",
    "apiPolicy.get returns the policy document",
    "product with the API and a group",
    "product apiLinks/groupLinks (2023-03-01-preview on): any link id, one link per target",
    "user",
    "subscription: listSecrets, regeneratePrimaryKey",
    "tags on the API",
    "API version set and a versioned API",
    "list APIs with $filter and $top paging (all pages)",
    "export the imported API (openapi-link) and fetch the link",
    "snapshot of the primary",
    "backup with accessKey (2024-05-01)",
    "backup without accessKey: system-assigned identity (2024-05-01)",
    "2019-12-01: backup with accessKey works, without it is refused naming accessKey",
    "restore into the standby (accessKey)",
    "standby has every entity of the primary",
    "restore into the standby (system-assigned identity, no accessKey)",
    "failed restore: wrong container is a JS Error carrying the cause",
    "failed restore: nonexistent backup name is a JS Error carrying the cause",
    "delete an API on the standby",
    "delete the standby service",
]


@pytest.fixture(scope="module")
def js_server(server_factory: Callable[..., PorticoServer], storage: AzuriteServer) -> PorticoServer:  # noqa: F811
    """Like test_real_clients' server, with the service identities allowed into the `backups` account."""
    ensure_clients()
    return server_factory(
        db="sqlite",
        env={
            "PORTICO_STORAGE_BACKEND": "azure",
            "PORTICO_BLOB_ENDPOINT_TEMPLATE": storage.endpoint_template,
            "PORTICO_MANAGED_IDENTITY_CREDENTIALS": f"backups=key:{storage.key('backups')}",
        },
    )


def test_disaster_recovery_scenario(
    js_server: PorticoServer,
    storage: AzuriteServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    # The script runs beside a link to the installed SDK, so its imports resolve without copying it.
    (tmp_path / "node_modules").symlink_to(JS / "node_modules")
    script = tmp_path / SCRIPT.name
    script.write_text(SCRIPT.read_text())
    creds = js_server.admin()
    secret_value = "s3cr3t-" + secrets.token_urlsafe(12)
    env = {
        "PATH": os.environ["PATH"],
        "NODE_EXTRA_CA_CERTS": js_server.ca,
        "PORTICO_URL": js_server.url,
        "CLIENT_ID": creds["client_id"],
        "CLIENT_SECRET": creds["client_secret"],
        "STORAGE_ACCOUNT": "backups",
        "STORAGE_KEY": storage.key("backups"),
        "CONTAINER": "apim",
        "RESOURCE_GROUP": "rg-js-dr",
        "PRIMARY": "js-primary",
        "STANDBY": "js-standby",
        "SECRET_VALUE": secret_value,
        "KNOWN_SDK_LIMITS": json.dumps(KNOWN_SDK_LIMITS),
    }
    started = time.monotonic()
    r = subprocess.run(
        ["node", str(script)], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    steps: list[dict[str, Any]] = [line for line in lines if "summary" not in line]
    report = "\n".join(f"{'ok  ' if s['ok'] else 'FAIL'} {s['name']}: {s['detail']}" for s in steps)
    assert [s["name"] for s in steps] == STEPS, report
    for s in steps:
        if s["name"] in KNOWN_SDK_LIMITS:
            assert not s["ok"], f"{s['name']} works now: remove it from KNOWN_SDK_LIMITS\n{report}"
            # It failed on its check of the SDK's answer, not on a call.
            assert s["detail"].startswith("Error: check failed:"), report
        else:
            assert s["ok"], report
    summary = lines[-1]["summary"]
    assert summary["passed"] == len(STEPS) - len(KNOWN_SDK_LIMITS), summary
    assert sorted(summary["knownSdkLimits"]) == sorted(KNOWN_SDK_LIMITS), summary
    assert storage.key("backups") not in r.stdout + r.stderr
    log = js_server.log_path.read_text()
    assert storage.key("backups") not in log and secret_value not in log
    assert elapsed < 60, (elapsed, report)
