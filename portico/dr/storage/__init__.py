"""Blob storage backends for backups: Azure Blob Storage, local accounts and memory.

Open one container with `open_container`; see `base` for the interface and the errors.
"""

from __future__ import annotations

from pathlib import Path

from portico.dr.storage.azure_blob import AzureBlobContainer
from portico.dr.storage.base import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_ENDPOINT_TEMPLATE,
    AccountAlreadyExists,
    AccountKey,
    AccountNotFound,
    AuthenticationFailed,
    BlobChanged,
    BlobContainer,
    BlobInfo,
    BlobNotFound,
    BlobWriter,
    ContainerAlreadyExists,
    ContainerNotEmpty,
    ContainerNotFound,
    Credential,
    InvalidMetadata,
    InvalidName,
    LocalTrusted,
    SasToken,
    StorageError,
    TokenCredentialAuth,
    validate_account_name,
    validate_blob_name,
    validate_container_name,
    validate_metadata,
)
from portico.dr.storage.local import LocalContainer
from portico.dr.storage.local_accounts import LocalAccounts
from portico.dr.storage.memory import DEFAULT_MEMORY_STORAGE, MemoryContainer, MemoryStorage

BACKENDS = ("azure", "local", "memory")

__all__ = [
    "BACKENDS",
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_ENDPOINT_TEMPLATE",
    "AccountAlreadyExists",
    "AccountKey",
    "AccountNotFound",
    "AuthenticationFailed",
    "AzureBlobContainer",
    "BlobChanged",
    "BlobContainer",
    "BlobInfo",
    "BlobNotFound",
    "BlobWriter",
    "ContainerAlreadyExists",
    "ContainerNotEmpty",
    "ContainerNotFound",
    "Credential",
    "InvalidMetadata",
    "InvalidName",
    "LocalAccounts",
    "LocalContainer",
    "LocalTrusted",
    "MemoryContainer",
    "MemoryStorage",
    "SasToken",
    "StorageError",
    "TokenCredentialAuth",
    "open_container",
    "validate_account_name",
    "validate_blob_name",
    "validate_container_name",
    "validate_metadata",
]


def open_container(
    backend: str,
    *,
    account: str,
    container: str,
    credential: Credential,
    endpoint_template: str = DEFAULT_ENDPOINT_TEMPLATE,
    local_root: Path | None = None,
    memory: MemoryStorage | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    max_concurrency: int = 4,
) -> BlobContainer:
    """Open one container of one storage account (no I/O happens until the first call).

    `backend` is ``"azure"`` (Azure Blob Storage or Azurite at `endpoint_template`), ``"local"``
    (accounts under `local_root`, normally ``data_dir / "storage"``) or ``"memory"`` (`memory`, or
    the process-wide default store). Raises `InvalidName` for a bad account or container name.
    Close the result (``async with`` or `aclose()`).
    """
    validate_account_name(account)
    validate_container_name(container)
    if backend == "azure":
        return AzureBlobContainer(
            account=account,
            container=container,
            credential=credential,
            endpoint_template=endpoint_template,
            block_size=block_size,
            max_concurrency=max_concurrency,
        )
    if backend == "local":
        if local_root is None:
            raise ValueError("the local storage backend needs local_root (the server's data_dir / 'storage')")
        return LocalContainer(
            LocalAccounts(local_root), account, container, credential, block_size=block_size
        )
    if backend == "memory":
        store = memory if memory is not None else DEFAULT_MEMORY_STORAGE
        return store.container(account, container, credential, block_size=block_size)
    raise ValueError(f"unknown storage backend {backend!r}; expected one of {', '.join(BACKENDS)}")
