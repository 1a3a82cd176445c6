"""The Azure CLI and the Azure SDK for JavaScript drive Portico unchanged (service principal).

The az test runs the `<!-- runbook-az: ... -->` blocks of docs/runbook.md as written (cloud
register, login, backup, restore, logout) plus the generic resource and soft-delete commands; the
JavaScript test runs the README's example as written. Both against one real server and Azurite.
The clients are installed by `scripts/install-azure-cli.sh` (`make test-deps`) under `.test-deps/`.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from tests.e2e.test_soap_to_rest import SoapBackend, soap_backend, wsdl_for
from tests.gateway.conftest import DOMAIN, eventually, gateway_env
from tests.support.azurite import AzuriteServer, run_azurite
from tests.support.server import REPO, PorticoServer

pytestmark = pytest.mark.slow

SUB = "00000000-0000-0000-0000-000000000001"
API = "2024-05-01"
AZ = REPO / ".test-deps" / "azure-cli" / "bin" / "az"
JS = REPO / ".test-deps" / "js"
INSTALL = REPO / "scripts" / "install-azure-cli.sh"
RUNBOOK_AZ = re.compile(r"<!-- runbook-az: ([\w-]+) -->\s*\n```bash\n(.*?)\n```", re.DOTALL)
README_JS = re.compile(r"### Azure SDK for JavaScript\n.*?```js\n(.*?)\n```", re.DOTALL)


def ensure_clients() -> None:
    if AZ.exists() and (JS / "node_modules" / "@azure" / "arm-apimanagement").exists():
        return
    (REPO / ".test-deps").mkdir(exist_ok=True)
    with open(REPO / ".test-deps" / ".clients-install.lock", "w") as lock:  # one installer at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(["bash", str(INSTALL)], check=True, cwd=REPO)


@pytest.fixture(scope="module")
def storage() -> Iterator[AzuriteServer]:
    """Azurite with the account the runbook and README examples name (`backups`, container `apim`)."""
    with run_azurite(accounts=("backups",)) as az:
        BlobServiceClient(
            az.endpoint("backups"), credential={"account_name": "backups", "account_key": az.key("backups")}
        ).create_container("apim")
        yield az


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., PorticoServer], storage: AzuriteServer) -> PorticoServer:
    ensure_clients()
    return server_factory(
        db="sqlite",
        env={
            "PORTICO_STORAGE_BACKEND": "azure",
            "PORTICO_BLOB_ENDPOINT_TEMPLATE": storage.endpoint_template,
            **gateway_env(),  # the SOAP-to-REST API imported by az is called through the gateway
        },
    )


def _http(server: PorticoServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        verify=ssl.create_default_context(cafile=server.ca),
        headers={"Authorization": f"Bearer {server.token()}"},
        timeout=60,
    )


def _put_group_and_service(http: httpx.Client, rg: str, name: str | None) -> None:
    r = http.put(
        f"/subscriptions/{SUB}/resourceGroups/{rg}?api-version=2021-04-01", json={"location": "westeurope"}
    )
    assert r.status_code in (200, 201), r.text
    if name is not None:
        body = {
            "location": "westeurope",
            "sku": {"name": "Developer", "capacity": 1},
            "properties": {"publisherEmail": "ops@contoso.example", "publisherName": "Contoso"},
        }
        r = http.put(
            f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name}?api-version={API}",
            json=body,
        )
        assert r.status_code in (200, 201), r.text


def _polls_carry_retry_after(http: httpx.Client, storage: AzuriteServer, svc: str) -> bool:
    """Whether a backup's status answers carry Retry-After (az waits 30 s per poll without it)."""
    base = f"/subscriptions/{SUB}/resourceGroups/rg-az/providers/Microsoft.ApiManagement/service/{svc}"
    body = {
        "storageAccount": "backups",
        "containerName": "apim",
        "backupName": "probe",
        "accessKey": storage.key("backups"),
    }
    r = http.post(f"{base}/backup?api-version={API}", json=body)
    assert r.status_code == 202, r.text
    status = http.get(r.headers["Azure-AsyncOperation"])
    deadline = time.monotonic() + 30
    while http.get(r.headers["Location"]).status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.2)
    return "retry-after" in status.headers


