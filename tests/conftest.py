"""Shared fixtures: real Portico servers over HTTPS on SQLite and PostgreSQL, and the Azure SDK."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.azurite import azurite  # noqa: F401 - session fixture, one Azurite for the whole run
from tests.support.postgres import create_database, postgres_cluster
from tests.support.server import PorticoServer, free_port

_db_counter = itertools.count(1)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with postgres_cluster() as url:
        yield url


@pytest.fixture(scope="session")
def server_factory(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[..., PorticoServer]]:
    """`server_factory(db="sqlite"|"postgres", **env)` starts a fresh server with its own database."""
    started: list[PorticoServer] = []

    def make(
        db: str = "sqlite",
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        database_url: str | None = None,
    ) -> PorticoServer:
        # Gateway listeners are off unless a test asks for them: fixed default ports would collide.
        extra = {"PORTICO_GATEWAY_PORT": "0", "PORTICO_GATEWAY_HTTPS_PORT": "0", **(env or {})}
        if database_url is not None:
            extra["PORTICO_DATABASE_URL"] = database_url
        elif db == "postgres":
            pg = request.getfixturevalue("pg_url")
            extra["PORTICO_DATABASE_URL"] = create_database(pg, f"portico_{next(_db_counter)}")
        server = PorticoServer(data_dir or tmp_path_factory.mktemp("portico"), free_port(), extra)
        started.append(server)
        return server.start()

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def portico(request: pytest.FixtureRequest, server_factory: Callable[..., PorticoServer]) -> PorticoServer:
    """One server per database backend, shared by the tests of a session."""
    return server_factory(db=request.param)


def sdk_client(
    server: PorticoServer,
    subscription_id: str = "00000000-0000-0000-0000-000000000001",
    client_id: str | None = None,
    secret: str | None = None,
) -> Any:
    from azure.identity import ClientSecretCredential
    from azure.mgmt.apimanagement import ApiManagementClient

    creds = server.admin()
    credential = ClientSecretCredential(
        server.tenant,
        client_id or creds["client_id"],
        secret or creds["client_secret"],
        authority=server.url,
        disable_instance_discovery=True,
        connection_verify=server.ca,
    )
    return ApiManagementClient(
        credential, subscription_id, base_url=server.url, connection_verify=server.ca, polling_interval=0.2
    )
