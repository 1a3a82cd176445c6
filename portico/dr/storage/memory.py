"""In-memory storage accounts, for tests. Same semantics as the other backends."""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from portico.dr.storage.base import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_CHUNK_SIZE,
    AccountAlreadyExists,
    AccountKey,
    AccountNotFound,
    AuthenticationFailed,
    BlobContainer,
    BlobInfo,
    BlobNotFound,
    BlobWriter,
    ContainerAlreadyExists,
    ContainerNotFound,
    Credential,
    LocalTrusted,
    StorageError,
    check_credential_account,
    validate_account_name,
    validate_blob_name,
    validate_container_name,
    validate_metadata,
)


@dataclass
class _Blob:
    data: bytes
    metadata: dict[str, str]
    last_modified: datetime
    etag: str

    def info(self, name: str) -> BlobInfo:
        return BlobInfo(name, len(self.data), dict(self.metadata), self.last_modified, self.etag)


@dataclass
class _Account:
    key: str
    containers: dict[str, dict[str, _Blob]] = field(default_factory=dict)


class MemoryStorage:
    """A set of storage accounts held in memory (one per test, or the process default)."""

    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}

    def create_account(self, name: str, key: str | None = None) -> str:
        validate_account_name(name)
        if name in self._accounts:
            raise AccountAlreadyExists(f"storage account {name!r} already exists")
        key = key or base64.b64encode(os.urandom(64)).decode()
        self._accounts[name] = _Account(key)
        return key

    def create_container(self, account: str, container: str) -> None:
        validate_container_name(container)
        acct = self._account(account)
        if container in acct.containers:
            raise ContainerAlreadyExists(f"container {container!r} already exists in account {account!r}")
        acct.containers[container] = {}

    def delete_container(self, account: str, container: str) -> None:
        acct = self._account(account)
        if acct.containers.pop(container, None) is None:
            raise ContainerNotFound(f"container {container!r} does not exist in storage account {account!r}")

    def _account(self, account: str) -> _Account:
        acct = self._accounts.get(account)
        if acct is None:
            raise AccountNotFound(f"storage account {account!r} does not exist")
        return acct

    def container(
        self, account: str, container: str, credential: Credential, *, block_size: int = DEFAULT_BLOCK_SIZE
    ) -> MemoryContainer:
        validate_account_name(account)
        validate_container_name(container)
        return MemoryContainer(self, account, container, credential, block_size=block_size)


DEFAULT_MEMORY_STORAGE = MemoryStorage()


class MemoryContainer(BlobContainer):
    backend = "memory"

    def __init__(
        self,
        storage: MemoryStorage,
        account: str,
        container: str,
        credential: Credential,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        check_credential_account(credential, account)
        self._storage = storage
        self.account = account
        self.container = container
        self._credential = credential
        self.block_size = block_size

    def _authorize(self) -> _Account:
        acct = self._storage._account(self.account)
        cred = self._credential
        if isinstance(cred, LocalTrusted):
            return acct
        if isinstance(cred, AccountKey):
            if hmac.compare_digest(cred.key.encode(), acct.key.encode()):
                return acct
            raise AuthenticationFailed(f"the access key for storage account {self.account!r} is not valid")
        raise AuthenticationFailed(f"storage account {self.account!r} accepts account keys only")

    def _blobs(self) -> dict[str, _Blob]:
        acct = self._authorize()
        blobs = acct.containers.get(self.container)
        if blobs is None:
            raise ContainerNotFound(
                f"container {self.container!r} does not exist in storage account {self.account!r}"
            )
        return blobs

    def _blob(self, name: str) -> _Blob:
        validate_blob_name(name)
        blob = self._blobs().get(name)
        if blob is None:
            raise BlobNotFound(f"blob {name!r} does not exist in container {self.container!r}")
        return blob

    async def exists(self) -> bool:
        return self.container in self._authorize().containers

    async def open_writer(self, name: str, metadata: Mapping[str, str] | None = None) -> BlobWriter:
        validate_blob_name(name)
        md = validate_metadata(metadata)
        self._blobs()
        return _MemoryWriter(self, name, md)

    async def get_info(self, name: str) -> BlobInfo:
        return self._blob(name).info(name)

    async def read_range(self, name: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be >= 0")
        return self._blob(name).data[offset : offset + length]

    async def iter_chunks(
        self, name: str, chunk_size: int = DEFAULT_CHUNK_SIZE, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        if chunk_size <= 0 or offset < 0:
            raise ValueError("chunk_size must be > 0 and offset >= 0")
        data = self._blob(name).data
        end = len(data) if length is None else min(len(data), offset + length)
        view = memoryview(data)
        for start in range(offset, end, chunk_size):
            yield bytes(view[start : min(end, start + chunk_size)])

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        blobs = self._blobs()
        for name in sorted(n for n in blobs if n.startswith(prefix)):
            blob = blobs.get(name)
            if blob is not None:
                yield blob.info(name)

    async def delete(self, name: str) -> None:
        self._blob(name)
        self._blobs().pop(name, None)

    async def set_metadata(self, name: str, metadata: Mapping[str, str]) -> None:
        md = validate_metadata(metadata)
        blob = self._blob(name)
        blob.metadata = md
        blob.etag = _etag()


def _etag() -> str:
    return f'"0x{secrets.token_hex(8).upper()}"'


class _MemoryWriter(BlobWriter):
    def __init__(self, container: MemoryContainer, name: str, metadata: dict[str, str]) -> None:
        self._container = container
        self.name = name
        self.metadata = metadata
        self._parts: list[bytes] = []
        self._state = "open"
        self._info: BlobInfo | None = None

    async def write(self, data: bytes) -> None:
        if self._state != "open":
            raise StorageError(f"writer for blob {self.name!r} is {self._state}")
        if data:
            self._parts.append(bytes(data))

    async def commit(self, metadata: Mapping[str, str] | None = None) -> BlobInfo:
        if self._state == "committed" and self._info is not None and metadata is None:
            return self._info  # idempotent
        if self._state != "open":
            raise StorageError(f"writer for blob {self.name!r} is {self._state}")
        md = validate_metadata(metadata) if metadata is not None else self.metadata
        try:
            blobs = self._container._blobs()
        except StorageError:
            await self.abort()
            raise
        blob = _Blob(b"".join(self._parts), md, datetime.now(UTC), _etag())
        blobs[self.name] = blob
        self._parts = []
        self._state = "committed"
        self._info = blob.info(self.name)
        return self._info

    async def abort(self) -> None:
        if self._state == "open":
            self._state = "aborted"
            self._parts = []
