"""Backup format version 1: record encoding (`records`), payload pipeline (`payload`), manifest rules
(`manifest`), writing and reading streams (`stream`).

Payload of a v1 backup (specified in docs/backup-format.md)::

    record stream  = record* end
    record         = 0x52 | kind_len u8 | parent_len u16 | name_len u16 | display_len u16 (0xFFFF: null)
                     | etag_len u16 | data_len u32 | kind | parent | name | display_name | etag | data
    end            = 0x45 | seal_len u32 | seal (canonical JSON of the manifest minus the payload digests)
    framed stream  = frame+ ; frame = plain_len u32 | comp_len u32 | zstd frame (comp_len bytes)

(little-endian; strings UTF-8). The record stream is cut into pieces of at most 4 MiB, each
compressed as an independent zstd frame (content size and checksum included); the framed stream
is the payload, or is sealed by `crypto.SegmentEncryptor` into the payload.

Threads: the SHA-256 of the plaintext runs in a worker thread (hashlib releases the GIL); the
rest runs on the event loop's thread. Few, large hand-offs keep GIL ping-pong negligible.

This package must keep decoding every v1 blob ever written: change it only compatibly, and put a
new encoding in a new version module (see `reader.DECODERS`).
"""

from portico.dr.archive.v1.manifest import (
    REQUIRED_INPUT,
    RESERVED,
    VERSION,
    build_manifest_base,
    new_encryption,
    parse_manifest,
)
from portico.dr.archive.v1.payload import (
    COMPRESSION,
    DECODE_OUTPUT_LIMIT,
    DEFAULT_COMPRESSION_LEVEL,
    FRAME_SIZE,
    MAX_FRAME_SIZE,
    MAX_WINDOW_SIZE,
    BackgroundHasher,
    PayloadDecoder,
    PayloadEncoder,
)
from portico.dr.archive.v1.records import (
    BLOCK_DATA,
    BLOCK_RECORDS,
    MAX_BLOCK_SIZE,
    PAYLOAD_FIELDS,
    RecordEncoder,
    RecordParser,
    canonical_json,
    decode_block,
    encode_end,
    sealed_part,
)
from portico.dr.archive.v1.stream import (
    DOWNLOAD_CHUNK,
    FLUSH_BYTES,
    RecordSource,
    check_stored_payload,
    encode_payload,
    iter_records,
)

__all__ = [
    "BLOCK_DATA",
    "BLOCK_RECORDS",
    "COMPRESSION",
    "DECODE_OUTPUT_LIMIT",
    "DEFAULT_COMPRESSION_LEVEL",
    "DOWNLOAD_CHUNK",
    "FLUSH_BYTES",
    "FRAME_SIZE",
    "MAX_BLOCK_SIZE",
    "MAX_FRAME_SIZE",
    "MAX_WINDOW_SIZE",
    "PAYLOAD_FIELDS",
    "REQUIRED_INPUT",
    "RESERVED",
    "VERSION",
    "BackgroundHasher",
    "PayloadDecoder",
    "PayloadEncoder",
    "RecordEncoder",
    "RecordParser",
    "RecordSource",
    "build_manifest_base",
    "canonical_json",
    "check_stored_payload",
    "decode_block",
    "encode_end",
    "encode_payload",
    "iter_records",
    "new_encryption",
    "parse_manifest",
    "sealed_part",
]
