"""Format v1 record stream: records packed into blocks, and the end marker carrying the seal."""

from __future__ import annotations

import struct
import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import accumulate, pairwise
from typing import Any

import orjson

from portico.dr.archive.envelope import MAX_MANIFEST_SIZE
from portico.dr.archive.errors import CorruptBackup, TruncatedBackup
from portico.dr.archive.model import Manifest, Record

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


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def sealed_part(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k not in PAYLOAD_FIELDS}


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
    return int(p + data_size)


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
        return start + int(length)

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
