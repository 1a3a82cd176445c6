"""Streaming AES-256-GCM (the STREAM construction, as in Tink's AES-GCM-HKDF streaming AEAD).

* A per-backup payload key is derived from the operator's key with HKDF-SHA256 and a random
  32-byte salt, so no two backups share a GCM key even when they share the operator key.
* The stored bytes are cut into segments of `segment_size` plaintext bytes; each is sealed
  separately, with nonce ``prefix(7 random bytes) || segment index (u32 BE) || last flag (1 byte)``
  and the file header as associated data. Reordering, dropping, duplicating or appending segments,
  or cutting the stream at a segment boundary, all fail authentication.
* Every segment but the last holds exactly `segment_size` bytes; the last holds 1..segment_size
  (0 only when the whole stream is empty), so the segment boundaries follow from the payload size.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from portico.dr.archive.errors import CorruptBackup

ALG = "AES-256-GCM-STREAM"
KDF = "HKDF-SHA256"
KEY_SIZE = 32
SALT_SIZE = 32
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
DEFAULT_SEGMENT_SIZE = 1024 * 1024
MIN_SEGMENT_SIZE = 1024
MAX_SEGMENT_SIZE = 64 * 1024 * 1024
MAX_SEGMENTS = 2**32
_KEY_ID_DOMAIN = b"portico-backup key-id v1\x00"
_HKDF_INFO = b"portico-backup v1 payload key"


def check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        raise ValueError("the backup encryption key must be 32 bytes (AES-256)")
    return bytes(key)


def key_id(key: bytes) -> str:
    """Public fingerprint of a key: the first 16 hex digits of SHA-256(domain || key)."""
    return hashlib.sha256(_KEY_ID_DOMAIN + check_key(key)).hexdigest()[:16]


def derive_payload_key(key: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=_HKDF_INFO).derive(check_key(key))


def new_salt() -> bytes:
    return os.urandom(SALT_SIZE)


def new_nonce_prefix() -> bytes:
    return os.urandom(NONCE_PREFIX_SIZE)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= MAX_SEGMENTS:
        raise ValueError("too many segments")
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class SegmentEncryptor:
    """Feed the stored stream; get sealed segments back. Not thread-safe (one thread at a time)."""

    def __init__(self, key: bytes, salt: bytes, nonce_prefix: bytes, segment_size: int, aad: bytes) -> None:
        self._aead = AESGCM(derive_payload_key(key, salt))
        self._prefix = nonce_prefix
        self._size = segment_size
        self._aad = aad
        self._buf = bytearray()
        self._index = 0

    def _seal(self, data: bytes, last: bool) -> bytes:
        out = self._aead.encrypt(_nonce(self._prefix, self._index, last), data, self._aad)
        self._index += 1
        return out

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        if len(self._buf) <= self._size:  # hold back: a full segment may turn out to be the last
            return b""
        out = []
        view = memoryview(self._buf)
        pos = 0
        while len(self._buf) - pos > self._size:
            out.append(self._seal(bytes(view[pos : pos + self._size]), last=False))
            pos += self._size
        view.release()
        del self._buf[:pos]
        return b"".join(out)

    def finish(self, data: bytes = b"") -> bytes:
        """Seal `data` and whatever is buffered, ending with the last segment."""
        out = self.feed(data) if data else b""
        last = self._seal(bytes(self._buf), last=True)
        self._buf = bytearray()
        return out + last


class SegmentDecryptor:
    """Feed the stored stream of a payload of `payload_size` bytes; get the plaintext back."""

    def __init__(
        self, key: bytes, salt: bytes, nonce_prefix: bytes, segment_size: int, aad: bytes, payload_size: int
    ) -> None:
        self._aead = AESGCM(derive_payload_key(key, salt))
        self._prefix = nonce_prefix
        self._size = segment_size
        self._sealed = segment_size + TAG_SIZE
        self._aad = aad
        self._buf = bytearray()
        self._index = 0
        n = max(1, -(-payload_size // self._sealed))
        last = payload_size - (n - 1) * self._sealed
        if payload_size < TAG_SIZE or last < TAG_SIZE or (n > 1 and last == TAG_SIZE):
            raise CorruptBackup(
                f"encrypted payload size {payload_size} is impossible for segments of {segment_size} bytes"
            )
        self._count = n
        self._last_size = last

    def _open(self, data: bytes, last: bool) -> bytes:
        try:
            out = self._aead.decrypt(_nonce(self._prefix, self._index, last), data, self._aad)
        except InvalidTag:
            raise CorruptBackup(
                f"encrypted segment {self._index} failed authentication: the backup was modified or damaged"
            ) from None
        self._index += 1
        return out

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out = []
        view = memoryview(self._buf)
        pos = 0
        while self._index < self._count - 1 and len(self._buf) - pos >= self._sealed:
            out.append(self._open(bytes(view[pos : pos + self._sealed]), last=False))
            pos += self._sealed
        view.release()
        if pos:
            del self._buf[:pos]
        if self._index == self._count - 1 and len(self._buf) > self._last_size:
            raise CorruptBackup("encrypted payload is longer than its manifest says")
        return b"".join(out)

    def finish(self) -> bytes:
        if self._index != self._count - 1 or len(self._buf) != self._last_size:
            raise CorruptBackup("encrypted payload is shorter than its manifest says")
        out = self._open(bytes(self._buf), last=True)
        self._buf = bytearray()
        return out