def test_azure_cli(server: PorticoServer, storage: AzuriteServer, tmp_path: Path) -> None:
    creds = server.admin()
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{AZ.parent}:{os.environ['PATH']}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AZURE_CORE_COLLECT_TELEMETRY": "false",
        "AZURE_CORE_NO_COLOR": "true",
        "PRIMARY_URL": server.url,
        "STANDBY_URL": server.url,
        "PRIMARY_CA": server.ca,
        "STANDBY_CA": server.ca,
        "PRIMARY_CLIENT_ID": creds["client_id"],
        "PRIMARY_CLIENT_SECRET": creds["client_secret"],
        "STANDBY_CLIENT_ID": creds["client_id"],
        "STANDBY_CLIENT_SECRET": creds["client_secret"],
        "PORTICO_RESOURCE_GROUP": "rg-az",
        "PRIMARY_SERVICE": "az-primary",
        "STANDBY_SERVICE": "az-standby",
        "STORAGE_ACCOUNT": "backups",
        "CONTAINER": "apim",
        "PORTICO_STORAGE_KEY": storage.key("backups"),
    }
    blocks = dict(RUNBOOK_AZ.findall((REPO / "docs" / "runbook.md").read_text()))
    assert list(blocks) == ["setup", "backup-restore", "logout"]

    def bash(script: str) -> str:
        r = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True, timeout=300
        )
        assert r.returncode == 0 and "ERROR" not in r.stderr, (
            f"{script[:200]}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        )
        return r.stdout

    functions = blocks["setup"].split("\naz_primary config", 1)[0]  # the two shell functions

    def az(*args: str) -> str:
        return bash(functions + "\naz_primary " + " ".join(f"'{a}'" for a in args))

    bash(blocks["setup"])  # cloud register (reads //metadata/endpoints), login (lists subscriptions)
    assert az("account", "show", "--query", "[id, tenantId]", "-o", "tsv").split() == [SUB, "portico"]
    az("group", "create", "-n", "rg-az", "-l", "westeurope", "-o", "none")
    for name in ("az-primary", "az-standby"):
        az("apim", "create", "-g", "rg-az", "-n", name, "--publisher-email", "ops@contoso.example",
           "--publisher-name", "Contoso", "--sku-name", "Developer", "-l", "westeurope", "-o", "none")  # fmt: skip
    az("apim", "api", "create", "-g", "rg-az", "--service-name", "az-primary", "--api-id", "echo", "--path", "echo",
       "--display-name", "Echo", "--service-url", "https://backend.example", "-o", "none")  # fmt: skip

    started = time.monotonic()
    out = bash(functions + "\n" + blocks["backup-restore"])
    elapsed = time.monotonic() - started
    assert out.split() == ["echo"]  # the standby now has the primary's API
    with _http(server) as http:
        retry_after = _polls_carry_retry_after(http, storage, "az-primary")
    # Two az commands (each ~1 s to start) plus polls 1 s apart: well under 10 s each. Without
    # Retry-After on every status answer az waits 30 s per poll.
    assert elapsed < (20 if retry_after else 80), (elapsed, retry_after)

    # An API imported from its definition, as a pipeline does it: the operations are all there.
    spec = REPO / "tests" / "fixtures" / "openapi" / "petstore.yaml"
    az("apim", "api", "import", "-g", "rg-az", "--service-name", "az-primary", "--api-id", "petstore",
       "--path", "petstore", "--specification-format", "OpenApi", "--specification-path", str(spec), "-o", "none")  # fmt: skip
    ops = az("apim", "api", "operation", "list", "-g", "rg-az", "--service-name", "az-primary",
             "--api-id", "petstore", "--query", "[].method", "-o", "tsv").split()  # fmt: skip
    assert sorted(ops) == ["GET", "GET", "POST"], ops
    # a pipeline's import with a revision number into a new API, then the API exported to a file
    az("apim", "api", "import", "-g", "rg-az", "--service-name", "az-primary", "--api-id", "pets2",
       "--api-revision", "1", "--path", "pets2", "--specification-format", "OpenApi",
       "--specification-path", str(spec), "-o", "none")  # fmt: skip
    az("apim", "api", "export", "-g", "rg-az", "--service-name", "az-primary", "--api-id", "pets2",
       "--ef", "OpenApiJsonFile", "--file-path", str(tmp_path), "-o", "none")  # fmt: skip
    exported = json.loads((tmp_path / "pets2_openapi+json.json").read_text())
    assert set(exported["paths"]) == {"/pets", "/pets/{petId}"}

    # SOAP-to-REST: a WSDL imported as a REST API (--api-type http), called with JSON through the
    # gateway, which sends the SOAP service an envelope
    with soap_backend() as backend:
        wsdl = tmp_path / "calculator.wsdl"
        wsdl.write_text(wsdl_for(backend))
        az("apim", "api", "import", "-g", "rg-az", "--service-name", "az-primary", "--api-id", "calc",
           "--path", "calc", "--specification-format", "Wsdl", "--specification-path", str(wsdl),
           "--api-type", "http", "--wsdl-service-name", "Calculator", "--wsdl-endpoint-name", "CalculatorSoap",
           "--subscription-required", "false", "--protocols", "http", "https", "-o", "none")  # fmt: skip
        templates = az("apim", "api", "operation", "list", "-g", "rg-az", "--service-name", "az-primary",
                       "--api-id", "calc", "--query", "[].urlTemplate", "-o", "tsv").split()  # fmt: skip
        assert sorted(templates) == ["/Add", "/Describe"]
        shown = az("apim", "api", "show", "-g", "rg-az", "--service-name", "az-primary", "--api-id", "calc",
                   "--query", "[apiType, serviceUrl]", "-o", "tsv").split()  # fmt: skip
        assert shown == ["http", backend]
        port = int(server.env["PORTICO_GATEWAY_PORT"])
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Host": f"az-primary.{DOMAIN}"}
        ) as gw:

            def added() -> httpx.Response:
                r = gw.post("/calc/Add", json={"add": {"intA": 19, "intB": 23}}, timeout=30)
                assert r.status_code == 200, r.text
                return r

            assert eventually(added, timeout=10).json() == {"addResponse": {"addResult": 42}}
        assert SoapBackend.received[-1]["headers"]["soapaction"] == '"http://tempuri.org/Add"'

    listed = az("resource", "list", "-g", "rg-az", "--query", "[].name", "-o", "tsv").split()
    assert sorted(listed) == ["az-primary", "az-standby"]
    svc_id = f"/subscriptions/{SUB}/resourceGroups/rg-az/providers/Microsoft.ApiManagement/service/az-primary"
    assert az("resource", "show", "--ids", svc_id, "--query", "name", "-o", "tsv").strip() == "az-primary"
    assert (
        az("resource", "show", "--ids", svc_id + "/apis/echo", "--query", "name", "-o", "tsv").strip()
        == "echo"
    )
    assert (
        az(
            "provider", "show", "-n", "Microsoft.ApiManagement", "--query", "registrationState", "-o", "tsv"
        ).strip()
        == "Registered"
    )

    az("apim", "delete", "-g", "rg-az", "-n", "az-standby", "--yes")
    assert az("apim", "deletedservice", "list", "--query", "[].name", "-o", "tsv").split() == ["az-standby"]
    shown = az(
        "apim",
        "deletedservice",
        "show",
        "-l",
        "West Europe",
        "-n",
        "az-standby",
        "--query",
        "serviceId",
        "-o",
        "tsv",
    )
    assert shown.strip().casefold() == svc_id.replace("az-primary", "az-standby").casefold()
    az("apim", "deletedservice", "purge", "-l", "westeurope", "-n", "az-standby")
    assert az("apim", "deletedservice", "list", "--query", "[].name", "-o", "tsv").split() == []

    config_dirs = home / ".portico-az"
    assert _files_containing(config_dirs, creds["client_secret"])  # the login stored it
    bash(functions + "\n" + blocks["logout"])
    assert _files_containing(config_dirs, creds["client_secret"]) == []


def _files_containing(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_javascript_sdk_readme_example(server: PorticoServer, storage: AzuriteServer) -> None:
    match = README_JS.search((REPO / "README.md").read_text())
    assert match, "README.md has no JavaScript example"
    script = JS / "readme-example.mjs"  # beside node_modules, so the imports resolve
    script.write_text(match.group(1))
    with _http(server) as http:
        _put_group_and_service(http, "rg1", "contoso-standby")  # the restore target the example names
        creds = server.admin()
        env = {
            "PATH": os.environ["PATH"],
            "NODE_EXTRA_CA_CERTS": server.ca,
            "PORTICO_URL": server.url,
            "CLIENT_ID": creds["client_id"],
            "CLIENT_SECRET": creds["client_secret"],
            "KEY": storage.key("backups"),
        }
        started = time.monotonic()
        r = subprocess.run(
            ["node", str(script)], env=env, capture_output=True, text=True, timeout=300, cwd=JS
        )
        assert r.returncode == 0, r.stderr[-3000:]
        assert "restored contoso into contoso-standby" in r.stdout
        assert time.monotonic() - started < 60
        base = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.ApiManagement/service"
        api: Any = http.get(f"{base}/contoso-standby/apis/echo?api-version={API}").json()
        assert api["properties"]["serviceUrl"] == "https://backend.example", api
