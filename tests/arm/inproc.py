"""An in-process Portico (ASGI app + lifespan, SQLite in a temp dir) with an admin bearer token, for
fast protocol and validation tests that need no network, TLS or subprocess."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from portico.identity.apps import ensure_bootstrap_admin
from portico.server.app import create_app
from portico.settings import Settings

BASE = "https://testserver"
SUB = "00000000-0000-0000-0000-0000000000aa"
API = "2024-05-01"
RG_API = "2022-09-01"


class InProc:
    def __init__(self, settings: Settings, app: Any, client: httpx.AsyncClient, token: str) -> None:
        self.settings = settings
        self.app = app
        self.client = client
        self.token = token
        self.rt = app.state.runtime

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def rg_path(self, rg: str) -> str:
        return f"/subscriptions/{SUB}/resourceGroups/{rg}"

    def svc_path(self, rg: str, svc: str) -> str:
        return f"{self.rg_path(rg)}/providers/Microsoft.ApiManagement/service/{svc}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        api_version: str | None = API,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> httpx.Response:
        params = dict(kw.pop("params", {}) or {})
        if api_version is not None and "api-version" not in path:
            params.setdefault("api-version", api_version)
        return await self.client.request(
            method, path, params=params, headers={**self.auth, **(headers or {})}, **kw
        )

    async def put(self, path: str, body: Any, **kw: Any) -> httpx.Response:
        return await self.request("PUT", path, json=body, **kw)

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def group(self, rg: str | None = None) -> str:
        rg = rg or f"rg{uuid.uuid4().hex[:8]}"
        r = await self.put(self.rg_path(rg), {"location": "westeurope"}, api_version=RG_API)
        assert r.status_code in (200, 201), r.text
        return rg

    async def service(
        self, rg: str, name: str | None = None, *, sku: str = "Developer", capacity: int = 1, **props: Any
    ) -> str:
        name = name or f"svc{uuid.uuid4().hex[:10]}"
        body = {
            "location": "westeurope",
            "sku": {"name": sku, "capacity": capacity},
            "properties": {"publisherEmail": "ops@contoso.example", "publisherName": "Contoso", **props},
        }
        r = await self.put(self.svc_path(rg, name), body)
        assert r.status_code == 201, r.text
        return name


@asynccontextmanager
async def inproc(data_dir: Path, **settings: Any) -> AsyncIterator[InProc]:
    settings.setdefault("subscriptions", SUB)  # management routes answer only under offered subscriptions
    s = Settings(data_dir=data_dir, public_url=BASE, **settings)
    app = create_app(s)
    async with app.router.lifespan_context(app):
        path = await ensure_bootstrap_admin(app.state.runtime.db, data_dir)
        assert path is not None
        creds = json.loads(path.read_text())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            r = await client.post(
                f"/{s.tenant_id}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": creds["client_id"],
                    "client_secret": creds["client_secret"],
                    "scope": "https://management.azure.com/.default",
                },
            )
            r.raise_for_status()
            yield InProc(s, app, client, r.json()["access_token"])


def assert_arm_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is an ARM error body with this status (and code)."""
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert isinstance(err["code"], str) and err["code"] and isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return dict(err)
