"""Gateway worker processes (portico/gateway/workers.py), end to end: several processes share the
ports, the rate-limit counters and the usage writer; a dead worker is replaced; a dead node leaves
no worker behind."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import RG, GatewayEnv, gateway_env, gateway_node, make_service, unique
from tests.support.server import PorticoServer, free_port

pytestmark = pytest.mark.slow

LIMIT = """<policies><inbound><base /><rate-limit calls="{calls}" renewal-period="300" /></inbound>
<backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"""


def gateway_workers(server: PorticoServer) -> list[int]:
    assert server.proc is not None
    out = []
    for pid in _children(server.proc.pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            out.append(pid)
    return sorted(out)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(x) for x in text)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return " Z " not in stat  # a zombie is dead


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def node(server_factory: Callable[..., PorticoServer], backend: str) -> tuple[GatewayEnv, httpx.Client]:
    server = server_factory(db="sqlite", env=gateway_env(PORTICO_GATEWAY_WORKERS="2"))
    name = unique("wk")
    client = make_service(server, name)
    http = httpx.Client(timeout=30, verify=ssl.create_default_context(cafile=server.ca))
    env = GatewayEnv(server, client, http, name)
    env.api("lim", "lim", backend, ops=[("all", "GET", "/*")])
    env.api("free", "free", backend, ops=[("all", "GET", "/*")], subscriptionRequired=False)
    return env, http


def _fresh_get(env: GatewayEnv, path: str, key: str | None = None) -> int:
    """One request on a new connection: the kernel spreads connections over the workers."""
    headers = {"Host": env.host, "Connection": "close"}
    if key:
        headers["Ocp-Apim-Subscription-Key"] = key
    return httpx.get(f"http://127.0.0.1:{env.port}{path}", headers=headers, timeout=10).status_code


def test_two_workers_share_one_rate_limit(node: tuple[GatewayEnv, httpx.Client]) -> None:
    env, _http = node
    assert len(gateway_workers(env.server)) == 2
    key = env.subscription(unique("sub"), "/apis")
    env.policy(LIMIT.format(calls=25), api="lim")
    time.sleep(1.5)  # both workers poll the configuration every 0.25 s
    codes = [_fresh_get(env, "/lim/x", key) for _ in range(60)]
    # per-worker counters would let up to 2 x 25 through
    assert codes.count(200) == 25 and codes.count(429) == 35, codes


def test_a_dead_worker_is_replaced(node: tuple[GatewayEnv, httpx.Client]) -> None:
    env, _http = node
    before = gateway_workers(env.server)
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    # (a connection the kernel gives the dying worker before its listening socket closes is reset:
    # wait until it is gone)
    wait_for(lambda: not _alive(before[0]))
    # the survivor keeps answering while the parent starts a replacement
    assert all(_fresh_get(env, "/free/x") == 200 for _ in range(10))
    wait_for(lambda: len(gateway_workers(env.server)) == 2 and before[0] not in gateway_workers(env.server))
    assert all(_fresh_get(env, "/free/x") == 200 for _ in range(20))
    assert "gateway worker 0 exited" in env.server.log_path.read_text()


def test_workers_die_with_their_node(server_factory: Callable[..., PorticoServer]) -> None:
    server = server_factory(db="sqlite", env=gateway_env(PORTICO_GATEWAY_WORKERS="2"))
    workers = gateway_workers(server)
    assert len(workers) == 2
    port = int(server.env["PORTICO_GATEWAY_PORT"])
    server.kill()  # SIGKILL: no clean-up in the parent at all
    wait_for(lambda: not any(_alive(p) for p in workers))
    wait_for(lambda: _port_free(port))  # nothing holds the gateway port any more


def _port_free(port: int) -> bool:
    """Whether nothing listens on `port` (connections of the dead node left in TIME_WAIT do not
    count: SO_REUSEADDR binds past them, never past a listener)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_gateway_only_node(node: tuple[GatewayEnv, httpx.Client], tmp_path: Path, backend: str) -> None:
    """`portico gateway` beside a management node, on its database: it serves the services with
    its own workers and writes its own usage records, which the management node reports."""
    env, _http = node
    port = free_port()
    proc = gateway_node(env.server, tmp_path / "gw", port, workers=2)
    try:
        env.api("solo", "solo", backend, ops=[("all", "GET", "/*")], subscriptionRequired=False)

        def answers() -> bool:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/solo/x", headers={"Host": env.host}, timeout=5)
            except httpx.HTTPError:
                return False
            return r.status_code == 200 and r.json()["path"] == "/x"

        wait_for(answers, timeout=30)
        for _ in range(9):
            assert answers()
        assert len(_children(proc.pid)) >= 2
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
    assert proc.returncode == 0, out[-3000:]
    assert "2 worker processes" in out

    def reported() -> bool:
        rows = env.client.reports.list_by_api(RG, env.service, "timestamp ge datetime'2000-01-01T00:00:00'")
        return any(r.api_id.endswith("/solo") and r.call_count_total >= 10 for r in rows)

    wait_for(reported, timeout=10)


def test_gateway_inside_the_management_process(
    server_factory: Callable[..., PorticoServer], backend: str
) -> None:
    """PORTICO_GATEWAY_WORKERS=0: no worker process; the same gateway on the management loop."""
    server = server_factory(db="sqlite", env=gateway_env(PORTICO_GATEWAY_WORKERS="0"))
    assert gateway_workers(server) == []
    name = unique("inproc")
    client = make_service(server, name)
    with httpx.Client(timeout=30, verify=ssl.create_default_context(cafile=server.ca)) as http:
        env = GatewayEnv(server, client, http, name)
        env.api("one", "one", backend, ops=[("all", "GET", "/*")])
        key = env.subscription(unique("sub"), "/apis")
        env.policy(LIMIT.format(calls=3), api="one")
        time.sleep(1.0)
        codes = [_fresh_get(env, "/one/x", key) for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = env.call("GET", "/one/y", key=key, https=True)
        assert r.status_code == 429  # the HTTPS listener shares the counters too

        def reported() -> bool:
            rows = client.reports.list_by_api(RG, name, "timestamp ge datetime'2000-01-01T00:00:00'")
            return any(r.api_id.endswith("/one") and r.call_count_total == 6 for r in rows)

        wait_for(reported, timeout=10)
