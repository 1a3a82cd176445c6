"""A trusted outside OIDC issuer served over HTTP on 127.0.0.1, for servers run as processes:
discovery document + JWKS, and tokens signed with its key carrying any claims."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

AUDIENCE = "api://portico"


class OutsideIssuer:
    def __init__(self, port: int) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "outside-1"})
        self.issuer = f"http://127.0.0.1:{port}/tenant-x/v2.0"
        self.jwks_uri = f"http://127.0.0.1:{port}/keys"

    @property
    def trusted_issuers(self) -> str:
        """The PORTICO_TRUSTED_ISSUERS entry that trusts this issuer."""
        return f"{self.issuer}|{AUDIENCE}"

    def token(self, oid: str, **over: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": oid,
            "oid": oid,
            "tid": "tenant-x",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        }
        claims.update(over)
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key, algorithms=["RS256"])

    def documents(self) -> dict[str, Any]:
        return {
            "/tenant-x/v2.0/.well-known/openid-configuration": {
                "issuer": self.issuer,
                "jwks_uri": self.jwks_uri,
            },
            "/keys": {"keys": [{**self.key.as_dict(private=False), "use": "sig"}]},
        }


@contextmanager
def outside_issuer() -> Iterator[OutsideIssuer]:
    holder: dict[str, OutsideIssuer] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            doc = holder["idp"].documents().get(self.path)
            body = json.dumps(doc).encode()
            self.send_response(200 if doc is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["idp"] = OutsideIssuer(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["idp"]
    finally:
        httpd.shutdown()
        httpd.server_close()
