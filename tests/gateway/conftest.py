"""Gateway end-to-end fixtures: a real backend (threaded HTTP/1.1 server), real Portico servers with
their gateway listeners, configuration through the Azure SDK, traffic through real sockets."""

from __future__ import annotations

import itertools
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.conftest import sdk_client
from tests.support.certs import self_signed_pfx
from tests.support.server import REPO, PorticoServer, free_port

SUB = "00000000-0000-0000-0000-000000000001"
RG = "rg-gw"
DOMAIN = "gw.test"
_n = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_n)}"


OIDC: dict[str, Any] = {}  # path → JSON document served by the backend (discovery and keys)


class _Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "backend"

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def _handle(self) -> None:
        body = self._body()
        url = urlsplit(self.path)
        if url.path in OIDC:  # a tiny OpenID provider for validate-jwt
            out = json.dumps(OIDC[url.path]).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        path = url.path
        if "/slow" in path:
            time.sleep(float(query.get("s", "2")))
        if "/status/" in path:
            code = int(path.rsplit("/", 1)[-1])
            self.send_response(code)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        if "/stream" in path:
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for i in range(5):
                chunk = f"part{i};".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                time.sleep(0.02)
            self.wfile.write(b"0\r\n\r\n")
            return
        if "/big" in path:
            n = int(query.get("n", "1000000"))
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("content-length", str(n))
            self.end_headers()
            self.wfile.write(b"x" * n)
            return
        doc = {
            "method": self.command,
            "path": path,
            "query": query,
            "rawQuery": url.query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "bodyLength": len(body),
            "body": body[:2000].decode("latin-1"),
        }
        out = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-backend", "yes")
        self.send_header("keep-alive", "timeout=5")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _handle


@pytest.fixture(scope="session")
def backend() -> Iterator[str]:
    """Base URL of a real HTTP/1.1 backend that echoes what it received as JSON."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_env(**extra: str) -> dict[str, str]:
    return {
        # One worker: each worker polls the configuration on its own, so with several a change can
        # show on one a poll (0.25 s) before the other, and a test's "eventually X, then Y" would
        # race. tests/gateway/test_workers.py covers several workers.
        "PORTICO_GATEWAY_WORKERS": "1",
        "PORTICO_GATEWAY_PORT": str(free_port()),
        "PORTICO_GATEWAY_HTTPS_PORT": str(free_port()),
        "PORTICO_GATEWAY_DOMAIN": DOMAIN,
        "PORTICO_GATEWAY_MAX_BODY_BYTES": str(1024 * 1024),
        **extra,
    }


@dataclass
class GatewayEnv:
    server: PorticoServer
    client: Any
    http: httpx.Client
    service: str
    created: set[str] = field(default_factory=set)

    @property
    def port(self) -> int:
        return int(self.server.env["PORTICO_GATEWAY_PORT"])

    @property
    def https_port(self) -> int:
        return int(self.server.env["PORTICO_GATEWAY_HTTPS_PORT"])

    @property
    def host(self) -> str:
        return f"{self.service}.{DOMAIN}"

    def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        https: bool = False,
        host: str | None = None,
        **kw: Any,
    ) -> httpx.Response:
        h = {"Host": host or self.host, **(headers or {})}
        if key is not None:
            h["Ocp-Apim-Subscription-Key"] = key
        base = f"https://localhost:{self.https_port}" if https else f"http://127.0.0.1:{self.port}"
        return self.http.request(method, base + path, headers=h, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.call("GET", path, **kw)

    # --- configuration through the SDK --------------------------------------------------------
    def api(
        self,
        name: str,
        path: str,
        service_url: str,
        ops: list[tuple[str, str, str]] | None = None,
        **props: Any,
    ) -> None:
        body = {
            "properties": {
                "path": path,
                "displayName": name.title(),
                "serviceUrl": service_url,
                "protocols": ["http", "https"],
                **props,
            }
        }
        self.client.api.begin_create_or_update(RG, self.service, name, body).result()
        for op_name, method, template in ops or [("get-all", "GET", "/*"), ("post-all", "POST", "/*")]:
            self.client.api_operation.create_or_update(
                RG,
                self.service,
                name,
                op_name,
                {"properties": {"displayName": op_name, "method": method, "urlTemplate": template}},
            )

    def hostnames(self, hostnames: list[dict[str, Any]]) -> None:
        """Replace the service's hostnameConfigurations (a service PUT through the SDK)."""
        self.client.api_management_service.begin_create_or_update(
            RG,
            self.service,
            {
                "location": "westeurope",
                "sku": {"name": "Developer", "capacity": 1},
                "properties": {
                    "publisherEmail": "ops@contoso.com",
                    "publisherName": "Contoso",
                    "hostnameConfigurations": hostnames,
                },
            },
        ).result()

    def subscription(self, name: str, scope: str, state: str = "active", owner: str | None = None) -> str:
        props: dict[str, Any] = {"scope": scope, "displayName": name, "state": state}
        if owner:
            props["ownerId"] = owner
        self.client.subscription.create_or_update(RG, self.service, name, {"properties": props})
        return str(self.client.subscription.list_secrets(RG, self.service, name).primary_key)

    def policy(
        self, xml: str, api: str | None = None, operation: str | None = None, product: str | None = None
    ) -> None:
        body = {"properties": {"value": xml, "format": "xml"}}
        if product:
            self.client.product_policy.create_or_update(RG, self.service, product, "policy", body)
        elif operation:
            assert api
            self.client.api_operation_policy.create_or_update(
                RG, self.service, api, operation, "policy", body
            )
        elif api:
            self.client.api_policy.create_or_update(RG, self.service, api, "policy", body)
        else:
            self.client.policy.create_or_update(RG, self.service, "policy", body)

    def delete_policy(
        self, api: str | None = None, operation: str | None = None, product: str | None = None
    ) -> None:
        if product:
            self.client.product_policy.delete(RG, self.service, product, "policy", if_match="*")
        elif operation:
            assert api
            self.client.api_operation_policy.delete(RG, self.service, api, operation, "policy", if_match="*")
        elif api:
            self.client.api_policy.delete(RG, self.service, api, "policy", if_match="*")
        else:
            self.client.policy.delete(RG, self.service, "policy", if_match="*")


