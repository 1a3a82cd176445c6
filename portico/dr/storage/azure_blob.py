"""Azure Blob Storage (and Azurite) through the async Azure SDK (``azure.storage.blob.aio``).

Writers stage blocks of `block_size` bytes, up to `max_concurrency` uploads in flight, and commit
the block list (with the metadata) at the end; a blob smaller than one block is sent in a single
request. Staged but uncommitted blocks are invisible, and Azure discards them after a week.

Reads of a whole blob (`iter_chunks`) fetch ranges concurrently, all pinned to the blob's ETag,
and yield them in order.

Transport: aiohttp when it is installed (the SDK's default), otherwise azure-core's
``AsyncioRequestsTransport`` (requests in worker threads), so no extra dependency is needed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobBlock, BlobType
from azure.storage.blob.aio import ContainerClient, ExponentialRetry

from portico.dr.storage.base import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_ENDPOINT_TEMPLATE,
    AccountKey,
    AccountNotFound,
    AuthenticationFailed,
    BlobChanged,
    BlobContainer,
    BlobInfo,
    BlobNotFound,
    BlobWriter,
    ContainerNotFound,
    Credential,
    InvalidName,
    LocalTrusted,
    SasToken,
    StorageError,
    TokenCredentialAuth,
    check_credential_account,
    validate_account_name,
    validate_blob_name,
    validate_container_name,
    validate_metadata,
)

T = TypeVar("T")

_AUTH_CODES = {
    "AuthenticationFailed",
    "AuthorizationFailure",
    "AuthorizationPermissionMismatch",
    "AuthorizationResourceTypeMismatch",
    "AuthorizationProtocolMismatch",
    "AuthorizationSourceIPMismatch",
    "AuthorizationServiceMismatch",
    "InvalidAuthenticationInfo",
    "NoAuthenticationInformation",
    "InsufficientAccountPermissions",
    "KeyBasedAuthenticationNotPermitted",
}
_NAME_CODES = {"OutOfRangeInput", "InvalidResourceName", "InvalidUri"}
_ACCOUNT_CODES = {"ResourceNotFound", "AccountIsDisabled"}


def _code(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def map_azure_error(
    exc: BaseException, *, account: str, container: str, blob: str | None = None
) -> StorageError:
    """Translate an Azure SDK exception into a secret-free `StorageError`."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, ServiceRequestError):
        return AccountNotFound(
            f"storage account endpoint unreachable for account {account!r}: {type(exc).__name__}"
        )
    if isinstance(exc, ServiceResponseError):
        return StorageError(f"the storage service of account {account!r} closed the connection or timed out")
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        code = _code(exc)
        where = f"storage account {account!r}"
        if code == "ContainerNotFound":
            return ContainerNotFound(
                f"container {container!r} does not exist in {where}", status=status, error_code=code
            )
        if code == "BlobNotFound":
            return BlobNotFound(
                f"blob {blob!r} does not exist in container {container!r}", status=status, error_code=code
            )
        if code in _ACCOUNT_CODES:
            return AccountNotFound(f"{where} does not exist or is disabled", status=status, error_code=code)
        if code == "ConditionNotMet":
            return BlobChanged(
                f"blob {blob!r} was modified while it was being read", status=status, error_code=code
            )
        if status in (401, 403) or code in _AUTH_CODES or isinstance(exc, ClientAuthenticationError):
            if code == "AuthorizationPermissionMismatch":
                message = f"the credential for {where} does not allow this operation"
            elif status is None:
                message = f"could not obtain a token for {where}"
            else:
                message = f"{where} refused the credential (wrong key, SAS token or identity)"
            return AuthenticationFailed(
                f"{message} ({code or status})", status=status, error_code=code or None
            )
        if code in _NAME_CODES:
            return InvalidName(
                f"{where} refused the container or blob name ({code})", status=status, error_code=code
            )
        return StorageError(
            f"storage request to {where} failed: HTTP {status} {code}".rstrip(),
            status=status,
            error_code=code or None,
        )
    return StorageError(f"storage request to account {account!r} failed: {type(exc).__name__}")


class _AsyncTokenAdapter:
    """Lets a synchronous azure-identity credential serve the async SDK."""

    def __init__(self, credential: Any) -> None:
        self._credential = credential

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._credential.get_token, *scopes, **kwargs)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> _AsyncTokenAdapter:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None


def _sdk_credential(credential: Credential, account: str) -> Any:
    check_credential_account(credential, account)
    if isinstance(credential, AccountKey):
        try:
            base64.b64decode(credential.key, validate=True)
        except (binascii.Error, ValueError):
            raise AuthenticationFailed(
                f"the access key for storage account {account!r} is not valid base64"
            ) from None
        return AzureNamedKeyCredential(account, credential.key)
    if isinstance(credential, SasToken):
        token = credential.token.lstrip("?")
        if not token:
            raise AuthenticationFailed(f"the SAS token for storage account {account!r} is empty")
        return AzureSasCredential(token)
    if isinstance(credential, TokenCredentialAuth):
        cred = credential.credential
        if asyncio.iscoroutinefunction(getattr(cred, "get_token", None)):
            return cred
        return _AsyncTokenAdapter(cred)
    if isinstance(credential, LocalTrusted):
        raise AuthenticationFailed("trusted local access is only available for local storage accounts")
    raise TypeError(f"unsupported credential type {type(credential).__name__}")


