"""One test harness per storage backend, so the conformance suite runs the same tests on each."""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portico.dr.storage import (
    AccountKey,
    BlobContainer,
    Credential,
    LocalAccounts,
    MemoryStorage,
    open_container,
)
from tests.support.azurite import AzuriteServer


def random_key() -> str:
    return base64.b64encode(os.urandom(64)).decode()


def unique_container(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


@dataclass
class StorageEnv:
    backend: str
    account: str
    key: str
    unknown_account: str = "nosuchaccount"
    memory: MemoryStorage | None = None
    local_root: Path | None = None
    azurite: AzuriteServer | None = None
    opened: list[BlobContainer] = field(default_factory=list)

    @property
    def credential(self) -> AccountKey:
        return AccountKey(self.account, self.key)

    def open(
        self,
        container: str,
        *,
        credential: Credential | None = None,
        account: str | None = None,
        block_size: int = 1024,
    ) -> BlobContainer:
        kwargs: dict[str, Any] = {}
        if self.azurite is not None:
            kwargs["endpoint_template"] = self.azurite.endpoint_template
        c = open_container(
            self.backend,
            account=account or self.account,
            container=container,
            credential=credential or self.credential,
            local_root=self.local_root,
            memory=self.memory,
            block_size=block_size,
            **kwargs,
        )
        self.opened.append(c)
        return c

    async def create_container(self, name: str) -> None:
        if self.backend == "memory":
            assert self.memory is not None
            self.memory.create_container(self.account, name)
        elif self.backend == "local":
            assert self.local_root is not None
            LocalAccounts(self.local_root).create_container(self.account, name)
        else:
            from azure.storage.blob.aio import ContainerClient

            assert self.azurite is not None
            from azure.core.pipeline.transport import AsyncioRequestsTransport

            async with ContainerClient(
                self.azurite.endpoint(self.account),
                name,
                credential={"account_name": self.account, "account_key": self.key},
                transport=AsyncioRequestsTransport(),
            ) as client:
                await client.create_container()

    async def close(self) -> None:
        for c in self.opened:
            await c.aclose()


def make_env(kind: str, tmp_path: Path, azurite: AzuriteServer | None) -> StorageEnv:
    if kind == "memory":
        store = MemoryStorage()
        key = store.create_account("portico1")
        return StorageEnv("memory", "portico1", key, memory=store)
    if kind == "local":
        root = tmp_path / "storage"
        key = LocalAccounts(root).create_account("portico1")
        return StorageEnv("local", "portico1", key, local_root=root)
    if kind == "azurite":
        assert azurite is not None
        return StorageEnv("azure", "portico1", azurite.key("portico1"), azurite=azurite)
    raise ValueError(kind)
