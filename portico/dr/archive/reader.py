"""Reading a backup of any supported format version: manifest, records, verification."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

import orjson

from portico.dr.archive import crypto, v1
from portico.dr.archive.envelope import (
    FORMAT_NAME,
    HEAD_MAGIC,
    HEADER_SIZE,
    TRAILER_SIZE,
    check_manifest_crc,
    parse_header,
    parse_trailer,
)
from portico.dr.archive.errors import (
    BackupFormatError,
    EncryptionKeyRequired,
    ManifestCorrupt,
    NotABackup,
    TruncatedBackup,
    UnsupportedFormatVersion,
    WrongEncryptionKey,
)
from portico.dr.archive.model import Manifest, Record, VerifyReport
from portico.dr.storage.base import BlobContainer

DECODERS: dict[int, ModuleType] = {1: v1}
"""One decoder module per format version, forever: a new version adds a module, never edits one."""

SUPPORTED_VERSIONS = tuple(sorted(DECODERS))
TAIL_READ = 64 * 1024


async def read_manifest(container: BlobContainer, name: str) -> Manifest:
    """The backup's manifest, from two range reads at most; needs no key."""
    info = await container.get_info(name)
    size = info.size
    if size <= TAIL_READ:
        head = tail = await container.read_range(name, 0, size)
    else:
        head, tail = await asyncio.gather(
            container.read_range(name, 0, HEADER_SIZE),
            container.read_range(name, size - TAIL_READ, TAIL_READ),
        )
    if len(tail) != min(size, TAIL_READ):
        raise TruncatedBackup("the blob changed size while its manifest was being read")
    if size == 0:
        raise NotABackup(f"blob {name!r} is not a Portico backup (it is empty)")
    if not head.startswith(HEAD_MAGIC):
        if len(head) < len(HEAD_MAGIC) and HEAD_MAGIC.startswith(head):
            raise TruncatedBackup("the backup is truncated: the blob holds only part of a header")
        raise NotABackup(
            f"blob {name!r} is not a Portico backup (its first bytes are not the backup signature)"
        )
    if size < HEADER_SIZE + TRAILER_SIZE:
        raise TruncatedBackup(f"the backup is truncated: the blob holds only {size} bytes")
    header_version = parse_header(head[:HEADER_SIZE])
    manifest_offset, manifest_length = parse_trailer(tail, size)
    tail_start = size - len(tail)
    if manifest_offset >= tail_start:
        manifest_json = tail[manifest_offset - tail_start : manifest_offset - tail_start + manifest_length]
    else:
        manifest_json = await container.read_range(name, manifest_offset, manifest_length)
    check_manifest_crc(manifest_json, tail)
    try:
        doc: Any = orjson.loads(manifest_json)
    except orjson.JSONDecodeError:
        raise ManifestCorrupt("the backup manifest is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise ManifestCorrupt(f"the backup manifest does not declare the {FORMAT_NAME!r} format")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ManifestCorrupt("the backup manifest has no valid format_version")
    if version != header_version:
        raise ManifestCorrupt(
            f"the backup header (format version {header_version}) and manifest (version {version}) disagree"
        )
    decoder = DECODERS.get(version)
    if decoder is None:
        writer = doc.get("portico_version")
        by = f" by Portico {writer}" if isinstance(writer, str) else ""
        raise UnsupportedFormatVersion(
            f"the backup uses format version {version}, written{by}; this Portico reads format versions "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}: upgrade Portico to restore it",
            version,
        )
    manifest: Manifest = decoder.parse_manifest(doc, blob_size=size, manifest_offset=manifest_offset)
    return manifest


def _check_key(manifest: Manifest, key: bytes | None) -> bytes | None:
    if manifest.encryption is None:
        return None
    if key is None:
        raise EncryptionKeyRequired(
            f"the backup is encrypted (key id {manifest.encryption.key_id}): an encryption key is required"
        )
    if not isinstance(key, bytes | bytearray) or len(key) != crypto.KEY_SIZE:
        raise WrongEncryptionKey("the encryption key must be 32 bytes (AES-256)")
    given = crypto.key_id(bytes(key))
    if not hmac.compare_digest(given, manifest.encryption.key_id):
        raise WrongEncryptionKey(
            f"wrong encryption key: the backup was encrypted with key id {manifest.encryption.key_id}, "
            f"the key given has id {given}"
        )
    return bytes(key)


class BackupReader:
    """An opened backup: `manifest`, and `records()` to stream its contents."""

    def __init__(self, container: BlobContainer, name: str, manifest: Manifest, key: bytes | None) -> None:
        self.container = container
        self.name = name
        self.manifest = manifest
        self._key = key
        self._decoder = DECODERS[manifest.format_version]

    def records(
        self, batch_size: int = 1000, *, on_progress: Callable[[int, int], None] | None = None
    ) -> AsyncIterator[list[Record]]:
        """Batches of records, in the order they were written.

        The payload's checksums, counts and sealed manifest are verified as it streams and at the
        end: an error (`CorruptBackup`, ...) can come after some batches, so apply them only once
        the iteration has completed. `on_progress(records_read, payload_bytes_read)`.
        """
        it: AsyncIterator[list[Record]] = self._decoder.iter_records(
            self.container,
            self.name,
            self.manifest,
            self._key,
            batch_size=batch_size,
            on_progress=on_progress,
        )
        return it


async def open_backup(
    container: BlobContainer, name: str, *, encryption_key: bytes | None = None
) -> BackupReader:
    """Open backup `name`: read and check its manifest and the key (`EncryptionKeyRequired`,
    `WrongEncryptionKey`), without reading the payload. Storage errors pass through."""
    manifest = await read_manifest(container, name)
    key = _check_key(manifest, encryption_key)
    return BackupReader(container, name, manifest, key)


async def verify_backup(
    container: BlobContainer,
    name: str,
    *,
    encryption_key: bytes | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Read the whole backup and check everything, changing nothing.

    Without the key of an encrypted backup, only the stored bytes are checked (`payload_verified`).
    Format problems are reported in the result (`ok`, `error`); storage errors are raised.
    """
    report = VerifyReport(blob_name=name, ok=False)
    try:
        manifest = await read_manifest(container, name)
        report.manifest = manifest
        if manifest.encryption is not None and encryption_key is None:
            await DECODERS[manifest.format_version].check_stored_payload(container, name, manifest)
            report.payload_verified = True
            report.notes.append("the backup is encrypted and no key was given")
            report.ok = True
            return report
        key = _check_key(manifest, encryption_key)
        reader = BackupReader(container, name, manifest, key)
        async for batch in reader.records(batch_size=4096, on_progress=on_progress):
            report.record_count += len(batch)
            for r in batch:
                report.counts[r.kind] = report.counts.get(r.kind, 0) + 1
        report.payload_verified = report.contents_verified = True
        report.ok = True
    except BackupFormatError as e:
        report.error = e
    return report
