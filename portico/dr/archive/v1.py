"""Backup format version 1: record encoding, payload pipeline, manifest rules, decoder.

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

This module must keep decoding every v1 blob ever written: change it only compatibly, and put a
new encoding in a new version module (see `reader.DECODERS`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import struct
import sys
from array import array
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import accumulate, pairwise
from typing import Any

import orjson
import zstandard

from portico import __version__ as PORTICO_VERSION
from portico.dr.archive import crypto
from portico.dr.archive.envelope import FORMAT_NAME, HEADER_SIZE, MAX_MANIFEST_SIZE, make_header
from portico.dr.archive.errors import CorruptBackup, ManifestCorrupt, TruncatedBackup
from portico.dr.archive.model import Encryption, Manifest, Record, Sku, format_time, parse_time
from portico.dr.storage.base import BlobContainer

VERSION = 1
COMPRESSION = "zstd"
DEFAULT_COMPRESSION_LEVEL = 1
MAX_WINDOW_SIZE = 8 * 1024 * 1024  # writers must stay within it (levels 1-3 use <= 2 MiB)

TAG_BLOCK = 0x42  # "B"
TAG_END = 0x45  # "E"
MODE_SEPARATED = 0  # the 5 strings of every record joined with NUL
MODE_LENGTHS = 1  # a table of string lengths in code points (when a string contains NUL)
FIELDS = 5  # kind, parent, name, display_name ("" when null), etag
FLAG_DISPLAY_NULL = 0x01
_BLOCK = struct.Struct("<BBIII")  # tag, mode, count, strings_size, data_size
_END = struct.Struct("<BI")  # tag, seal_size
BLOCK_RECORDS = 4096  # a writer closes a block at this many records ...
BLOCK_DATA = 1024 * 1024  # ... or this much entity data
MAX_BLOCK_SIZE = 1024 * 1024 * 1024  # reader's bound on one block
_U32 = "I" if array("I").itemsize == 4 else "L"
_SWAP = sys.byteorder == "big"

PAYLOAD_FIELDS = ("payload_size", "payload_sha256", "plaintext_size", "plaintext_sha256")
"""Manifest fields describing the payload bytes; every other field is sealed inside the payload."""

REQUIRED_INPUT = (
    "source_service_id",
    "source_service_name",
    "sku",
    "location",
    "snapshot_time",
    "expires_at",
)
RESERVED = (
    "format",
    "format_version",
    "record_count",
    "counts",
    "payload_offset",
    "compression",
    "compression_level",
    "encryption",
    *PAYLOAD_FIELDS,
)

FRAME_SIZE = 4 * 1024 * 1024  # plaintext per zstd frame written
MAX_FRAME_SIZE = 16 * 1024 * 1024  # largest plaintext per frame a reader accepts (bounds memory)
_FRAME = struct.Struct("<II")
FLUSH_BYTES = FRAME_SIZE
DECODE_OUTPUT_LIMIT = 4 * 1024 * 1024  # plaintext decoded before records are parsed (bounded memory)
DOWNLOAD_CHUNK = 4 * 1024 * 1024

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def sealed_part(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k not in PAYLOAD_FIELDS}


# --------------------------------------------------------------------------------------------
# Record encoding
# --------------------------------------------------------------------------------------------


def _bad_record(records: Iterable[Any]) -> ValueError:
    """Find the record that could not be encoded and say why."""
    for r in records:
        if not isinstance(r, Record):
            return ValueError(f"expected a Record, got {type(r).__name__}")
        for fname in ("kind", "parent", "name", "etag"):
            if not isinstance(getattr(r, fname), str):
                return ValueError(f"record {r.kind!r}/{r.name!r}: {fname} must be a string")
        if r.display_name is not None and not isinstance(r.display_name, str):
            return ValueError(f"record {r.kind!r}/{r.name!r}: display_name must be a string or None")
        if not isinstance(r.data, bytes | bytearray | memoryview):
            return ValueError(f"record {r.kind!r}/{r.name!r}: data must be bytes")
        if not r.kind:
            return ValueError(f"record {r.name!r}: kind must not be empty")
        for fname in ("kind", "parent", "name", "display_name", "etag"):
            value = getattr(r, fname)
            try:
                (value or "").encode()
            except UnicodeEncodeError:
                return ValueError(f"record {r.kind!r}/{r.name[:80]!r}: {fname} is not valid Unicode")
        if len(r.data) >= 2**32:
            return ValueError(f"record {r.kind!r}/{r.name[:80]!r}: data is larger than 4 GiB")
    return ValueError("a record could not be encoded")


def _u32_bytes(values: Iterable[int]) -> bytes:
    arr = array(_U32, values)
    if _SWAP:
        arr.byteswap()
    return arr.tobytes()


def _u32_array(data: bytes) -> array[int]:
    arr = array(_U32)
    arr.frombytes(data)
    if _SWAP:
        arr.byteswap()
    return arr


class RecordEncoder:
    """Turns records into blocks of the record stream (runs on the event loop; hot path)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.records = 0
        self._strs: list[str] = []
        self._datas: list[Any] = []
        self._flags = bytearray()
        self._sources: list[Any] = []  # the batches pending, to explain an encoding error
        self._data_size = 0

    def add(self, batch: Any) -> list[bytes]:
        """Add a batch of `Record`s or of driver rows `(kind, parent, name, display_name, etag, data)`
        (data as bytes); return the blocks it completed."""
        blocks = []
        for start in range(0, len(batch), 1024):
            part = batch[start : start + 1024] if len(batch) > 1024 else batch
            strs = self._strs
            first = len(self._datas)
            extend = strs.extend
            append_data = self._datas.append
            append_flag = self._flags.append
            try:
                for r in part:
                    # A Record, or a row straight from the database driver in the same field order.
                    kind, parent, name, dn, etag, data = r
                    if dn is None:
                        extend((kind, parent, name, "", etag))
                        append_flag(FLAG_DISPLAY_NULL)
                    else:
                        extend((kind, parent, name, dn, etag))
                        append_flag(0)
                    append_data(data)
                self._data_size += sum(map(len, self._datas[first:]))
            except (AttributeError, TypeError):
                raise _bad_record(part) from None
            self._sources.append(part)
            if len(self._flags) >= BLOCK_RECORDS or self._data_size >= BLOCK_DATA:
                blocks.append(self.take_block())
        return blocks

    def take_block(self) -> bytes:
        """Encode the pending records as one block (b"" if there are none)."""
        count = len(self._flags)
        if not count:
            return b""
        strs, datas, flags, sources = self._strs, self._datas, self._flags, self._sources
        self._strs, self._datas, self._flags, self._sources, self._data_size = [], [], bytearray(), [], 0
        try:
            joined = "\x00".join(strs)
            if joined.count("\x00") == len(strs) - 1:
                mode, table = MODE_SEPARATED, b""
            else:
                mode, table = MODE_LENGTHS, _u32_bytes(map(len, strs))
                joined = "".join(strs)
            strings = joined.encode()
            data = b"".join(datas)
            sizes = list(map(len, datas))
            if sum(sizes) != len(data):  # buffers whose len() is not their size in bytes
                datas = [bytes(memoryview(d).cast("B")) for d in datas]
                data = b"".join(datas)
                sizes = list(map(len, datas))
            kinds = Counter(strs[0::FIELDS])
            if "" in kinds:
                raise ValueError
            header = _BLOCK.pack(TAG_BLOCK, mode, count, len(strings), len(data))
            block = b"".join((header, flags, table, _u32_bytes(sizes), strings, data))
        except (TypeError, ValueError, UnicodeEncodeError, OverflowError, struct.error):
            raise _bad_record(r for part in sources for r in part) from None
        self.counts.update(kinds)
        self.records += count
        return block


