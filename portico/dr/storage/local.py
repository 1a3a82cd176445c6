"""The blob backend of the local storage accounts (`local_accounts`): one directory per container.

Layout of a container directory (``accounts/NAME/CONTAINER/`` under the storage root)::

        ENC.meta                   the blob's sidecar: name, size, metadata, etag, data file generation
        ENC.GEN.blob               the blob's bytes
        .tmp/                      writers' temporary files (never visible as blobs)
        .lock                      flock()ed while a blob is committed, deleted or re-tagged

``ENC`` is the blob name percent-encoded so that it contains no ``/``, ``.`` or ``~`` (or ``~`` and
the SHA-256 of the name when that would be too long for a file name); the sidecar holds the real
name. A blob exists exactly when its sidecar does. A commit writes and fsyncs the data under a new
generation, then atomically replaces the sidecar, then removes the previous generation: readers
see the old blob or the new one, never a mix, and an interrupted commit leaves at most an orphan
file that no reader can reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from portico.dr.storage.base import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_CHUNK_SIZE,
    AccountKey,
    AccountNotFound,
    AuthenticationFailed,
    BlobContainer,
    BlobInfo,
    BlobNotFound,
    BlobWriter,
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
from portico.dr.storage.local_accounts import LocalAccounts
from portico.dr.storage.local_files import flock, fsync_dir, iso, parse_iso, utc_now, write_atomic

STALE_TEMP_SECONDS = 24 * 3600


def _encode_name(name: str) -> str:
    enc = quote(name, safe="").replace(".", "%2E").replace("~", "%7E")
    if len(enc) > 180:
        enc = "~" + hashlib.sha256(name.encode()).hexdigest()
    return enc


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise StorageError(f"the metadata of a blob in {path.parent} is damaged ({path.name})") from None
    return doc if isinstance(doc, dict) else None


def _info(doc: dict[str, Any]) -> BlobInfo:
    return BlobInfo(
        name=doc["name"],
        size=int(doc["size"]),
        metadata=dict(doc.get("metadata") or {}),
        last_modified=parse_iso(doc["last_modified"]),
        etag=doc.get("etag", ""),
    )


class LocalContainer(BlobContainer):
    backend = "local"

    def __init__(
        self,
        accounts: LocalAccounts,
        account: str,
        container: str,
        credential: Credential,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        self._accounts = accounts
        self.account = validate_account_name(account)
        self.container = validate_container_name(container)
        check_credential_account(credential, account)
        self._credential = credential
        self.block_size = block_size
        self.path = accounts.container_dir(account, container)
        self._authorized = False
        self._auth_lock = asyncio.Lock()

    # -- access -----------------------------------------------------------------------------

    def _check_credential(self) -> None:
        cred = self._credential
        if isinstance(cred, LocalTrusted):
            self._accounts.require_account(self.account)
            return
        if isinstance(cred, AccountKey):
            if not self._accounts.verify(self.account, cred.key):
                raise AuthenticationFailed(
                    f"the access key for storage account {self.account!r} is not valid"
                )
            return
        raise AuthenticationFailed(
            f"local storage account {self.account!r} accepts its access key (or the server's trusted access) only"
        )

    async def _authorize(self) -> None:
        if self._authorized:
            return
        async with self._auth_lock:
            if not self._authorized:
                await asyncio.to_thread(self._check_credential)
                self._authorized = True

    def _require_container(self) -> None:
        if not self.path.is_dir():
            if not self._accounts.account_dir(self.account).is_dir():
                raise AccountNotFound(f"storage account {self.account!r} does not exist")
            raise ContainerNotFound(
                f"container {self.container!r} does not exist in storage account {self.account!r}"
            )

    def _sidecar(self, name: str) -> Path:
        return self.path / f"{_encode_name(name)}.meta"

    def _data_path(self, name: str, gen: str) -> Path:
        return self.path / f"{_encode_name(name)}.{gen}.blob"

    def _doc(self, name: str) -> dict[str, Any]:
        validate_blob_name(name)
        self._require_container()
        doc = _read_sidecar(self._sidecar(name))
        if doc is None or doc.get("name") != name:
            raise BlobNotFound(f"blob {name!r} does not exist in container {self.container!r}")
        return doc

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self._require_container()
        with flock(self.path / ".lock"):
            yield

    # -- BlobContainer ----------------------------------------------------------------------

    async def exists(self) -> bool:
        await self._authorize()
        if not self._accounts.account_dir(self.account).is_dir():
            raise AccountNotFound(f"storage account {self.account!r} does not exist")
        return self.path.is_dir()

    async def open_writer(self, name: str, metadata: Mapping[str, str] | None = None) -> BlobWriter:
        validate_blob_name(name)
        md = validate_metadata(metadata)
        await self._authorize()
        file, tmp_path = await asyncio.to_thread(self._open_temp)
        return _LocalWriter(self, name, md, file, tmp_path)

    def _open_temp(self) -> tuple[IO[bytes], Path]:
        self._require_container()
        tmp_dir = self.path / ".tmp"
        tmp_dir.mkdir(exist_ok=True)
        stale = time.time() - STALE_TEMP_SECONDS  # left by writers that died (crash, kill -9)
        for old in tmp_dir.glob("w-*.part"):
            with contextlib.suppress(OSError):
                if old.stat().st_mtime < stale:
                    old.unlink()
        fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="w-", suffix=".part")
        return os.fdopen(fd, "wb"), Path(tmp)

    async def get_info(self, name: str) -> BlobInfo:
        validate_blob_name(name)
        await self._authorize()
        return _info(await asyncio.to_thread(self._doc, name))

    def _open_data(self, name: str) -> tuple[dict[str, Any], IO[bytes]]:
        for _ in range(5):  # a concurrent commit may remove the generation we just looked up
            doc = self._doc(name)
            try:
                return doc, open(self._data_path(name, doc["gen"]), "rb")
            except FileNotFoundError:
                continue
        raise StorageError(f"blob {name!r} keeps changing while it is being opened")

    def _read_range(self, name: str, offset: int, length: int) -> bytes:
        _, f = self._open_data(name)
        with f:
            f.seek(offset)
            return f.read(length)

    async def read_range(self, name: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be >= 0")
        validate_blob_name(name)
        await self._authorize()
        if length == 0:
            await asyncio.to_thread(self._doc, name)
            return b""
        return await asyncio.to_thread(self._read_range, name, offset, length)

    async def iter_chunks(
        self, name: str, chunk_size: int = DEFAULT_CHUNK_SIZE, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        if chunk_size <= 0 or offset < 0:
            raise ValueError("chunk_size must be > 0 and offset >= 0")
        validate_blob_name(name)
        await self._authorize()
        doc, f = await asyncio.to_thread(self._open_data, name)
        try:
            size = int(doc["size"])
            end = size if length is None else min(size, offset + length)
            pos = offset
            if pos < end:
                await asyncio.to_thread(f.seek, pos)
            while pos < end:
                n = min(chunk_size, end - pos)
                chunk = await asyncio.to_thread(f.read, n)
                if len(chunk) != n:
                    raise StorageError(f"blob {name!r} is shorter on disk than its recorded size")
                pos += n
                yield chunk
        finally:
            f.close()

    def _list(self, prefix: str) -> list[BlobInfo]:
        self._require_container()
        infos = []
        for path in self.path.glob("*.meta"):
            doc = _read_sidecar(path)
            if doc is not None and str(doc.get("name", "")).startswith(prefix):
                infos.append(_info(doc))
        infos.sort(key=lambda i: i.name)
        return infos

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        await self._authorize()
        for info in await asyncio.to_thread(self._list, prefix):
            yield info

    def _delete(self, name: str) -> None:
        with self._lock():
            doc = self._doc(name)
            os.unlink(self._sidecar(name))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._data_path(name, doc["gen"]))
        fsync_dir(self.path)

    async def delete(self, name: str) -> None:
        validate_blob_name(name)
        await self._authorize()
        await asyncio.to_thread(self._delete, name)

    def _set_metadata(self, name: str, metadata: dict[str, str]) -> None:
        with self._lock():
            doc = self._doc(name)
            doc["metadata"] = metadata
            doc["etag"] = f'"{secrets.token_hex(8)}"'
            doc["last_modified"] = iso(utc_now())
            write_atomic(self._sidecar(name), json.dumps(doc).encode())

    async def set_metadata(self, name: str, metadata: Mapping[str, str]) -> None:
        validate_blob_name(name)
        md = validate_metadata(metadata)
        await self._authorize()
        await asyncio.to_thread(self._set_metadata, name, md)

    def _commit(self, name: str, tmp_path: Path, size: int, metadata: dict[str, str]) -> BlobInfo:
        gen = secrets.token_hex(8)
        doc = {
            "name": name,
            "gen": gen,
            "size": size,
            "metadata": metadata,
            "last_modified": iso(utc_now()),
            "etag": f'"{gen}"',
        }
        with self._lock():
            old = _read_sidecar(self._sidecar(name))
            os.replace(tmp_path, self._data_path(name, gen))
            write_atomic(self._sidecar(name), json.dumps(doc).encode())
            if old is not None and old.get("gen") and old["gen"] != gen:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._data_path(name, old["gen"]))
        return _info(doc)


class _LocalWriter(BlobWriter):
    def __init__(
        self, container: LocalContainer, name: str, metadata: dict[str, str], file: IO[bytes], tmp_path: Path
    ) -> None:
        self._container = container
        self.name = name
        self.metadata = metadata
        self._file: IO[bytes] | None = file
        self._tmp_path = tmp_path
        self._buf: list[bytes] = []
        self._buffered = 0
        self._size = 0
        self._state = "open"
        self._info: BlobInfo | None = None

    def _check_open(self) -> IO[bytes]:
        if self._state != "open" or self._file is None:
            raise StorageError(f"writer for blob {self.name!r} is {self._state}")
        return self._file

    async def _flush(self) -> None:
        f = self._check_open()
        if self._buf:
            data = b"".join(self._buf)
            self._buf, self._buffered = [], 0
            await asyncio.to_thread(f.write, data)

    async def write(self, data: bytes) -> None:
        self._check_open()
        if not data:
            return
        self._buf.append(bytes(data))
        self._buffered += len(data)
        self._size += len(data)
        if self._buffered >= self._container.block_size:
            await self._flush()

    def _finish_file(self) -> None:
        f = self._check_open()
        f.flush()
        os.fsync(f.fileno())
        f.close()
        self._file = None

    async def commit(self, metadata: Mapping[str, str] | None = None) -> BlobInfo:
        if self._state == "committed" and self._info is not None and metadata is None:
            return self._info  # idempotent
        self._check_open()
        md = validate_metadata(metadata) if metadata is not None else self.metadata
        try:
            await self._flush()
            await asyncio.to_thread(self._finish_file)
            info = await asyncio.to_thread(self._container._commit, self.name, self._tmp_path, self._size, md)
        except BaseException:
            await self.abort()
            raise
        self._state = "committed"
        self._info = info
        return info

    def _discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(OSError):
            os.unlink(self._tmp_path)

    async def abort(self) -> None:
        if self._state in ("open", "failed"):
            self._state = "aborted"
            self._buf = []
            await asyncio.to_thread(self._discard)
