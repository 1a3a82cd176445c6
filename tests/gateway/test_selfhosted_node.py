"""`portico gateway --gateway-name NAME --token TOKEN`: a node of one self-hosted gateway entity
(configured through the Azure SDK) serves only the APIs linked to it, with a token of the entity's
generateToken action; a bad token is refused at start, and a regenerated key stops the node."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from azure.mgmt.apimanagement import models as M

from tests.gateway.conftest import RG, GatewayEnv, eventually, gateway_node
from tests.support.server import free_port

pytestmark = pytest.mark.slow


def _status(port: int, host: str, path: str) -> int:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def _token(gw: GatewayEnv, name: str, minutes: int = 60) -> str:
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes, seconds=17)
    params = M.GatewayTokenRequestContract(key_type="primary", expiry=expiry)
    return str(gw.client.gateway.generate_token(RG, gw.service, name, params).value)


def test_a_node_serves_only_its_gateways_apis(gw: GatewayEnv, backend: str, tmp_path: Path) -> None:
    c = gw.client
    c.gateway.create_or_update(
        RG, gw.service, "edge", M.GatewayContract(location_data=M.ResourceLocationDataContract(name="edge"))
    )
    for api in ("linked", "central"):
        gw.api(api, api, backend, subscriptionRequired=False)
    c.gateway_api.create_or_update(RG, gw.service, "edge", "linked")
    token = _token(gw, "edge")

    # refused at start: a token of another gateway, a tampered one
    for bad in (token.replace("edge&", "other&", 1), token[:-6] + "AAAAA="):
        refused = subprocess.run(
            gateway_node_args(gw, tmp_path, "edge", bad),
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PORTICO_SECRET_KEY": gw.server.secret_key},
        )
        said = refused.stdout + refused.stderr
        assert refused.returncode == 2 and "gateway 'edge'" in said, said
        assert bad not in said

    port = free_port()
    proc = gateway_node(
        gw.server, tmp_path / "gw", port, 1, PORTICO_GATEWAY_NAME="edge", PORTICO_GATEWAY_TOKEN=token
    )
    try:
        eventually(lambda: _expect(port, gw.host, "/linked/x", 200), timeout=30)
        assert _status(port, gw.host, "/central/x") == 404  # not linked to this gateway
        assert _status(gw.port, gw.host, "/central/x") == 200  # the managed gateway serves all
        c.gateway_api.create_or_update(RG, gw.service, "edge", "central")  # linked later: live
        eventually(lambda: _expect(port, gw.host, "/central/x", 200), timeout=3)
        # a regenerated key revokes the token: the node stops serving within the poll
        c.gateway.regenerate_key(
            RG, gw.service, "edge", M.GatewayKeyRegenerationRequestContract(key_type="primary")
        )
        eventually(lambda: _expect(port, gw.host, "/linked/x", 404), timeout=3)
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
    assert "self-hosted gateway 'edge'" in out, out[-2000:]
    assert token not in out


def _expect(port: int, host: str, path: str, status: int) -> None:
    got = _status(port, host, path)
    assert got == status, (path, got)


def gateway_node_args(gw: GatewayEnv, tmp_path: Path, name: str, token: str) -> list[str]:
    db_url = f"sqlite+aiosqlite:///{(gw.server.data_dir / 'portico.db').resolve()}"
    return [
        sys.executable,
        "-m",
        "portico.cli",
        "gateway",
        "--data-dir",
        str(tmp_path / "refused"),
        "--database-url",
        db_url,
        "--port",
        str(free_port()),
        "--https-port",
        "0",
        "--gateway-name",
        name,
        "--token",
        token,
    ]
