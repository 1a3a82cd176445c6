"""Fixtures of the end-to-end control-plane tests: one resource group per backend server, the real
Azure SDK client (ClientSecretCredential + ApiManagementClient), a bearer-token httpx client, and a
fresh service per test (service names are unique per Portico instance)."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import sdk_client
from tests.support.server import PorticoServer

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
API_VERSION = "2024-05-01"
RG_API_VERSION = "2022-09-01"  # what azure-mgmt-resource sends for resource groups


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@dataclass
class Env:
    server: PorticoServer
    client: Any  # azure.mgmt.apimanagement.ApiManagementClient
    http: httpx.Client  # bearer token of the bootstrap admin (Owner at "/")
    rg: str
    sub: str = SUBSCRIPTION

    def rg_path(self, rg: str | None = None) -> str:
        return f"/subscriptions/{self.sub}/resourceGroups/{rg or self.rg}"

    def svc_path(self, name: str, rg: str | None = None) -> str:
        return f"{self.rg_path(rg)}/providers/Microsoft.ApiManagement/service/{name}"

    def create_group(self, name: str, location: str = "westeurope") -> httpx.Response:
        r = self.http.put(f"{self.rg_path(name)}?api-version={RG_API_VERSION}", json={"location": location})
        assert r.status_code in (200, 201), r.text
        return r

    def create_service(
        self, name: str | None = None, *, rg: str | None = None, sku: str = "Developer", capacity: int = 1
    ) -> str:
        from azure.mgmt.apimanagement.models import (
            ApiManagementServiceResource,
            ApiManagementServiceSkuProperties,
        )

        name = name or unique("svc")
        self.client.api_management_service.begin_create_or_update(
            rg or self.rg,
            name,
            ApiManagementServiceResource(
                location="West Europe",
                sku=ApiManagementServiceSkuProperties(name=sku, capacity=capacity),
                publisher_email="ops@contoso.example",
                publisher_name="Contoso",
            ),
        ).result()
        return name


@pytest.fixture(scope="session")
def env(portico: PorticoServer) -> Iterator[Env]:
    token = portico.token()
    http = httpx.Client(
        base_url=portico.url,
        verify=ssl.create_default_context(cafile=portico.ca),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    e = Env(portico, sdk_client(portico), http, unique("rg"))
    e.create_group(e.rg)
    yield e
    http.close()
    e.client.close()


@pytest.fixture
def svc(env: Env) -> str:
    """A fresh Developer-tier service in the session's resource group."""
    return env.create_service()
