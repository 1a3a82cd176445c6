"""The storage-backend interface: one container of one storage account, as blobs.

Three implementations live beside this module: `memory` (tests), `local` (storage accounts
emulated under the server's data directory) and `azure_blob` (Azure Blob Storage, or Azurite).
They share the semantics pinned down by ``tests/dr/test_storage_conformance.py``:

* a blob becomes visible (to `get_info`, `list`, reads) only when its writer commits, and it is
  never visible half-written; an aborted or abandoned writer leaves nothing behind that a reader
  can see;
* writes are streamed: a writer holds at most a few blocks in memory, whatever the blob's size;
* every failure surfaces as a `StorageError` subclass whose message says what went wrong and
  never contains a key, a SAS signature or a token.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
"""Bytes a writer buffers before it stages a block (Azure) or writes to its temporary file (local)."""

DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
"""Size of the chunks `iter_chunks` yields by default."""

MAX_BLOB_NAME_LENGTH = 1024

DEFAULT_ENDPOINT_TEMPLATE = "https://{account}.blob.core.windows.net"
"""Azure Blob endpoint of a storage account; ``{account}`` is replaced."""


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class StorageError(Exception):
    """Base of every storage failure. `code` is a stable identifier for API error bodies."""

    code = "StorageError"

    def __init__(self, message: str, *, status: int | None = None, error_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        """HTTP status of the storage service's answer, when there was one."""
        self.error_code = error_code
        """The storage service's own error code (e.g. ``AuthorizationFailure``), when there was one."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class AccountNotFound(StorageError):
    """The storage account does not exist, or its endpoint cannot be reached."""

    code = "StorageAccountNotFound"


class ContainerNotFound(StorageError):
    """The blob container does not exist (containers are never created implicitly)."""

    code = "ContainerNotFound"


class BlobNotFound(StorageError):
    code = "BlobNotFound"


class AuthenticationFailed(StorageError):
    """The key, SAS token or token credential was refused, or does not allow the operation."""

    code = "StorageAuthenticationFailed"


class InvalidName(StorageError):
    """An account, container or blob name that the storage service would refuse."""

    code = "InvalidName"


class InvalidMetadata(InvalidName):
    """A metadata key that is not a C# identifier, or a value that is not printable ASCII."""

    code = "InvalidMetadata"


class BlobChanged(StorageError):
    """The blob was replaced while it was being read."""

    code = "BlobChanged"


class AccountAlreadyExists(StorageError):
    code = "StorageAccountAlreadyExists"


class ContainerAlreadyExists(StorageError):
    code = "ContainerAlreadyExists"


class ContainerNotEmpty(StorageError):
    code = "ContainerNotEmpty"


# --------------------------------------------------------------------------------------------
# Credentials (their secrets never appear in repr/str)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountKey:
    """Shared-key access: the storage account's access key (base64), as Azure issues it."""

    account: str
    key: str = field(repr=False)


@dataclass(frozen=True)
class SasToken:
    """A shared access signature (the query string, with or without a leading ``?``)."""

    account: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class TokenCredentialAuth:
    """An azure-identity credential (e.g. ``DefaultAzureCredential``), async or sync.

    Azure only (bearer tokens need an https endpoint). The caller owns the credential and closes it.
    """

    account: str
    credential: Any = field(repr=False)


@dataclass(frozen=True)
class LocalTrusted:
    """Server-configured access to a local storage account without a key ("managed identity")."""

    account: str


Credential = AccountKey | SasToken | TokenCredentialAuth | LocalTrusted


def check_credential_account(credential: Credential, account: str) -> None:
    """A credential names its account; refuse one meant for another account (before any I/O)."""
    if not isinstance(credential, AccountKey | SasToken | TokenCredentialAuth | LocalTrusted):
        raise TypeError(f"unsupported credential type {type(credential).__name__}")
    if credential.account != account:
        raise AuthenticationFailed(
            f"the credential is for storage account {credential.account!r}, not {account!r}"
        )


# --------------------------------------------------------------------------------------------
# Name and metadata validation (Azure's rules, plus path-traversal safety for the local backend)
# --------------------------------------------------------------------------------------------

_ACCOUNT_RE = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")
_METADATA_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_METADATA_VALUE_RE = re.compile(r"^[\x20-\x7e]*$")


def _show(name: str, limit: int = 80) -> str:
    shown = name if len(name) <= limit else name[:limit] + "..."
    return repr(shown)


def validate_account_name(name: str) -> str:
    if not isinstance(name, str) or not _ACCOUNT_RE.match(name):
        raise InvalidName(
            f"invalid storage account name {_show(str(name))}: use 3-24 lowercase letters and digits"
        )
    return name


