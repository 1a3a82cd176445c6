"""Compatibility: the committed v1 golden backups must decode to exactly these records, forever.

If this test fails, a change broke the reading of existing backups. Fix the reader; never
regenerate the golden files (their SHA-256 is pinned below).
"""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from portico.dr.archive import (
    EncryptionKeyRequired,
    WrongEncryptionKey,
    open_backup,
    read_manifest,
    verify_backup,
)
from tests.dr.archive_util import memory_container, put_bytes

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOLDEN_KEY = bytes(range(32))
PINNED = {
    "golden-v1-plain.portico": "622d9d16449c146c700ced3d382f998521e64a7d0d4700654437c9338991c0ac",
    "golden-v1-encrypted.portico": "3fc314a296cdf4ca13a6491462d32abda8755516e5cfa21d03335513badeb4c3",
}
EXPECTED: dict[str, Any] = orjson.loads((FIXTURES / "golden-v1-expected.json").read_bytes())


@pytest.mark.parametrize("name", sorted(PINNED))
def test_golden_files_are_unchanged(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == PINNED[name], (
        f"{name} was modified: golden files must never change"
    )
    first = b"\x89PORTBK\n" + struct.pack("<I", 1)
    assert data[:16] == first + struct.pack("<I", zlib.crc32(first))
    assert data.endswith(b"\nPORTEND")


@pytest.mark.parametrize("name", sorted(PINNED))
async def test_golden_records(name: str) -> None:
    c = memory_container()
    await put_bytes(c, "golden", (FIXTURES / name).read_bytes())
    key = GOLDEN_KEY if "encrypted" in name else None
    manifest = await read_manifest(c, "golden")
    d = manifest.to_dict()
    for field, value in {**EXPECTED["manifest"], **EXPECTED["files"][name]}.items():
        assert d[field] == value, field
    assert manifest.encrypted == (key is not None)
    reader = await open_backup(c, "golden", encryption_key=key)
    records = [r async for batch in reader.records(batch_size=5) for r in batch]
    assert len(records) == len(EXPECTED["records"])
    for got, want in zip(records, EXPECTED["records"], strict=True):
        assert (got.kind, got.parent, got.name, got.display_name, got.etag) == (
            want["kind"],
            want["parent"],
            want["name"],
            want["display_name"],
            want["etag"],
        )
        assert isinstance(got.data, bytes) and len(got.data) == want["data_len"]
        assert hashlib.sha256(got.data).hexdigest() == want["data_sha256"]
        if "data_b64" in want:
            assert got.data == base64.b64decode(want["data_b64"])
    report = await verify_backup(c, "golden", encryption_key=key)
    assert report.ok and report.contents_verified and report.record_count == len(records)


async def test_golden_encrypted_needs_its_key() -> None:
    c = memory_container()
    await put_bytes(c, "golden", (FIXTURES / "golden-v1-encrypted.portico").read_bytes())
    with pytest.raises(EncryptionKeyRequired):
        await open_backup(c, "golden")
    with pytest.raises(WrongEncryptionKey):
        await open_backup(c, "golden", encryption_key=bytes(32))
    keyless = await verify_backup(c, "golden")
    assert keyless.ok and keyless.payload_verified and not keyless.contents_verified
