"""A tiny OAuth 2.0 authorization server for tests of credential connections: a token endpoint
(client credentials, authorization code with optional PKCE, refresh token) and an authorization
endpoint that consents at once (redirects back with a code). Threaded http.server on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit


@dataclass
class FakeIdp:
    client_id: str = "backend-app"
    client_secret: str = "idp-s3cret-value"
    expires_in: int = 3600
    url: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)  # token requests' forms
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    _n: Any = field(default_factory=lambda: itertools.count(1))
    _server: ThreadingHTTPServer | None = None

    def grants(self) -> list[str]:
        return [r.get("grant_type", "") for r in self.requests]

    def start(self) -> FakeIdp:
        idp = self

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
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                q = dict(parse_qsl(url.query))
                if not url.path.endswith("/authorize"):
                    self._send(404, {"error": "not_found"})
                    return
                idp.authorize_requests.append(q)
                if q.get("client_id") != idp.client_id or q.get("response_type") != "code":
                    back = {"error": "unauthorized_client", "state": q.get("state", "")}
                else:
                    code = f"code-{next(idp._n)}"
                    idp.codes[code] = q
                    back = {"code": code, "state": q.get("state", "")}
                self._send(302, None, {"location": f"{q.get('redirect_uri', '')}?{urlencode(back)}"})

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                form = dict(parse_qsl(self.rfile.read(n).decode()))
                idp.requests.append({**form, "path": urlsplit(self.path).path})
                if not urlsplit(self.path).path.endswith("/token"):
                    self._send(404, {"error": "not_found"})
                    return
                if form.get("client_id") != idp.client_id or form.get("client_secret") != idp.client_secret:
                    self._send(
                        401,
                        {
                            "error": "invalid_client",
                            # as some providers do: the request's secret echoed back
                            "error_description": f"client secret '{form.get('client_secret')}' is wrong",
                        },
                    )
                    return
                grant = form.get("grant_type")
                n_token = next(idp._n)
                doc: dict[str, Any] = {
                    "access_token": f"at-{grant}-{n_token}",
                    "token_type": "Bearer",
                    "expires_in": idp.expires_in,
                    "scope": form.get("scope", ""),
                }
                if grant == "client_credentials":
                    self._send(200, doc)
                    return
                if grant == "authorization_code":
                    asked = idp.codes.pop(form.get("code", ""), None)
                    if asked is None or asked.get("redirect_uri") != form.get("redirect_uri"):
                        self._send(400, {"error": "invalid_grant"})
                        return
                    if asked.get("code_challenge"):
                        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != asked["code_challenge"]:
                            self._send(400, {"error": "invalid_grant", "error_description": "PKCE"})
                            return
                elif grant == "refresh_token":
                    if form.get("refresh_token") not in idp.refresh_tokens:
                        self._send(400, {"error": "invalid_grant"})
                        return
                    idp.refresh_tokens.discard(form["refresh_token"])  # rotating refresh tokens
                else:
                    self._send(400, {"error": "unsupported_grant_type"})
                    return
                doc["refresh_token"] = f"rt-{n_token}"
                idp.refresh_tokens.add(doc["refresh_token"])
                self._send(200, doc)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