def validate_container_name(name: str) -> str:
    if not isinstance(name, str) or not _CONTAINER_RE.match(name):
        raise InvalidName(
            f"invalid container name {_show(str(name))}: use 3-63 lowercase letters, digits and "
            "hyphens, starting and ending with a letter or digit, without consecutive hyphens"
        )
    return name


def validate_blob_name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidName("invalid blob name: it must be 1-1024 characters")
    problem = None
    if len(name) > MAX_BLOB_NAME_LENGTH:
        problem = "it is longer than 1024 characters"
    elif "\\" in name:
        problem = "it contains a backslash"
    elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        problem = "it contains NUL or another control character"
    elif name.startswith("/"):
        problem = "it is an absolute path"
    elif any(part in (".", "..") for part in name.split("/")):
        problem = "it contains a '.' or '..' path segment"
    elif name.endswith(("/", ".")):
        problem = "it ends with '/' or '.'"
    if problem:
        raise InvalidName(f"invalid blob name {_show(name)}: {problem}")
    return name


def validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Azure's metadata rules: keys are C# identifiers, values printable ASCII; 8 KiB in total."""
    if not metadata:
        return {}
    out: dict[str, str] = {}
    total = 0
    for key, value in metadata.items():
        if not isinstance(key, str) or not _METADATA_KEY_RE.match(key):
            raise InvalidMetadata(f"invalid metadata key {_show(str(key), 40)}: use letters, digits and '_'")
        if not isinstance(value, str) or not _METADATA_VALUE_RE.match(value):
            raise InvalidMetadata(f"invalid value for metadata key {key!r}: it must be printable ASCII")
        if value != value.strip():
            raise InvalidMetadata(f"invalid value for metadata key {key!r}: leading or trailing spaces")
        if key.lower() in (k.lower() for k in out):
            raise InvalidMetadata(f"duplicate metadata key {key!r} (keys are case-insensitive)")
        total += len(key) + len(value)
        out[key] = value
    if total > 8192:
        raise InvalidMetadata("metadata is larger than 8 KiB")
    return out


# --------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    metadata: dict[str, str]
    last_modified: datetime
    etag: str = ""


class BlobWriter(ABC):
    """Streams one blob. Nothing is visible until `commit`; `abort` (or leaving an ``async with``
    block without committing) discards what was written."""

    name: str
    metadata: dict[str, str]
    """The metadata given to `open_writer`."""

    @abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abstractmethod
    async def commit(self, metadata: Mapping[str, str] | None = None) -> BlobInfo:
        """Make the blob visible, atomically replacing any blob of that name.

        `metadata`, when given, replaces the metadata passed to `open_writer` (so metadata only
        known at the end, like the blob's size, can be set in the same step).
        """

    @abstractmethod
    async def abort(self) -> None:
        """Discard everything written. Idempotent; a no-op after `commit`."""

    async def __aenter__(self) -> BlobWriter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.abort()


class BlobContainer(ABC):
    """One container of one storage account. Use as ``async with`` or call `aclose()`."""

    backend: str
    account: str
    container: str

    @abstractmethod
    async def exists(self) -> bool:
        """Whether the container exists. Raises for a bad credential or an unknown account."""

    @abstractmethod
    async def open_writer(self, name: str, metadata: Mapping[str, str] | None = None) -> BlobWriter:
        """Start writing blob `name`. Raises `ContainerNotFound` before anything is written."""

    @abstractmethod
    async def get_info(self, name: str) -> BlobInfo: ...

    @abstractmethod
    async def read_range(self, name: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer at the end of the blob, none past it)."""

    @abstractmethod
    def iter_chunks(
        self, name: str, chunk_size: int = DEFAULT_CHUNK_SIZE, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream the blob (or `length` bytes from `offset`) in chunks of at most `chunk_size`.

        All chunks come from the same version of the blob: if it is replaced meanwhile, the
        iterator raises `BlobChanged` (or keeps reading the old version, on the local backend).
        """

    @abstractmethod
    def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        """Committed blobs whose names start with `prefix`, in name order, with their metadata."""

    @abstractmethod
    async def delete(self, name: str) -> None: ...

    @abstractmethod
    async def set_metadata(self, name: str, metadata: Mapping[str, str]) -> None:
        """Replace the blob's metadata."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Idempotent."""

    async def __aenter__(self) -> BlobContainer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def describe(self) -> str:
        """A human-readable, secret-free locator such as ``azure://account/container``."""
        return f"{self.backend}://{self.account}/{self.container}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
