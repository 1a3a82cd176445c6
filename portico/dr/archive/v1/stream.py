"""Format v1 streams: writing a backup's header and payload, reading its records back."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from portico.dr.archive import crypto
from portico.dr.archive.envelope import make_header
from portico.dr.archive.errors import CorruptBackup, TruncatedBackup
from portico.dr.archive.model import Manifest, Record, format_time
from portico.dr.archive.v1.manifest import VERSION
from portico.dr.archive.v1.payload import FRAME_SIZE, BackgroundHasher, PayloadDecoder, PayloadEncoder
from portico.dr.archive.v1.records import RecordEncoder, RecordParser, encode_end, sealed_part
from portico.dr.storage.base import BlobContainer

FLUSH_BYTES = FRAME_SIZE
DOWNLOAD_CHUNK = 4 * 1024 * 1024


RecordSource = Any  # AsyncIterable | Iterable of Record or of lists of Records


async def _iterate(source: RecordSource) -> AsyncIterator[Any]:
    if hasattr(source, "__aiter__"):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item


async def encode_payload(
    source: RecordSource,
    write: Callable[[bytes], Awaitable[None]],
    *,
    manifest_base: dict[str, Any],
    encryption_key: bytes | None,
    compression_level: int,
    on_progress: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    """Write header and payload through `write`; return the complete manifest dict."""
    header = make_header(VERSION)
    enc = manifest_base.get("encryption")
    encryptor = None
    if enc is not None:
        if encryption_key is None:
            raise ValueError("encryption_key is required")
        encryptor = crypto.SegmentEncryptor(
            encryption_key,
            base64.b64decode(enc["salt"]),
            base64.b64decode(enc["nonce_prefix"]),
            enc["segment_size"],
            header,
        )
    encoder = PayloadEncoder(compression_level, encryptor)
    records = RecordEncoder()
    hasher = BackgroundHasher()
    parts: list[bytes] = []
    buffered = 0
    in_flight: asyncio.Future[None] | None = None

    async def compress_and_write(plain: bytes, done: int) -> None:
        # zstd, AES-GCM and the payload hash release the GIL: this chunk is compressed in a
        # thread while the event loop encodes the next one. One chunk at a time keeps the order.
        out = await asyncio.to_thread(encoder.encode, plain)
        if out:
            await write(out)
        if on_progress is not None:
            on_progress(done, encoder.payload_size)

    async def flush() -> None:
        nonlocal parts, buffered, in_flight
        plain = b"".join(parts)
        parts, buffered = [], 0
        await hasher.update(plain)  # hashed in the worker while we compress
        if in_flight is not None:
            await in_flight
        in_flight = asyncio.ensure_future(compress_and_write(plain, records.records))

    async def drain() -> None:
        nonlocal in_flight
        if in_flight is not None:
            task, in_flight = in_flight, None
            await task

    try:
        await write(header)
        async for item in _iterate(source):
            if type(item) is Record:
                item = (item,)
            elif not isinstance(item, list | tuple):
                item = list(item)
            for block in records.add(item):
                parts.append(block)
                buffered += len(block)
            if buffered >= FLUSH_BYTES:
                await flush()
        parts.append(records.take_block())
        manifest = dict(manifest_base)
        manifest.setdefault("created_at", format_time(datetime.now(UTC)))
        manifest["record_count"] = records.records
        manifest["counts"] = dict(sorted(records.counts.items()))
        parts.append(encode_end(sealed_part(manifest)))
        await flush()
        await drain()
        tail = encoder.finish()
        if tail:
            await write(tail)
        manifest["payload_size"] = encoder.payload_size
        manifest["payload_sha256"] = encoder.payload_hash.hexdigest()
        manifest["plaintext_size"] = hasher.size
        manifest["plaintext_sha256"] = await hasher.hexdigest()
    finally:
        if in_flight is not None:  # an error elsewhere: do not leave the chunk task running
            in_flight.cancel()
            await asyncio.gather(in_flight, return_exceptions=True)
        hasher.close()
    if on_progress is not None:
        on_progress(records.records, encoder.payload_size)
    return manifest


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


async def iter_records(
    container: BlobContainer,
    name: str,
    manifest: Manifest,
    key: bytes | None,
    *,
    batch_size: int,
    on_progress: Callable[[int, int], None] | None = None,
    chunk_size: int = DOWNLOAD_CHUNK,
) -> AsyncIterator[list[Record]]:
    """Stream and decode the records; raise `CorruptBackup` (after the last batch at the latest)
    if anything does not verify. A consumer must treat the batches as provisional until the
    iteration has completed without error."""
    decoder = PayloadDecoder(manifest, key, make_header(VERSION))
    parser = RecordParser(batch_size)
    hasher = BackgroundHasher()
    chunks = container.iter_chunks(
        name, chunk_size, offset=manifest.payload_offset, length=manifest.payload_size
    )
    try:
        done = False
        while not done:
            try:
                chunk = await chunks.__anext__()
                decoder.feed(chunk)
            except StopAsyncIteration:
                decoder.end_input()
                done = True
            while True:
                plain = decoder.read()
                if not plain:
                    break
                await hasher.update(plain)
                for batch in parser.feed(plain):
                    yield batch
            if on_progress is not None:
                on_progress(parser.record_count, decoder.received)
        if (
            decoder.plaintext_size != manifest.plaintext_size
            or await hasher.hexdigest() != manifest.plaintext_sha256
        ):
            raise CorruptBackup("the decoded backup does not match its plaintext SHA-256 checksum")
        last = parser.finish(manifest)
        if last:
            yield last
        if on_progress is not None:
            on_progress(parser.record_count, decoder.received)
    finally:
        hasher.close()
        await chunks.aclose()  # type: ignore[attr-defined]


async def check_stored_payload(
    container: BlobContainer, name: str, manifest: Manifest, chunk_size: int = DOWNLOAD_CHUNK
) -> None:
    """Check the stored payload against `payload_sha256` without decoding it (needs no key)."""
    hasher = BackgroundHasher()
    try:
        async for chunk in container.iter_chunks(
            name, chunk_size, offset=manifest.payload_offset, length=manifest.payload_size
        ):
            await hasher.update(chunk)
        digest = await hasher.hexdigest()
    finally:
        hasher.close()
    if hasher.size != manifest.payload_size:
        raise TruncatedBackup(
            f"the backup payload is truncated ({hasher.size} of {manifest.payload_size} bytes)"
        )
    if digest != manifest.payload_sha256:
        raise CorruptBackup("the backup payload does not match its SHA-256 checksum: the blob is damaged")