def encode_end(seal: Mapping[str, Any]) -> bytes:
    body = canonical_json(dict(seal))
    return _END.pack(TAG_END, len(body)) + body


def decode_block(buf: bytes, pos: int, out: list[Record], counts: Counter[str]) -> int:
    """Decode the complete block at `pos` into `out`, counting kinds; return the position after it."""
    _tag, mode, count, strings_size, data_size = _BLOCK.unpack_from(buf, pos)
    p = pos + _BLOCK.size
    flags = buf[p : p + count]
    p += count
    table = None
    if mode == MODE_LENGTHS:
        table = _u32_array(buf[p : p + 4 * FIELDS * count])
        p += 4 * FIELDS * count
    elif mode != MODE_SEPARATED:
        raise CorruptBackup(f"the record stream is damaged (unknown block mode {mode})")
    sizes = _u32_array(buf[p : p + 4 * count])
    p += 4 * count
    try:
        text = buf[p : p + strings_size].decode()
    except UnicodeDecodeError:
        raise CorruptBackup("the record stream is damaged (strings are not valid UTF-8)") from None
    p += strings_size
    if table is None:
        strs = text.split("\x00")
        if len(strs) != FIELDS * count:
            raise CorruptBackup("the record stream is damaged (wrong number of strings in a block)")
    else:
        offsets = list(accumulate(table, initial=0))
        if offsets[-1] != len(text):
            raise CorruptBackup("the record stream is damaged (string table does not match)")
        strs = [text[a:b] for a, b in pairwise(offsets)]
    data_offsets = list(accumulate(sizes, initial=p))
    if data_offsets[-1] != p + data_size:
        raise CorruptBackup("the record stream is damaged (data sizes do not match)")
    datas = [buf[a:b] for a, b in pairwise(data_offsets)]
    kinds = strs[0::FIELDS]
    block_counts = Counter(kinds)
    if "" in block_counts:
        raise CorruptBackup("the record stream is damaged (a record has no kind)")
    counts.update(block_counts)
    append = out.append
    for kind, parent, name, display, etag, data, flag in zip(
        kinds, strs[1::FIELDS], strs[2::FIELDS], strs[3::FIELDS], strs[4::FIELDS], datas, flags, strict=True
    ):
        append(Record(kind, parent, name, None if flag & FLAG_DISPLAY_NULL else display, etag, data))
    return p + data_size


