"""The backup format: round trips, manifest, catalog metadata and every kind of damage."""

from __future__ import annotations

import os
import re
from collections import Counter
from datetime import timedelta
from typing import Any

import orjson
import pytest

from portico.dr.archive import (
    CATALOG_KEYS,
    BackupFormatError,
    CorruptBackup,
    EncryptionKeyRequired,
    ManifestCorrupt,
    NotABackup,
    Record,
    TruncatedBackup,
    UnsupportedFormatVersion,
    WrongEncryptionKey,
    catalog_entry,
    catalog_metadata,
    key_id,
    mark_verified,
    open_backup,
    read_manifest,
    v1,
    verify_backup,
    write_backup,
)
from portico.dr.storage import BlobNotFound, validate_metadata
from tests.dr.archive_util import (
    NOW,
    aiter_batches,
    blob_bytes,
    header_for,
    join_blob,
    manifest_input,
    memory_container,
    put_bytes,
    read_all,
    sample_records,
    split_blob,
    write,
)

KEY = bytes(range(32))


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
async def test_round_trip_with_batches(key: bytes | None) -> None:
    c = memory_container()
    recs = sample_records(50)
    m = await write(c, "b", aiter_batches(recs, 7), key=key)
    assert m.record_count == len(recs)
    assert m.counts == dict(Counter(r.kind for r in recs))
    assert await read_all(c, "b", key=key, batch_size=13) == recs
    assert await read_all(c, "b", key=key, batch_size=100_000) == recs


async def test_single_records_sync_iterables_and_tuples() -> None:
    c = memory_container()
    recs = sample_records(5)
    await write(c, "single", iter(recs))
    assert await read_all(c, "single") == recs
    mixed: list[Any] = [recs[0], tuple(recs[1:4]), recs[4:9], recs[9]]
    mixed += [[r] for r in recs[10:]]
    await write(c, "mixed", mixed)
    assert await read_all(c, "mixed") == recs


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
async def test_zero_records(key: bytes | None) -> None:
    c = memory_container()
    m = await write(c, "empty", [], key=key)
    assert (m.record_count, m.counts) == (0, {})
    assert await read_all(c, "empty", key=key) == []
    reader = await open_backup(c, "empty", encryption_key=key)
    assert [b async for b in reader.records()] == []


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
async def test_many_records(key: bytes | None) -> None:
    c = memory_container()
    kinds = ["user", "subscription", "api", "operation", "productApi"]
    recs = [
        Record(
            kinds[i % 5],
            f"apis/a{i % 7}" if i % 5 == 3 else "",
            f"n{i}",
            None if i % 3 else f"D {i}",
            f'"{i}"',
            orjson.dumps({"i": i, "pad": "x" * (i % 500)}),
        )
        for i in range(60_000)
    ]
    progress: list[tuple[int, int]] = []
    m = await write(
        c, "many", aiter_batches(recs, 1000), key=key, on_progress=lambda r, b: progress.append((r, b))
    )
    assert m.record_count == 60_000 and m.plaintext_size > 4 * v1.FRAME_SIZE  # several zstd frames
    assert progress[-1] == (60_000, m.payload_size)
    assert progress == sorted(progress)
    got = await read_all(c, "many", key=key, batch_size=999)
    assert got == recs
    read_progress: list[tuple[int, int]] = []
    reader = await open_backup(c, "many", encryption_key=key)
    async for _ in reader.records(on_progress=lambda r, b: read_progress.append((r, b))):
        pass
    assert read_progress[-1] == (60_000, m.payload_size)


