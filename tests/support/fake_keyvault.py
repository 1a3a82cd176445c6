"""A Key Vault for tests, over HTTPS on 127.0.0.1, with its own Entra-like token endpoint on the same
origin (the authority the credential is pointed at).

The vault speaks what azure-keyvault-secrets reads: a request without a bearer token gets 401 with
Key Vault's challenge (`WWW-Authenticate: Bearer authorization="{authority}/{tenant}",
resource="https://vault.azure.net"`); `GET /secrets/{name}[/{version}]?api-version=...` with a token
this authority issued answers `{"value", "id", "attributes", "contentType"}`, 404 `SecretNotFound`
otherwise. The authority serves OpenID discovery and a client-credentials token endpoint that
checks the client id and secret and the Key Vault scope.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.support.certs import CertificateAuthority

VAULT_RESOURCE = "https://vault.azure.net"


@dataclass
class SecretVersion:
    version: str
    value: str
    content_type: str | None
    created: int


@dataclass
class FakeKeyVault:
    ca: CertificateAuthority
    workdir: Path
    tenant: str = "kv-tenant"
    client_id: str = "portico-kv-reader"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    port: int = 0
    secrets: dict[str, list[SecretVersion]] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)  # secrets the client may not get (403)
    reads: list[tuple[str, str | None]] = field(default_factory=list)  # (name, version asked)
    token_requests: int = 0
    tokens: set[str] = field(default_factory=set)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def identifier(self, name: str, version: str | None = None) -> str:
        return f"{self.url}/secrets/{name}" + (f"/{version}" if version else "")

    def set_secret(self, name: str, value: str, content_type: str | None = None) -> str:
        """Adds a new version (the latest); returns its version id."""
        version = secrets.token_hex(16)
        self.secrets.setdefault(name, []).append(
            SecretVersion(version, value, content_type, int(time.time()))
        )
        return version

    def env(self, ca_bundle: Path) -> dict[str, str]:
        """The PORTICO_KEYVAULT_* settings of a Portico that reads this vault."""
        return {
            "PORTICO_KEYVAULT_TENANT_ID": self.tenant,
            "PORTICO_KEYVAULT_CLIENT_ID": self.client_id,
            "PORTICO_KEYVAULT_CLIENT_SECRET": self.client_secret,
            "PORTICO_KEYVAULT_AUTHORITY_HOST": self.url,
            "PORTICO_KEYVAULT_CA_BUNDLE": str(ca_bundle),
            # localhost is not under vault.azure.net, the resource this vault's challenge names
            "PORTICO_KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "false",
        }

    def start(self) -> FakeKeyVault:
        vault = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(
                self, status: int, doc: dict[str, Any] | None, headers: dict[str, str] | None = None
            ) -> None:
                out = json.dumps(doc).encode() if doc is not None else b""
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                parts = [p for p in url.path.split("/") if p]
                if parts == [vault.tenant, "v2.0", ".well-known", "openid-configuration"]:
                    base = f"{vault.url}/{vault.tenant}"
                    self._send(
                        200,
                        {
                            "issuer": f"{base}/v2.0",
                            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                            "token_endpoint": f"{base}/oauth2/v2.0/token",
                            "jwks_uri": f"{base}/discovery/v2.0/keys",
                            "response_types_supported": ["code", "token"],
                            "subject_types_supported": ["pairwise"],
                            "id_token_signing_alg_values_supported": ["RS256"],
                        },
                    )
                    return
                if len(parts) not in (2, 3) or parts[0] != "secrets":
                    self._send(404, {"error": {"code": "NotFound", "message": "no such path"}})
                    return
                if "api-version" not in dict(parse_qsl(url.query)):
                    self._send(400, {"error": {"code": "MissingApiVersion", "message": "api-version"}})
                    return
                auth = self.headers.get("authorization", "")
                token = auth.removeprefix("Bearer ").strip()
                if not auth.startswith("Bearer ") or token not in vault.tokens:
                    challenge = (
                        f'Bearer authorization="{vault.url}/{vault.tenant}", resource="{VAULT_RESOURCE}"'
                    )
                    self._send(
                        401,
                        {
                            "error": {
                                "code": "Unauthorized",
                                "message": "AKV10000: Request is missing a Bearer",
                            }
                        },
                        {"WWW-Authenticate": challenge},
                    )
                    return
                name, version = parts[1], (parts[2] if len(parts) == 3 else None)
                vault.reads.append((name, version))
                if name in vault.forbidden:
                    self._send(
                        403,
                        {
                            "error": {
                                "code": "Forbidden",
                                "message": "The user does not have secrets get permission",
                            }
                        },
                    )
                    return
                versions = vault.secrets.get(name, [])
                found = (
                    next((v for v in versions if v.version == version), None)
                    if version
                    else (versions[-1] if versions else None)
                )
                if found is None:
                    self._send(
                        404,
                        {
                            "error": {
                                "code": "SecretNotFound",
                                "message": f"A secret with (name/id) {name} was not found",
                            }
                        },
                    )
                    return
                doc: dict[str, Any] = {
                    "value": found.value,
                    "id": vault.identifier(name, found.version),
                    "attributes": {
                        "enabled": True,
                        "created": found.created,
                        "updated": found.created,
                        "recoveryLevel": "Recoverable+Purgeable",
                    },
                }
                if found.content_type:
                    doc["contentType"] = found.content_type
                self._send(200, doc)

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                form = dict(parse_qsl(self.rfile.read(n).decode()))
                if urlsplit(self.path).path != f"/{vault.tenant}/oauth2/v2.0/token":
                    self._send(404, {"error": "not_found"})
                    return
                vault.token_requests += 1
                if (
                    form.get("client_id") != vault.client_id
                    or form.get("client_secret") != vault.client_secret
                ):
                    self._send(401, {"error": "invalid_client", "error_description": "AADSTS7000215"})
                    return
                if (
                    form.get("grant_type") != "client_credentials"
                    or VAULT_RESOURCE + "/.default" not in form.get("scope", "").split()
                ):
                    self._send(400, {"error": "invalid_scope", "error_description": "AADSTS70011"})
                    return
                token = secrets.token_urlsafe(24)
                vault.tokens.add(token)
                self._send(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

        cert = self.workdir / f"vault-{id(self)}.pem"
        cert.write_bytes(self.ca.server_pem("localhost"))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert)
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self.port = int(httpd.server_address[1])
        self._server = httpd
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