class RecordParser:
    """Decodes the plaintext record stream into batches of `Record`s (runs on the event loop)."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = max(1, batch_size)
        self.counts: Counter[str] = Counter()
        self.record_count = 0
        self.seal: dict[str, Any] | None = None
        self._rem = b""
        self._pending: list[Record] = []

    def feed(self, data: bytes) -> list[list[Record]]:
        if self.seal is not None:
            if data:
                raise CorruptBackup("the backup has data after its end record")
            return []
        if self._rem:
            data = self._rem + data
        n = len(data)
        pos = 0
        pending = self._pending
        while pos < n:
            tag = data[pos]
            if tag == TAG_BLOCK:
                if n - pos < _BLOCK.size:
                    break
                _tag, mode, count, strings_size, data_size = _BLOCK.unpack_from(data, pos)
                size = _BLOCK.size + count * (5 if mode != MODE_LENGTHS else 25) + strings_size + data_size
                if size > MAX_BLOCK_SIZE or count == 0:
                    raise CorruptBackup("the record stream is damaged (impossible block size)")
                if n - pos < size:
                    break
                pos = decode_block(data, pos, pending, self.counts)
            elif tag == TAG_END:
                end = self._end(data, pos)
                if end == pos:
                    break
                pos = end
                if pos != n:
                    raise CorruptBackup("the backup has data after its end record")
            else:
                raise CorruptBackup(f"the record stream is damaged (unknown tag 0x{tag:02x})")
        self._rem = data[pos:]
        batches = []
        bs = self.batch_size
        while len(pending) >= bs:
            batches.append(pending[:bs])
            del pending[:bs]
            self.record_count += bs
        return batches

    def _end(self, data: bytes, pos: int) -> int:
        if len(data) - pos < _END.size:
            return pos  # wait for more
        _tag, length = _END.unpack_from(data, pos)
        if length > MAX_MANIFEST_SIZE:
            raise CorruptBackup("the backup's end record is damaged")
        start = pos + _END.size
        if len(data) - start < length:
            return pos
        try:
            seal = orjson.loads(data[start : start + length])
        except orjson.JSONDecodeError:
            raise CorruptBackup("the backup's end record is damaged (bad JSON)") from None
        if not isinstance(seal, dict):
            raise CorruptBackup("the backup's end record is damaged")
        self.seal = seal
        return start + length

    def finish(self, manifest: Manifest) -> list[Record]:
        """The last partial batch, after checking the stream ended properly and matches the manifest."""
        if self.seal is None:
            raise TruncatedBackup("the backup's record stream ends without its end record")
        if self._rem:
            raise CorruptBackup("the backup has data after its end record")
        batch, self._pending = self._pending, []
        self.record_count += len(batch)
        if self.record_count != manifest.record_count:
            raise CorruptBackup(
                f"the backup holds {self.record_count} records but its manifest says {manifest.record_count}"
            )
        if dict(self.counts) != manifest.counts:
            raise CorruptBackup("the per-kind record counts do not match the backup manifest")
        if self.seal != sealed_part(manifest.raw):
            raise CorruptBackup(
                "the backup manifest does not match the copy sealed inside the payload: the manifest was modified"
            )
        return batch


# --------------------------------------------------------------------------------------------
# Payload pipeline
# --------------------------------------------------------------------------------------------


class BackgroundHasher:
    """SHA-256 in a worker thread, fed in order; at most `depth` chunks queued (bounded memory)."""

    def __init__(self, depth: int = 1) -> None:
        self._hash = hashlib.sha256()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portico-sha256")
        self._pending: list[asyncio.Future[None]] = []
        self._depth = depth
        self.size = 0

    async def update(self, data: bytes) -> None:
        self.size += len(data)
        loop = asyncio.get_running_loop()
        self._pending.append(loop.run_in_executor(self._executor, self._hash.update, data))
        while len(self._pending) > self._depth:
            await self._pending.pop(0)

    async def hexdigest(self) -> str:
        while self._pending:
            await self._pending.pop(0)
        return self._hash.hexdigest()

    def close(self) -> None:
        for fut in self._pending:
            fut.cancel()
        self._pending = []
        self._executor.shutdown(wait=False)


class PayloadEncoder:
    """Plaintext in, stored payload out: zstd frames, then the optional encryption."""

    def __init__(self, level: int, encryptor: crypto.SegmentEncryptor | None) -> None:
        params = zstandard.ZstdCompressionParameters.from_level(
            level, write_checksum=True, write_content_size=True
        )
        if 1 << params.window_log > MAX_WINDOW_SIZE:
            raise ValueError(f"zstd level {level} uses a window larger than format v1 allows")
        self._cctx = zstandard.ZstdCompressor(compression_params=params)
        self._enc = encryptor
        self.payload_hash = hashlib.sha256()
        self.payload_size = 0

    def _out(self, data: bytes) -> bytes:
        if data:
            self.payload_hash.update(data)
            self.payload_size += len(data)
        return data

    def encode(self, plain: bytes) -> bytes:
        out = []
        view = memoryview(plain)
        for start in range(0, len(plain), FRAME_SIZE):
            piece = view[start : start + FRAME_SIZE]
            frame = self._cctx.compress(piece)
            out.append(_FRAME.pack(len(piece), len(frame)))
            out.append(frame)
        framed = b"".join(out)
        return self._out(self._enc.feed(framed) if self._enc is not None else framed)

    def finish(self) -> bytes:
        return self._out(self._enc.finish() if self._enc is not None else b"")


class PayloadDecoder:
    """Stored payload in, plaintext out (bounded per call); checks the stored bytes' digest."""

    def __init__(self, manifest: Manifest, key: bytes | None, header: bytes) -> None:
        self.manifest = manifest
        self._dec: crypto.SegmentDecryptor | None = None
        enc = manifest.encryption
        if enc is not None:
            if key is None:
                raise ValueError("key required")
            self._dec = crypto.SegmentDecryptor(
                key, enc.salt, enc.nonce_prefix, enc.segment_size, header, manifest.payload_size
            )
        self._dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_SIZE)
        self.payload_hash = hashlib.sha256()
        self.received = 0
        self.plaintext_size = 0
        self._buf = bytearray()
        self._input_done = False

    @staticmethod
    def _damaged(detail: str) -> CorruptBackup:
        return CorruptBackup(f"the backup payload is damaged ({detail})")

    def feed(self, chunk: bytes) -> None:
        self.payload_hash.update(chunk)
        self.received += len(chunk)
        if self.received > self.manifest.payload_size:
            raise self._damaged("it is longer than its manifest says")
        self._buf += self._dec.feed(chunk) if self._dec is not None else chunk

    def end_input(self) -> None:
        if self.received != self.manifest.payload_size:
            raise TruncatedBackup(
                f"the backup payload is truncated ({self.received} of {self.manifest.payload_size} bytes)"
            )
        if self.payload_hash.hexdigest() != self.manifest.payload_sha256:
            raise CorruptBackup("the backup payload does not match its SHA-256 checksum: the blob is damaged")
        if self._dec is not None:
            self._buf += self._dec.finish()
        self._input_done = True

    def read(self, limit: int = DECODE_OUTPUT_LIMIT) -> bytes:
        """Decompress the complete frames buffered, up to about `limit` bytes of plaintext."""
        buf = self._buf
        pos = 0
        out: list[bytes] = []
        produced = 0
        while len(buf) - pos >= _FRAME.size and produced < limit:
            plain_len, comp_len = _FRAME.unpack_from(buf, pos)
            if not 0 < plain_len <= MAX_FRAME_SIZE or comp_len > plain_len + (plain_len >> 7) + 1024:
                raise self._damaged("bad frame header")
            start = pos + _FRAME.size
            if len(buf) - start < comp_len:
                break
            frame = bytes(buf[start : start + comp_len])
            try:
                if zstandard.frame_content_size(frame) != plain_len:
                    raise self._damaged("frame size mismatch")
                data = self._dctx.decompress(frame, allow_extra_data=False)
            except zstandard.ZstdError as e:
                raise self._damaged(f"zstd: {e}") from None
            if len(data) != plain_len:
                raise self._damaged("frame size mismatch")
            out.append(data)
            produced += plain_len
            pos = start + comp_len
        if pos:
            del buf[:pos]
        if self._input_done and not out and buf:
            raise TruncatedBackup("the backup's compressed stream ends inside a frame")
        self.plaintext_size += produced
        if self.plaintext_size > self.manifest.plaintext_size:
            raise self._damaged("it decompresses to more than its manifest says")
        return b"".join(out)


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