async def test_small_segments_and_exact_multiples() -> None:
    c = memory_container()
    recs = sample_records(3)
    for seg in (1024, 4096):
        m = await write(c, f"seg{seg}", recs, key=KEY, segment_size=seg)
        assert m.encryption is not None and m.encryption.segment_size == seg
        assert await read_all(c, f"seg{seg}", key=KEY) == recs
    # the framed stream's size is not known in advance; try segment sizes around it
    framed = m.payload_size - -(-m.payload_size // (4096 + 16)) * 16
    for seg in (framed, framed - 1, framed + 1, framed // 2):
        if seg >= 1024:
            await write(c, "edge", recs, key=KEY, segment_size=seg)
            assert await read_all(c, "edge", key=KEY) == recs


async def test_reader_stopped_early() -> None:
    c = memory_container()
    recs = sample_records(2000)
    await write(c, "b", aiter_batches(recs, 100))
    reader = await open_backup(c, "b")
    it = reader.records(batch_size=10)
    first = await it.__anext__()  # type: ignore[attr-defined]
    assert first == recs[:10]
    await it.aclose()  # type: ignore[attr-defined]


# -- manifest and catalog ---------------------------------------------------------------------


async def test_manifest_fields() -> None:
    c = memory_container()
    recs = sample_records(3)
    m = await write(c, "b", recs, key=KEY)
    d = m.to_dict()
    assert d["format"] == "portico-backup" and d["format_version"] == 1
    assert d["source_service_name"] == "contoso" and d["sku"] == {"name": "Developer", "capacity": 1}
    assert d["snapshot_time"] == "2024-05-01T12:00:00.000000Z"
    assert d["expires_at"] == "2024-05-31T12:00:00.000000Z"
    assert d["compression"] == "zstd" and d["payload_offset"] == 16
    assert re.fullmatch(r"[0-9a-f]{64}", d["payload_sha256"]) and re.fullmatch(
        r"[0-9a-f]{64}", d["plaintext_sha256"]
    )
    enc = d["encryption"]
    assert enc["alg"] == "AES-256-GCM-STREAM" and enc["kdf"] == "HKDF-SHA256"
    assert enc["key_id"] == key_id(KEY) and len(enc["key_id"]) == 16
    assert KEY.hex() not in orjson.dumps(d).decode()
    info = await c.get_info("b")
    assert m.blob_size == info.size
    read = await read_manifest(c, "b")  # no key needed
    assert read.to_dict() == d and read.encrypted and read.key_id == key_id(KEY)
    assert read.snapshot_time == NOW and not read.is_expired(NOW + timedelta(days=29))
    assert read.is_expired(NOW + timedelta(days=30))


async def test_extra_manifest_fields_are_kept_and_sealed() -> None:
    c = memory_container()
    w = await c.open_writer("b")
    m = await write_backup(
        w, manifest=manifest_input(excluded=["users"], note="weekly"), records=sample_records(1)
    )
    assert m.extra == {"excluded": ["users"], "note": "weekly"}
    assert (await read_manifest(c, "b")).extra == m.extra


@pytest.mark.parametrize(
    "bad",
    [
        {"source_service_id": None},
        {"sku": "Developer"},
        {"snapshot_time": "2024-05-01T12:00:00"},  # no offset
        {"record_count": 5},
        {"encryption": None},
        {"unserialisable": object()},
    ],
)
async def test_bad_manifest_input(bad: dict[str, Any]) -> None:
    c = memory_container()
    w = await c.open_writer("b")
    m = manifest_input()
    m.update(bad)
    if bad == {"source_service_id": None}:
        del m["source_service_id"]
    with pytest.raises(ValueError):
        await write_backup(w, manifest=m, records=[])
    with pytest.raises(BlobNotFound):
        await c.get_info("b")


async def test_catalog_metadata_and_entry() -> None:
    c = memory_container()
    w = await c.open_writer("b", {"origin": "test"})
    m = await write_backup(
        w,
        manifest=manifest_input(location="Zürich Nord", source_service_name="svc"),
        records=sample_records(2),
        encryption_key=KEY,
    )
    info = await c.get_info("b")
    md = info.metadata
    assert md["origin"] == "test"  # the writer's own metadata is kept
    assert validate_metadata(md) == md
    assert set(md) - {"origin"} <= set(CATALOG_KEYS)
    assert md["size"] == str(info.size) and md["encrypted"] == "true" and md["key_id"] == key_id(KEY)
    assert md["location"] == "Z%C3%BCrich Nord"
    assert catalog_metadata(m) == {k: v for k, v in md.items() if k != "origin"}
    entry = catalog_entry(info)
    assert entry is not None
    assert (entry.service_name, entry.location, entry.sku_name, entry.sku_capacity) == (
        "svc",
        "Zürich Nord",
        "Developer",
        1,
    )
    assert entry.expires_at == NOW + timedelta(days=30) and entry.size == info.size and entry.encrypted
    assert entry.record_count == m.record_count and entry.verified_at is None
    assert entry.to_dict(NOW)["expired"] is False
    # also from the manifest as a dict (no blob size there)
    from_dict = catalog_metadata(m.to_dict())
    assert from_dict == {k: v for k, v in catalog_metadata(m).items() if k != "size"}
    await mark_verified(c, "b", when=NOW)
    entry = catalog_entry(await c.get_info("b"))
    assert entry is not None and entry.verified_at == NOW
    await put_bytes(c, "other", b"not a backup")
    assert catalog_entry(await c.get_info("other")) is None


# -- the writer's failures ----------------------------------------------------------------------


async def test_failing_source_aborts_the_blob() -> None:
    c = memory_container()

    async def source() -> Any:
        yield sample_records(2)
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        await write(c, "b", source())
    assert [i async for i in c.list()] == []


@pytest.mark.parametrize(
    "bad",
    [
        Record("api", "", "x", None, "", "not bytes"),  # type: ignore[arg-type]
        Record("", "", "x", None, "", b""),
        Record("api", "", 5, None, "", b""),  # type: ignore[arg-type]
        Record("api", "", "\ud800", None, "", b""),
        "not a record",
    ],
)
async def test_bad_records_are_refused(bad: Any) -> None:
    c = memory_container()
    with pytest.raises(ValueError):
        await write(c, "b", [sample_records(1), [bad]])
    assert [i async for i in c.list()] == []


@pytest.mark.parametrize("key", [b"short", b"x" * 33])
async def test_bad_key_length(key: bytes) -> None:
    c = memory_container()
    with pytest.raises(ValueError, match="32 bytes"):
        await write(c, "b", [], key=key)


async def test_commit_false_leaves_the_writer_to_the_caller() -> None:
    c = memory_container()
    w = await c.open_writer("b")
    m = await write_backup(w, manifest=manifest_input(), records=sample_records(1), commit=False)
    with pytest.raises(BlobNotFound):
        await c.get_info("b")
    info = await w.commit(catalog_metadata(m))
    assert info.size == m.blob_size
    assert await w.commit() == info  # idempotent
    assert await read_all(c, "b") == sample_records(1)


# -- damaged blobs ------------------------------------------------------------------------------


async def _make(key: bytes | None = None, n: int = 200) -> tuple[Any, bytes]:
    c = memory_container()
    await write(c, "good", aiter_batches(sample_records(n), 50), key=key)
    return c, await blob_bytes(c, "good")


async def expect(
    c: Any, data: bytes, exc: type[BackupFormatError], *, key: bytes | None = None, match: str | None = None
) -> str:
    await put_bytes(c, "bad", data)
    with pytest.raises(exc, match=match) as info:
        await read_all(c, "bad", key=key)
    report = await verify_backup(c, "bad", encryption_key=key)
    assert not report.ok and isinstance(report.error, exc)
    return str(info.value)


async def test_not_a_backup() -> None:
    c, _ = await _make()
    for data in (b"", b"hello", b"{}" * 100, os.urandom(5000), b"PK\x03\x04" + os.urandom(100)):
        msg = await expect(c, data, NotABackup)
        assert "not a Portico backup" in msg


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
async def test_truncated(key: bytes | None) -> None:
    c, data = await _make(key)
    for cut in (4, 16, 40, len(data) // 2, len(data) - 17, len(data) - 1):
        msg = await expect(c, data[:cut], TruncatedBackup, key=key)
        assert "truncated" in msg


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
async def test_flipped_byte_in_payload(key: bytes | None) -> None:
    c, data = await _make(key)
    _h, payload, _m, _t = split_blob(data)
    for where in (0, 9, len(payload) // 3, len(payload) - 5):
        bad = bytearray(data)
        bad[16 + where] ^= 0x40
        await expect(c, bytes(bad), CorruptBackup, key=key)


async def test_flipped_byte_in_manifest_and_header() -> None:
    c, data = await _make()
    _h, payload, _m, _t = split_blob(data)
    bad = bytearray(data)
    bad[16 + len(payload) + 30] ^= 0x01
    msg = await expect(c, bytes(bad), ManifestCorrupt)
    assert "CRC" in msg
    bad = bytearray(data)
    bad[9] ^= 0x01  # format version in the header
    await expect(c, bytes(bad), ManifestCorrupt)
    bad = bytearray(data)
    bad[-12] ^= 0x01  # the manifest's CRC itself
    await expect(c, bytes(bad), ManifestCorrupt)


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
async def test_forged_manifest_with_valid_crc(key: bytes | None) -> None:
    c, data = await _make(key)
    header, payload, m, _t = split_blob(data)
    for field, value in (
        ("expires_at", "2099-01-01T00:00:00.000000Z"),
        ("sku", {"name": "Premium", "capacity": 1}),
    ):
        forged = dict(m)
        forged[field] = value
        msg = await expect(c, join_blob(header, payload, forged), CorruptBackup, key=key)
        assert "sealed" in msg
    forged = dict(m)
    forged["record_count"] += 1
    forged["counts"] = dict(m["counts"], api=m["counts"]["api"] + 1)
    await expect(c, join_blob(header, payload, forged), CorruptBackup, key=key)
    forged = dict(m)
    forged["payload_sha256"] = "0" * 64
    msg = await expect(c, join_blob(header, payload, forged), CorruptBackup, key=key)
    assert "SHA-256" in msg
    forged = dict(m)
    del forged["plaintext_sha256"]
    await expect(c, join_blob(header, payload, forged), ManifestCorrupt, key=key)


async def test_encryption_key_errors() -> None:
    c, _ = await _make(KEY)
    with pytest.raises(EncryptionKeyRequired, match=key_id(KEY)):
        await open_backup(c, "good")
    other = os.urandom(32)
    with pytest.raises(WrongEncryptionKey) as info:
        await open_backup(c, "good", encryption_key=other)
    assert key_id(KEY) in str(info.value) and key_id(other) in str(info.value)
    assert KEY.hex() not in str(info.value) and other.hex() not in str(info.value)
    with pytest.raises(WrongEncryptionKey):
        await open_backup(c, "good", encryption_key=b"short")
    report = await verify_backup(c, "good", encryption_key=other)
    assert not report.ok and isinstance(report.error, WrongEncryptionKey)


async def test_key_id_matches_but_tag_fails() -> None:
    """A manifest whose key id was copied from another backup: GCM refuses the payload."""
    c, data = await _make(KEY)
    header, payload, m, _t = split_blob(data)
    other = os.urandom(32)
    forged = dict(m)
    forged["encryption"] = dict(m["encryption"], key_id=key_id(other))
    msg = await expect(c, join_blob(header, payload, forged), CorruptBackup, key=other)
    assert "authentication" in msg


async def test_key_ignored_for_plain_backup() -> None:
    c, _ = await _make(None)
    assert len(await read_all(c, "good", key=KEY)) == len(sample_records(200))


async def test_future_format_version() -> None:
    c, data = await _make()
    _h, payload, m, _t = split_blob(data)
    future = dict(m, format_version=2, portico_version="9.0.0")
    msg = await expect(c, join_blob(header_for(2), payload, future), UnsupportedFormatVersion)
    assert "format version 2" in msg and "9.0.0" in msg and "upgrade" in msg
    with pytest.raises(UnsupportedFormatVersion) as info:
        await read_manifest(c, "bad")
    assert info.value.version == 2


async def test_manifest_of_another_format() -> None:
    c, data = await _make()
    header, payload, m, _t = split_blob(data)
    await expect(c, join_blob(header, payload, dict(m, format="tarball")), ManifestCorrupt)
    await expect(c, join_blob(header, payload, dict(m, format_version="1")), ManifestCorrupt)


# -- verify -----------------------------------------------------------------------------------


async def test_verify_backup() -> None:
    c, data = await _make(KEY)
    report = await verify_backup(c, "good", encryption_key=KEY)
    assert report.ok and report.payload_verified and report.contents_verified
    assert report.record_count == len(sample_records(200))
    assert report.to_dict()["error"] is None
    keyless = await verify_backup(c, "good")
    assert keyless.ok and keyless.payload_verified and not keyless.contents_verified
    assert "no key" in keyless.message
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0xFF
    await put_bytes(c, "bad", bytes(bad))
    keyless = await verify_backup(c, "bad")
    assert not keyless.ok and isinstance(keyless.error, CorruptBackup)
    assert keyless.to_dict()["error"]["code"] == "CorruptBackup"
    with pytest.raises(BlobNotFound):
        await verify_backup(c, "missing")
