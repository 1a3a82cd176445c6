"""Azure-only behaviour of the storage backend, against Azurite."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from portico.dr.storage import (
    AccountKey,
    AccountNotFound,
    AuthenticationFailed,
    SasToken,
    TokenCredentialAuth,
    open_container,
)
from portico.dr.storage.azure_blob import AzureBlobContainer
from tests.dr.storage_envs import make_env, unique_container
from tests.support.azurite import AzuriteServer

pytestmark = pytest.mark.slow


async def _container(azurite: AzuriteServer, tmp_path: Any) -> str:
    env = make_env("azurite", tmp_path, azurite)
    name = unique_container()
    await env.create_container(name)
    return name


async def test_unreachable_endpoint_is_account_not_found_and_fast(azurite: AzuriteServer) -> None:
    key = azurite.key("portico1")
    async with open_container(
        "azure",
        account="portico1",
        container="backups",
        credential=AccountKey("portico1", key),
        endpoint_template="http://127.0.0.1:9/{account}",
    ) as c:
        start = time.monotonic()
        with pytest.raises(AccountNotFound, match="unreachable") as info:
            await c.exists()
        assert time.monotonic() - start < 10
        assert key not in str(info.value) and key not in repr(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_sas_token(azurite: AzuriteServer, tmp_path: Any) -> None:
    name = await _container(azurite, tmp_path)
    sas = generate_container_sas(
        "portico1",
        name,
        account_key=azurite.key("portico1"),
        permission=ContainerSasPermissions(read=True, write=True, list=True, delete=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    async with open_container(
        "azure", account="portico1", container=name, credential=SasToken("portico1", "?" + sas),
        endpoint_template=azurite.endpoint_template,
    ) as c:  # fmt: skip
        w = await c.open_writer("via-sas", {"a": "b"})
        await w.write(b"hello")
        await w.commit()
        assert (await c.get_info("via-sas")).metadata == {"a": "b"}
        assert [i.name async for i in c.list()] == ["via-sas"]
    bad = sas.replace("sig=", "sig=AAAA")
    async with open_container(
        "azure", account="portico1", container=name, credential=SasToken("portico1", bad),
        endpoint_template=azurite.endpoint_template,
    ) as c:  # fmt: skip
        with pytest.raises(AuthenticationFailed) as info:
            await c.get_info("via-sas")
        assert "sig=" not in str(info.value) and bad not in str(info.value)


async def test_token_credential_needs_https() -> None:
    class Cred:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken("token", int(time.time()) + 3600)

    with pytest.raises(AuthenticationFailed, match="https"):
        open_container(
            "azure", account="portico1", container="backups", credential=TokenCredentialAuth("portico1", Cred()),
            endpoint_template="http://127.0.0.1:9/{account}",
        )  # fmt: skip
    # over https a sync credential is adapted to the async SDK
    c = open_container(
        "azure", account="portico1", container="backups", credential=TokenCredentialAuth("portico1", Cred())
    )
    await c.aclose()


async def test_not_base64_key() -> None:
    with pytest.raises(AuthenticationFailed, match="base64"):
        open_container(
            "azure", account="portico1", container="backups", credential=AccountKey("portico1", "not base64!")
        )


@pytest.mark.parametrize("transport", ["requests", "auto"])
async def test_large_blob_concurrent_blocks(azurite: AzuriteServer, tmp_path: Any, transport: str) -> None:
    name = await _container(azurite, tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 12345)
    async with AzureBlobContainer(
        account="portico1", container=name, credential=azurite.credential("portico1"),
        endpoint_template=azurite.endpoint_template, block_size=256 * 1024, max_concurrency=4, transport=transport,
    ) as c:  # fmt: skip
        w = await c.open_writer("big")
        for i in range(0, len(data), 100_000):
            await w.write(data[i : i + 100_000])
        info = await w.commit({"k": "v"})
        assert info.size == len(data)
        chunks = [chunk async for chunk in c.iter_chunks("big", 300_000)]
        assert b"".join(chunks) == data and max(map(len, chunks)) == 300_000
        assert await c.read_range("big", 1_000_000, 10) == data[1_000_000:1_000_010]


async def test_blob_replaced_while_reading(azurite: AzuriteServer, tmp_path: Any) -> None:
    from portico.dr.storage import BlobChanged

    name = await _container(azurite, tmp_path)
    async with AzureBlobContainer(
        account="portico1", container=name, credential=azurite.credential("portico1"),
        endpoint_template=azurite.endpoint_template, max_concurrency=1,
    ) as c:  # fmt: skip
        w = await c.open_writer("b")
        await w.write(os.urandom(50_000))
        await w.commit()
        it = c.iter_chunks("b", 10_000)
        await it.__anext__()  # type: ignore[attr-defined]
        w = await c.open_writer("b")
        await w.write(os.urandom(50_000))
        await w.commit()
        with pytest.raises(BlobChanged):
            async for _ in it:
                pass
