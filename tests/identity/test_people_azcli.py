"""The real Azure CLI signs a person in (`az login --use-device-code` and the browser sign-in) against
a custom cloud registered with explicit endpoints, then acts as that person."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import PorticoServer

from .people_support import PageClient, create_user

AZ = Path(os.environ.get("PORTICO_TEST_AZ", "/work/azcli/bin/az"))
PASSWORD = "gina's long password"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not AZ.exists(), reason=f"Azure CLI not found at {AZ}")]


def claims(jwt: str) -> dict[str, Any]:
    part = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


@pytest.fixture(scope="module")
def az_env(server_factory: Callable[..., PorticoServer], tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = server_factory(env={"PORTICO_DEVICE_CODE_INTERVAL_SECONDS": "1"})
    # az lists the person's subscriptions right after sign-in (GET /subscriptions, 2022-12-01).
    listed = httpx.get(
        f"{server.url}/subscriptions?api-version=2022-12-01",
        headers={"Authorization": f"Bearer {server.token()}"},
        verify=server.ssl_context(),
    )
    if listed.status_code != 200:
        pytest.skip(
            f"this server does not list subscriptions at api-version 2022-12-01 ({listed.status_code})"
        )
    user = create_user(server, "gina@contoso.test", PASSWORD, "Gina")
    server.cli("role", "assign", "--principal", user["oid"], "--role", "Reader", "--scope", "/")
    env = {
        **os.environ,
        "AZURE_CONFIG_DIR": str(tmp_path_factory.mktemp("azconfig")),
        "REQUESTS_CA_BUNDLE": server.ca,
        "AZURE_CORE_COLLECT_TELEMETRY": "false",
        "AZURE_CORE_NO_COLOR": "true",
    }
    env.pop("CURL_CA_BUNDLE", None)

    def az(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(AZ), *args], env=kw.pop("env", env), capture_output=True, text=True, timeout=180
        )

    for args in (
        ("config", "set", "core.instance_discovery=false"),
        (
            "cloud",
            "register",
            "-n",
            "Portico",
            "--endpoint-resource-manager",
            server.url + "/",
            "--endpoint-active-directory",
            server.url,
            "--endpoint-active-directory-resource-id",
            "https://management.azure.com/",
            "--endpoint-active-directory-graph-resource-id",
            "https://graph.windows.net/",
            "--skip-endpoint-discovery",
        ),
        ("cloud", "set", "-n", "Portico"),
    ):
        r = az(*args)
        assert r.returncode == 0, r.stderr
    return {"server": server, "user": user, "env": env, "az": az}


def check_signed_in(az_env: dict[str, Any]) -> None:
    az = az_env["az"]
    token = az("account", "get-access-token", "--tenant", az_env["server"].tenant, "-o", "json")
    assert token.returncode == 0, token.stderr
    c = claims(json.loads(token.stdout)["accessToken"])
    assert c["oid"] == az_env["user"]["oid"] and c["upn"] == "gina@contoso.test" and c["idtyp"] == "user"
    assert c["appid"] == "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
    assert az("logout").returncode == 0


def test_az_login_device_code(az_env: dict[str, Any]) -> None:
    server: PorticoServer = az_env["server"]
    proc = subprocess.Popen(
        [str(AZ), "login", "--use-device-code", "--tenant", server.tenant, "--allow-no-subscriptions"],
        env=az_env["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    code = None
    for line in proc.stderr:
        found = re.search(r"enter the code (\w+)", line)
        if found:
            code = found.group(1)
            break
    assert code, "az printed no device code"
    pages = PageClient(server)
    try:
        assert "You have signed in" in pages.device_sign_in(code, "gina@contoso.test", PASSWORD).text
    finally:
        pages.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    check_signed_in(az_env)


def test_az_login_browser(az_env: dict[str, Any]) -> None:
    server: PorticoServer = az_env["server"]
    env = {
        **az_env["env"],
        "BROWSER": f"{sys.executable} {Path(__file__).with_name('azcli_browser.py')} %s",
        "PORTICO_TEST_CA": server.ca,
        "PORTICO_TEST_UPN": "gina@contoso.test",
        "PORTICO_TEST_PASSWORD": PASSWORD,
    }
    # No --tenant: az signs in through the `organizations` alias, as against Entra.
    r = az_env["az"]("login", "--allow-no-subscriptions", env=env)
    assert r.returncode == 0, r.stderr
    check_signed_in(az_env)
