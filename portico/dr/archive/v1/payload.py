"""Format v1 payload pipeline: zstd frames, optional encryption, and the background SHA-256."""

from __future__ import annotations

import asyncio
import hashlib
import struct
from concurrent.futures import ThreadPoolExecutor

import zstandard

from portico.dr.archive import crypto
from portico.dr.archive.errors import CorruptBackup, TruncatedBackup
from portico.dr.archive.model import Manifest

COMPRESSION = "zstd"
DEFAULT_COMPRESSION_LEVEL = 1
MAX_WINDOW_SIZE = 8 * 1024 * 1024  # writers must stay within it (levels 1-3 use <= 2 MiB)

FRAME_SIZE = 4 * 1024 * 1024  # plaintext per zstd frame written
MAX_FRAME_SIZE = 16 * 1024 * 1024  # largest plaintext per frame a reader accepts (bounds memory)
_FRAME = struct.Struct("<II")
DECODE_OUTPUT_LIMIT = 4 * 1024 * 1024  # plaintext decoded before records are parsed (bounded memory)


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
