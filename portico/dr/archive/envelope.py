"""The envelope every format version shares: header, payload, manifest trailer.

    offset 0       HEAD_MAGIC (8) | format_version u32 LE | CRC-32 of the previous 12 bytes u32 LE
    offset 16      payload (format-version specific; `payload_offset`/`payload_size` in the manifest)
    then           manifest: UTF-8 JSON object
    last 16 bytes  manifest length u32 LE | CRC-32 of the manifest u32 LE | END_MAGIC (8)

This layout is frozen: a reader of any version finds the manifest from the end of the blob with
range reads, then dispatches on ``format_version`` to that version's decoder.
"""

from __future__ import annotations

import struct
import zlib

from portico.dr.archive.errors import ManifestCorrupt, NotABackup, TruncatedBackup

HEAD_MAGIC = b"\x89PORTBK\n"
END_MAGIC = b"\nPORTEND"
HEADER_SIZE = 16
TRAILER_SIZE = 16
MAX_MANIFEST_SIZE = 1024 * 1024
FORMAT_NAME = "portico-backup"

_HEADER = struct.Struct("<8sII")
_TRAILER = struct.Struct("<II8s")


def make_header(version: int) -> bytes:
    first = HEAD_MAGIC + struct.pack("<I", version)
    return first + struct.pack("<I", zlib.crc32(first))


def parse_header(data: bytes) -> int:
    """The format version in a blob's first 16 bytes."""
    if len(data) < HEADER_SIZE or not data.startswith(HEAD_MAGIC):
        raise NotABackup("not a Portico backup: the blob does not start with the Portico backup signature")
    _magic, version, crc = _HEADER.unpack_from(data)
    if zlib.crc32(data[:12]) != crc:
        raise ManifestCorrupt("the backup header is damaged (CRC mismatch)")
    return int(version)


def make_trailer(manifest_json: bytes) -> bytes:
    return manifest_json + _TRAILER.pack(len(manifest_json), zlib.crc32(manifest_json), END_MAGIC)


def parse_trailer(tail: bytes, blob_size: int) -> tuple[int, int]:
    """(manifest_offset, manifest_length) from the blob's last bytes (`tail` ends at `blob_size`).

    Raises `TruncatedBackup` when the end signature is missing (the caller checks the head
    signature first, to tell "not a backup" from "cut short").
    """
    if len(tail) < TRAILER_SIZE or not tail.endswith(END_MAGIC):
        raise TruncatedBackup(
            "the backup is truncated: its end signature is missing (incomplete upload or cut copy)"
        )
    length, _crc, _magic = _TRAILER.unpack_from(tail, len(tail) - TRAILER_SIZE)
    if length > MAX_MANIFEST_SIZE or length > blob_size - HEADER_SIZE - TRAILER_SIZE:
        raise ManifestCorrupt(
            f"the backup manifest length ({length} bytes) is impossible for a {blob_size}-byte blob"
        )
    return blob_size - TRAILER_SIZE - length, length


def check_manifest_crc(manifest_json: bytes, tail: bytes) -> None:
    _length, crc, _magic = _TRAILER.unpack_from(tail, len(tail) - TRAILER_SIZE)
    if zlib.crc32(manifest_json) != crc:
        raise ManifestCorrupt("the backup manifest is damaged (CRC mismatch)")