def build_manifest_base(
    given: Mapping[str, Any], *, encryption: dict[str, Any] | None, compression_level: int
) -> dict[str, Any]:
    """The manifest fields known before the payload is written, validated and normalised."""
    if not isinstance(given, Mapping):
        raise TypeError("manifest must be a mapping")
    missing = [k for k in REQUIRED_INPUT if k not in given]
    if missing:
        raise ValueError(f"manifest is missing {', '.join(missing)}")
    clash = [k for k in RESERVED if k in given]
    if clash:
        raise ValueError(f"manifest fields {', '.join(clash)} are set by the backup writer")
    sku = given["sku"]
    if (
        not isinstance(sku, Mapping)
        or not isinstance(sku.get("name"), str)
        or isinstance(sku.get("capacity"), bool)
    ):
        raise ValueError("manifest sku must be {'name': str, 'capacity': int}")
    try:
        capacity = int(sku.get("capacity", 1))
    except (TypeError, ValueError):
        raise ValueError("manifest sku capacity must be an integer") from None
    for k in ("source_service_id", "source_service_name", "location"):
        if not isinstance(given[k], str):
            raise ValueError(f"manifest {k} must be a string")
    base: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": VERSION,
        "portico_version": str(given.get("portico_version") or PORTICO_VERSION),
        "source_service_id": given["source_service_id"],
        "source_service_name": given["source_service_name"],
        "sku": {"name": sku["name"], "capacity": capacity},
        "location": given["location"],
        "snapshot_time": format_time(given["snapshot_time"]),
        "expires_at": format_time(given["expires_at"]),
    }
    if "created_at" in given:
        base["created_at"] = format_time(given["created_at"])
    for k, v in given.items():
        if k not in base and k != "created_at":
            base[k] = v
    try:
        canonical_json(base)
    except TypeError as e:
        raise ValueError(f"manifest is not JSON-serialisable: {e}") from None
    base["payload_offset"] = HEADER_SIZE
    base["compression"] = COMPRESSION
    base["compression_level"] = compression_level
    base["encryption"] = encryption
    return base


