"""Fixtures of the backup/restore end-to-end tests: Azurite, and two Portico "regions"."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from tests.support.azurite import AzuriteServer
from tests.support.server import PorticoServer


def dr_env(az: AzuriteServer, **extra: str) -> dict[str, str]:
    return {
        "PORTICO_STORAGE_BACKEND": "azure",
        "PORTICO_BLOB_ENDPOINT_TEMPLATE": az.endpoint_template,
        "PORTICO_OPERATION_LEASE_SECONDS": "2",
        **extra,
    }


@pytest.fixture(scope="package")
def region_a(
    server_factory: Callable[..., PorticoServer],
    azurite: AzuriteServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> PorticoServer:
    # While `region_a.hold_restores` exists, restores on this server pause while loading.
    hold = tmp_path_factory.mktemp("holds") / "hold-restores"
    server = server_factory(db="sqlite", env=dr_env(azurite, PORTICO_PAUSEPOINTS=f"restore.load={hold}"))
    server.hold_restores = hold  # type: ignore[attr-defined]
    return server


@pytest.fixture(scope="package")
def region_b(server_factory: Callable[..., PorticoServer], azurite: AzuriteServer) -> PorticoServer:
    """The standby 'region': another Portico instance with its own (PostgreSQL) database."""
    return server_factory(db="postgres", env=dr_env(azurite))


@pytest.fixture(scope="package")
def storage(azurite: AzuriteServer) -> Iterator[tuple[str, str, Any]]:
    account = azurite.account_names[0]
    client = BlobServiceClient(
        azurite.endpoint(account), credential={"account_name": account, "account_key": azurite.key(account)}
    )
    client.create_container("backups")
    yield account, azurite.key(account), client
    client.close()