_DATA_BLOCK = 1024 * 1024
"""Bytes per socket read: the default 4 KiB costs a GIL hand-off per read with the requests
transport (slow when the event loop thread is busy decoding) and Python overhead with aiohttp."""


def _transport(kind: str) -> Any:
    if kind == "aiohttp":
        return None
    if kind == "requests":
        from azure.core.pipeline.transport import AsyncioRequestsTransport

        return AsyncioRequestsTransport(connection_data_block_size=_DATA_BLOCK)
    if kind != "auto":
        raise ValueError(f"unknown transport {kind!r}")
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return _transport("requests")
    return None


class AzureBlobContainer(BlobContainer):
    backend = "azure"

    def __init__(
        self,
        *,
        account: str,
        container: str,
        credential: Credential,
        endpoint_template: str = DEFAULT_ENDPOINT_TEMPLATE,
        block_size: int = DEFAULT_BLOCK_SIZE,
        max_concurrency: int = 4,
        transport: str = "auto",
        retry_total: int = 3,
    ) -> None:
        self.account = validate_account_name(account)
        self.container = validate_container_name(container)
        self.block_size = block_size
        self.max_concurrency = max(1, max_concurrency)
        self.endpoint = endpoint_template.format(account=account).rstrip("/")
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("endpoint_template must be an http(s) URL without a query string")
        kwargs: dict[str, Any] = {
            "retry_policy": ExponentialRetry(
                initial_backoff=1,
                increment_base=2,
                retry_total=retry_total,
                random_jitter_range=1,
                retry_connect=1,
            ),
            "max_single_put_size": max(block_size, 1024 * 1024),
            "connection_data_block_size": _DATA_BLOCK,
            "max_block_size": block_size,
        }
        transport_obj = _transport(transport)
        if transport_obj is not None:
            kwargs["transport"] = transport_obj
        sdk_credential = _sdk_credential(credential, account)
        try:
            self._client = ContainerClient(self.endpoint, self.container, credential=sdk_credential, **kwargs)
        except ValueError as e:
            if isinstance(credential, TokenCredentialAuth) and parts.scheme != "https":
                raise AuthenticationFailed(
                    f"token credentials need an https endpoint for storage account {account!r}"
                ) from None
            raise ValueError(f"cannot use the storage endpoint of account {account!r}: {e}") from None
        self._closed = False

    def describe(self) -> str:
        return f"azure://{self.account}/{self.container}"

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.close()

    async def _call(self, fn: Callable[[], Awaitable[T]], blob: str | None = None) -> T:
        try:
            return await fn()
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as e:
            raise map_azure_error(e, account=self.account, container=self.container, blob=blob) from None

    async def exists(self) -> bool:
        try:
            await self._call(self._client.get_container_properties)
        except ContainerNotFound:
            return False
        return True

    async def open_writer(self, name: str, metadata: Mapping[str, str] | None = None) -> BlobWriter:
        validate_blob_name(name)
        md = validate_metadata(metadata)
        try:
            await self._call(self._client.get_container_properties)
        except AuthenticationFailed as e:
            # A SAS may allow writing blobs but not reading the container's properties.
            if e.error_code != "AuthorizationPermissionMismatch":
                raise
        return _AzureWriter(self, name, md)

    async def get_info(self, name: str) -> BlobInfo:
        validate_blob_name(name)
        props = await self._call(self._client.get_blob_client(name).get_blob_properties, name)
        return BlobInfo(
            name=name,
            size=int(props.size),
            metadata=dict(props.metadata or {}),
            last_modified=props.last_modified or datetime.now(UTC),
            etag=props.etag or "",
        )

    async def _download(self, name: str, offset: int, length: int, etag: str | None = None) -> bytes:
        blob = self._client.get_blob_client(name)
        kwargs: dict[str, Any] = {"max_concurrency": 1}
        if etag:
            kwargs.update(etag=etag, match_condition=MatchConditions.IfNotModified)

        async def fetch() -> bytes:
            downloader = await blob.download_blob(offset=offset, length=length, **kwargs)
            data: bytes = await downloader.readall()
            return data

        return await self._call(fetch, name)

    async def read_range(self, name: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be >= 0")
        validate_blob_name(name)
        if length == 0:
            await self.get_info(name)
            return b""
        try:
            return await self._download(name, offset, length)
        except StorageError as e:
            if e.error_code == "InvalidRange":  # at or past the end of the blob
                await self.get_info(name)
                return b""
            raise

    async def iter_chunks(
        self, name: str, chunk_size: int = DEFAULT_CHUNK_SIZE, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        if chunk_size <= 0 or offset < 0:
            raise ValueError("chunk_size must be > 0 and offset >= 0")
        info = await self.get_info(name)
        end = info.size if length is None else min(info.size, offset + length)
        starts = iter(range(offset, end, chunk_size))
        pending: list[asyncio.Task[bytes]] = []

        def schedule() -> None:
            start = next(starts, None)
            if start is not None:
                n = min(chunk_size, end - start)
                pending.append(asyncio.ensure_future(self._download(name, start, n, info.etag)))

        try:
            for _ in range(self.max_concurrency):
                schedule()
            while pending:
                chunk = await pending.pop(0)
                schedule()
                yield chunk
        finally:
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(BaseException):
                    await task

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        pages = self._client.list_blobs(name_starts_with=prefix or None, include=["metadata"])
        try:
            async for item in pages:
                yield BlobInfo(
                    name=item.name,
                    size=int(item.size or 0),
                    metadata=dict(item.metadata or {}),
                    last_modified=item.last_modified or datetime.now(UTC),
                    etag=item.etag or "",
                )
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as e:
            raise map_azure_error(e, account=self.account, container=self.container) from None

    async def delete(self, name: str) -> None:
        validate_blob_name(name)
        blob = self._client.get_blob_client(name)
        await self._call(lambda: blob.delete_blob(delete_snapshots="include"), name)

    async def set_metadata(self, name: str, metadata: Mapping[str, str]) -> None:
        validate_blob_name(name)
        md = validate_metadata(metadata)
        blob = self._client.get_blob_client(name)
        await self._call(lambda: blob.set_blob_metadata(md), name)


class _AzureWriter(BlobWriter):
    def __init__(self, container: AzureBlobContainer, name: str, metadata: dict[str, str]) -> None:
        self._container = container
        self._blob = container._client.get_blob_client(name)
        self.name = name
        self.metadata = metadata
        self._id = uuid.uuid4().hex
        self._block_ids: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._buf: list[bytes] = []
        self._buffered = 0
        self._size = 0
        self._state = "open"
        self._info: BlobInfo | None = None

    def _check_open(self) -> None:
        if self._state != "open":
            raise StorageError(f"writer for blob {self.name!r} is {self._state}")

    async def _stage_one(self, block_id: str, data: bytes) -> None:
        await self._container._call(
            lambda: self._blob.stage_block(block_id, data, length=len(data)), self.name
        )

    async def _reap(self, wait_for_room: bool) -> None:
        """Raise the first upload failure; with `wait_for_room`, wait until a slot is free."""
        while self._tasks:
            done = [t for t in self._tasks if t.done()]
            for t in done:
                self._tasks.remove(t)
                t.result()
            if not wait_for_room or len(self._tasks) < self._container.max_concurrency:
                return
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)

    async def _stage_buffer(self) -> None:
        data = b"".join(self._buf)
        self._buf, self._buffered = [], 0
        await self._reap(wait_for_room=True)
        block_id = base64.b64encode(f"{self._id}{len(self._block_ids):010d}".encode()).decode()
        self._block_ids.append(block_id)
        self._tasks.append(asyncio.ensure_future(self._stage_one(block_id, data)))

    async def write(self, data: bytes) -> None:
        self._check_open()
        if not data:
            return
        self._buf.append(bytes(data))
        self._buffered += len(data)
        self._size += len(data)
        try:
            if self._buffered >= self._container.block_size:
                await self._stage_buffer()
            else:
                await self._reap(wait_for_room=False)
        except BaseException:
            await self.abort()
            raise

    async def commit(self, metadata: Mapping[str, str] | None = None) -> BlobInfo:
        if self._state == "committed" and self._info is not None and metadata is None:
            return self._info  # idempotent
        self._check_open()
        md = validate_metadata(metadata) if metadata is not None else self.metadata
        try:
            if not self._block_ids:
                data = b"".join(self._buf)
                self._buf = []
                resp = await self._container._call(
                    lambda: self._blob.upload_blob(
                        data, blob_type=BlobType.BLOCKBLOB, length=len(data), overwrite=True, metadata=md
                    ),
                    self.name,
                )
            else:
                if self._buf:
                    await self._stage_buffer()
                while self._tasks:
                    await self._reap(wait_for_room=False)
                    if self._tasks:
                        await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                resp = await self._container._call(
                    lambda: self._blob.commit_block_list(
                        [BlobBlock(block_id=b) for b in self._block_ids], metadata=md
                    ),
                    self.name,
                )
        except BaseException:
            await self.abort()
            raise
        self._state = "committed"
        self._info = BlobInfo(
            name=self.name,
            size=self._size,
            metadata=dict(md),
            last_modified=resp.get("last_modified") or datetime.now(UTC),
            etag=resp.get("etag") or "",
        )
        return self._info

    async def abort(self) -> None:
        if self._state != "open":
            return
        self._state = "aborted"
        self._buf = []
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []
