"""`az deployment group validate|create|what-if --template-file` against Portico, as an operator runs
them (the Azure CLI installed by scripts/install-azure-cli.sh under .test-deps/)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_real_clients import AZ, ensure_clients
from tests.support.server import PorticoServer

from .templates import service_template

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def az(
    server_factory: Callable[..., PorticoServer], tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., str]:
    ensure_clients()
    server = server_factory(db="sqlite")
    creds = server.admin()
    env = {
        "PATH": f"{AZ.parent}:{os.environ['PATH']}",
        "HOME": str(tmp_path_factory.mktemp("home")),
        "AZURE_CONFIG_DIR": str(tmp_path_factory.mktemp("azconfig")),
        "REQUESTS_CA_BUNDLE": server.ca,
        "AZURE_CORE_COLLECT_TELEMETRY": "false",
        "AZURE_CORE_NO_COLOR": "true",
        "LANG": "C.UTF-8",
    }

    def run(*args: str, check: bool = True) -> str:
        r = subprocess.run([str(AZ), *args], env=env, capture_output=True, text=True, timeout=300)
        if check:
            assert r.returncode == 0, f"az {' '.join(args[:4])}: {r.stdout[-1500:]}\n{r.stderr[-3000:]}"
        return r.stdout if check else r.stdout + r.stderr

    run("config", "set", "core.instance_discovery=false")
    run("cloud", "register", "-n", "Portico", "--endpoint-resource-manager", server.url + "/")
    run("cloud", "set", "-n", "Portico")
    run(
        "login",
        "--service-principal",
        "-u",
        creds["client_id"],
        "-p",
        creds["client_secret"],
        "--tenant",
        "portico",
        "-o",
        "none",
    )
    run("group", "create", "-n", "rg-tpl", "-l", "westeurope", "-o", "none")
    return run


def test_az_validates_deploys_and_what_ifs_a_template(az: Callable[..., str], tmp_path: Path) -> None:
    template = tmp_path / "apim.json"
    template.write_text(json.dumps(service_template(apis=2, operations=2)))
    params = ["--parameters", "serviceName=aztpl", "backendSecret=not-shown-anywhere", "apiCount=2"]
    az(
        "deployment",
        "group",
        "validate",
        "-g",
        "rg-tpl",
        "--template-file",
        str(template),
        *params,
        "-o",
        "none",
    )
    out = json.loads(
        az(
            "deployment",
            "group",
            "create",
            "-g",
            "rg-tpl",
            "-n",
            "apim",
            "--template-file",
            str(template),
            *params,
        )
    )
    assert out["properties"]["provisioningState"] == "Succeeded"
    assert out["properties"]["outputs"]["apiNames"]["value"] == ["api0", "api1"]
    assert "not-shown-anywhere" not in json.dumps(out)
    apis = az(
        "apim", "api", "list", "-g", "rg-tpl", "--service-name", "aztpl", "--query", "[].name", "-o", "tsv"
    )
    assert sorted(apis.split()) == ["api0", "api1"]
    # a re-run changes nothing, and what-if says so
    what_if = json.loads(
        az(
            "deployment",
            "group",
            "what-if",
            "-g",
            "rg-tpl",
            "--template-file",
            str(template),
            *params,
            "--no-pretty-print",
            "-o",
            "json",
        )
    )
    assert {c["changeType"] for c in what_if["changes"]} == {"NoChange"}
    pretty = az(
        "deployment",
        "group",
        "what-if",
        "-g",
        "rg-tpl",
        "--template-file",
        str(template),
        "--parameters",
        "serviceName=aztpl",
        "backendSecret=x",
        "apiCount=3",
    )
    assert (
        "+ Microsoft.ApiManagement/service/aztpl/apis/api2" in pretty.replace("\\", "/") or "api2" in pretty
    )
    ops = az("deployment", "operation", "group", "list", "-g", "rg-tpl", "-n", "apim", "--query", "length(@)")
    assert int(ops) > 10


def test_az_reports_a_broken_template_with_its_location(az: Callable[..., str], tmp_path: Path) -> None:
    tpl = service_template(apis=1, operations=1)
    tpl["resources"][3]["properties"]["path"] = "[frobnicate('x')]"
    template = tmp_path / "broken.json"
    template.write_text(json.dumps(tpl))
    out = az(
        "deployment", "group", "create", "-g", "rg-tpl", "-n", "broken", "--template-file", str(template),
        "--parameters", "serviceName=azbroken", "backendSecret=x", check=False,
    )  # fmt: skip
    assert "frobnicate" in out and "resources[3].properties.path" in out, out[-2000:]
    assert "azbroken" not in az("apim", "list", "-g", "rg-tpl", "--query", "[].name", "-o", "tsv")