def gateway_node(
    server: PorticoServer, data_dir: Path, port: int, workers: int, **env: str
) -> subprocess.Popen[bytes]:
    """`portico gateway` (a gateway-only node: HTTP on `port`, no HTTPS) on `server`'s SQLite database."""
    db_url = f"sqlite+aiosqlite:///{(server.data_dir / 'portico.db').resolve()}"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "portico.cli",
            "gateway",
            "--port",
            str(port),
            "--https-port",
            "0",
            "--workers",
            str(workers),
        ],
        env={
            **os.environ,
            "PORTICO_DATA_DIR": str(data_dir),
            "PORTICO_DATABASE_URL": db_url,
            "PORTICO_GATEWAY_DOMAIN": DOMAIN,
            "PORTICO_SECRET_KEY": server.secret_key,  # every node of a database has the same key
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


def make_certificate(name: str, tmp: Path, password: str | None) -> tuple[str, Path]:
    """(base64 PFX, path of the certificate as PEM for a client to trust) for DNS name `name`."""
    pfx, cert = self_signed_pfx(name, password)
    pem = tmp / f"{name.replace('*', 'star')}.pem"
    pem.write_bytes(cert.public_bytes(Encoding.PEM))
    return pfx, pem


def tls_get(gw: GatewayEnv, sni: str, trust: Path, path: str, key: str) -> tuple[str, bytes]:
    """(subject CN the server presented, first line of the answer), verifying the certificate for `sni`."""
    context = ssl.create_default_context(cafile=str(trust))
    with socket.create_connection(("127.0.0.1", gw.https_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=sni) as s:
            cert: Any = s.getpeercert()
            cn = dict(x[0] for x in cert["subject"])["commonName"]
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nOcp-Apim-Subscription-Key: {key}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    return cn, data.split(b"\r\n", 1)[0]


def presented(gw: GatewayEnv, sni: str, trust: Path, key: str, path: str = "/tlsapi/x") -> tuple[str, bytes]:
    """tls_get that must verify and answer 200 (an AssertionError otherwise, for `eventually`)."""
    try:
        result = tls_get(gw, sni, trust, path, key)
    except ssl.SSLCertVerificationError as exc:
        raise AssertionError(f"{sni}: {exc}") from None
    assert result[1] == b"HTTP/1.1 200 OK", result
    return result


def eventually(check: Callable[[], Any], timeout: float = 1.5, interval: float = 0.05) -> Any:
    """Retry `check` (an assertion) until it passes; the gateway applies changes within 1 s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)


def make_service(server: PorticoServer, name: str) -> Any:
    client = sdk_client(server, SUB)
    token = server.token()
    httpx.put(
        f"{server.url}/subscriptions/{SUB}/resourcegroups/{RG}",
        params={"api-version": "2021-04-01"},
        json={"location": "westeurope"},
        headers={"Authorization": f"Bearer {token}"},
        verify=ssl.create_default_context(cafile=server.ca),
    ).raise_for_status()
    client.api_management_service.begin_create_or_update(
        RG,
        name,
        {
            "location": "westeurope",
            "sku": {"name": "Developer", "capacity": 1},
            "properties": {"publisherEmail": "ops@contoso.com", "publisherName": "Contoso"},
        },
    ).result()
    return client


@pytest.fixture(scope="session")
def gw_server(server_factory: Callable[..., PorticoServer]) -> PorticoServer:
    return server_factory(db="sqlite", env=gateway_env())


@pytest.fixture(scope="module")
def gw(gw_server: PorticoServer) -> Iterator[GatewayEnv]:
    """A fresh service per test module on the shared gateway server."""
    name = unique("gwsvc")
    client = make_service(gw_server, name)
    with httpx.Client(timeout=30, verify=ssl.create_default_context(cafile=gw_server.ca)) as http:
        yield GatewayEnv(gw_server, client, http, name)
