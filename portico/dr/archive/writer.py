"""Writing a backup: always in the newest format version."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import Any

import orjson

from portico.dr.archive import crypto, v1
from portico.dr.archive.catalog import catalog_metadata
from portico.dr.archive.envelope import HEADER_SIZE, TRAILER_SIZE, make_trailer
from portico.dr.archive.model import Manifest, Record
from portico.dr.storage.base import BlobWriter

CURRENT_VERSION = v1.VERSION

Records = AsyncIterable[Record] | AsyncIterable[list[Record]] | Iterable[Record] | Iterable[list[Record]]


async def write_backup(
    writer: BlobWriter,
    *,
    manifest: Mapping[str, Any],
    records: Records,
    encryption_key: bytes | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    metadata: Mapping[str, str] | None = None,
    commit: bool = True,
    compression_level: int = v1.DEFAULT_COMPRESSION_LEVEL,
    segment_size: int = crypto.DEFAULT_SEGMENT_SIZE,
) -> Manifest:
    """Stream one backup into `writer` and (by default) commit it; return its manifest.

    `manifest` gives the fields only the caller knows: ``source_service_id`` (ARM id), ``source_service_name``,
    ``sku`` ({name, capacity}), ``location``, ``snapshot_time`` and ``expires_at`` (aware datetimes
    or ISO 8601 strings), optionally ``created_at``, ``portico_version`` and extra JSON fields.
    `records` yields `Record`s or lists of them (lists are faster), sync or async.
    `on_progress(records_written, payload_bytes_written)` is called as the payload grows.

    With `commit`, the blob is committed with metadata = the writer's metadata, then `metadata`,
    then `catalog_metadata(manifest)`. On any error the writer is aborted (nothing is visible).
    """
    try:
        encryption = v1.new_encryption(encryption_key, segment_size) if encryption_key is not None else None
        base = v1.build_manifest_base(manifest, encryption=encryption, compression_level=compression_level)
        doc = await v1.encode_payload(
            records,
            writer.write,
            manifest_base=base,
            encryption_key=encryption_key,
            compression_level=compression_level,
            on_progress=on_progress,
        )
        manifest_json = orjson.dumps(doc)
        await writer.write(make_trailer(manifest_json))
        manifest_offset = HEADER_SIZE + doc["payload_size"]
        result = v1.parse_manifest(
            doc,
            blob_size=manifest_offset + len(manifest_json) + TRAILER_SIZE,
            manifest_offset=manifest_offset,
        )
        if commit:
            await writer.commit({**writer.metadata, **(metadata or {}), **catalog_metadata(result)})
    except BaseException:
        await writer.abort()
        raise
    return result