_KNOWN = {
    "format",
    "format_version",
    "portico_version",
    "source_service_id",
    "source_service_name",
    "sku",
    "location",
    "snapshot_time",
    "expires_at",
    "created_at",
    "record_count",
    "counts",
    "payload_offset",
    "payload_size",
    "payload_sha256",
    "plaintext_size",
    "plaintext_sha256",
    "compression",
    "compression_level",
    "encryption",
}


def parse_manifest(doc: dict[str, Any], *, blob_size: int, manifest_offset: int) -> Manifest:
    """Validate a v1 manifest; raise `ManifestCorrupt` naming the first bad field."""

    def bad(field: str, why: str) -> ManifestCorrupt:
        return ManifestCorrupt(f"the backup manifest is invalid: {field} {why}")

    def get(field: str, typ: type | tuple[type, ...]) -> Any:
        if field not in doc:
            raise bad(field, "is missing")
        v = doc[field]
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise bad(field, "has the wrong type")
        return v

    def nonneg(field: str) -> int:
        v = get(field, int)
        if v < 0:
            raise bad(field, "is negative")
        return int(v)

    def time(field: str) -> datetime:
        try:
            return parse_time(get(field, str))
        except ValueError:
            raise bad(field, "is not an ISO 8601 timestamp") from None

    def digest(field: str) -> str:
        v = get(field, str)
        if not _HEX64.match(v):
            raise bad(field, "is not a SHA-256 hex digest")
        return str(v)

    sku = get("sku", dict)
    if not isinstance(sku.get("name"), str) or not isinstance(sku.get("capacity"), int):
        raise bad("sku", "must be {name, capacity}")
    counts = get("counts", dict)
    if not all(isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in counts.items()):
        raise bad("counts", "must map kinds to counts")
    record_count = nonneg("record_count")
    if sum(counts.values()) != record_count:
        raise bad("record_count", "does not equal the sum of counts")
    if get("compression", str) != COMPRESSION:
        raise bad("compression", f"{doc['compression']!r} is not supported")
    payload_offset = nonneg("payload_offset")
    payload_size = nonneg("payload_size")
    if payload_offset != HEADER_SIZE:
        raise bad("payload_offset", "is not 16")
    if payload_offset + payload_size != manifest_offset:
        raise TruncatedBackup(
            f"the backup's size ({blob_size} bytes) does not match its manifest: the blob is truncated or damaged"
        )
    encryption = None
    enc = doc.get("encryption")
    if enc is not None:
        if not isinstance(enc, dict):
            raise bad("encryption", "must be an object or null")
        if enc.get("alg") != crypto.ALG or enc.get("kdf") != crypto.KDF:
            raise bad("encryption", f"algorithm {enc.get('alg')!r}/{enc.get('kdf')!r} is not supported")
        try:
            salt = base64.b64decode(enc.get("salt", ""), validate=True)
            prefix = base64.b64decode(enc.get("nonce_prefix", ""), validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise bad("encryption", "salt or nonce_prefix is not base64") from None
        seg = enc.get("segment_size")
        kid = enc.get("key_id")
        if len(salt) != crypto.SALT_SIZE or len(prefix) != crypto.NONCE_PREFIX_SIZE:
            raise bad("encryption", "salt or nonce_prefix has the wrong length")
        if not isinstance(seg, int) or not crypto.MIN_SEGMENT_SIZE <= seg <= crypto.MAX_SEGMENT_SIZE:
            raise bad("encryption", "segment_size is out of range")
        if not isinstance(kid, str) or not _HEX16.match(kid):
            raise bad("encryption", "key_id is not a 16-digit hex fingerprint")
        encryption = Encryption(crypto.ALG, crypto.KDF, kid, salt, prefix, seg)
    return Manifest(
        format_version=VERSION,
        portico_version=get("portico_version", str),
        source_service_id=get("source_service_id", str),
        source_service_name=get("source_service_name", str),
        sku=Sku(sku["name"], int(sku["capacity"])),
        location=get("location", str),
        snapshot_time=time("snapshot_time"),
        expires_at=time("expires_at"),
        created_at=time("created_at"),
        record_count=record_count,
        counts={str(k): int(v) for k, v in counts.items()},
        payload_offset=payload_offset,
        payload_size=payload_size,
        payload_sha256=digest("payload_sha256"),
        plaintext_size=nonneg("plaintext_size"),
        plaintext_sha256=digest("plaintext_sha256"),
        compression=COMPRESSION,
        encryption=encryption,
        extra={k: v for k, v in doc.items() if k not in _KNOWN},
        raw=dict(doc),
        blob_size=blob_size,
    )


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


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
                chunk = await chunks.__anext__()  # type: ignore[attr-defined]
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


def new_encryption(key: bytes, segment_size: int) -> dict[str, Any]:
    crypto.check_key(key)
    if not crypto.MIN_SEGMENT_SIZE <= segment_size <= crypto.MAX_SEGMENT_SIZE:
        raise ValueError("segment_size is out of range")
    return {
        "alg": crypto.ALG,
        "kdf": crypto.KDF,
        "key_id": crypto.key_id(key),
        "salt": base64.b64encode(crypto.new_salt()).decode(),
        "nonce_prefix": base64.b64encode(crypto.new_nonce_prefix()).decode(),
        "segment_size": segment_size,
    }
