"""Helpers of the backup-format tests."""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from portico.dr.archive import Manifest, Record, open_backup, write_backup
from portico.dr.storage import AccountKey, BlobContainer, MemoryStorage, open_container

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def manifest_input(**overrides: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "source_service_id": "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg"
        "/providers/Microsoft.ApiManagement/service/contoso",
        "source_service_name": "contoso",
        "sku": {"name": "Developer", "capacity": 1},
        "location": "West Europe",
        "snapshot_time": NOW,
        "expires_at": NOW + timedelta(days=30),
    }
    m.update(overrides)
    return m


def memory_container() -> BlobContainer:
    store = MemoryStorage()
    key = store.create_account("acct")
    store.create_container("acct", "backups")
    return open_container(
        "memory", account="acct", container="backups", credential=AccountKey("acct", key), memory=store
    )


def sample_records(n: int = 10) -> list[Record]:
    recs = [Record("service", "", "contoso", None, '"s1"', b'{"name":"contoso","sku":{"name":"Developer"}}')]
    for i in range(n):
        recs.append(
            Record(
                "api",
                "",
                f"api-{i}",
                f"API {i}",
                f'"e{i}"',
                orjson.dumps(
                    {"name": f"api-{i}", "properties": {"path": f"p{i}", "displayName": f"API {i}"}}
                ),
            )
        )
        recs.append(Record("operation", f"apis/api-{i}", "get", "GET /", "", b'{"method":"GET"}'))
    recs += [
        Record("user", "", "ünïcødé", "Zoë ✓", '"u"', '{"name": "Zoë"}'.encode()),
        Record("tag", "", "empty-data", "", "", b""),
        Record("namedValue", "", "nul\x00name", "with\x00nul", "e\x00", b"\x00\x01\x02"),
        Record(
            "policy", "apis/api-0", "policy", None, '"p"', b"<policies>" + b"x" * 200_000 + b"</policies>"
        ),
    ]
    return recs


async def aiter_batches(records: list[Record], size: int) -> AsyncIterator[list[Record]]:
    for i in range(0, len(records), size):
        yield records[i : i + size]


async def write(
    container: BlobContainer,
    name: str,
    records: Iterable[Any] | AsyncIterator[Any],
    *,
    key: bytes | None = None,
    **kwargs: Any,
) -> Manifest:
    writer = await container.open_writer(name, {"origin": "test"})
    return await write_backup(
        writer, manifest=manifest_input(), records=records, encryption_key=key, **kwargs
    )


async def read_all(
    container: BlobContainer, name: str, *, key: bytes | None = None, batch_size: int = 1000
) -> list[Record]:
    reader = await open_backup(container, name, encryption_key=key)
    out: list[Record] = []
    async for batch in reader.records(batch_size=batch_size):
        assert 0 < len(batch) <= batch_size
        out.extend(batch)
    return out


async def blob_bytes(container: BlobContainer, name: str) -> bytes:
    return b"".join([c async for c in container.iter_chunks(name)])


async def put_bytes(container: BlobContainer, name: str, data: bytes) -> None:
    w = await container.open_writer(name)
    await w.write(data)
    await w.commit()


def split_blob(data: bytes) -> tuple[bytes, bytes, dict[str, Any], bytes]:
    """(header, payload, manifest, trailer) of a backup blob."""
    length, _crc = struct.unpack_from("<II", data, len(data) - 16)
    manifest_json = data[len(data) - 16 - length : len(data) - 16]
    return data[:16], data[16 : len(data) - 16 - length], orjson.loads(manifest_json), data[-16:]


def join_blob(header: bytes, payload: bytes, manifest: dict[str, Any]) -> bytes:
    """Reassemble a blob with a new manifest (valid CRC), as a forger or a future writer would."""
    mj = orjson.dumps(manifest)
    return header + payload + mj + struct.pack("<II", len(mj), zlib.crc32(mj)) + b"\nPORTEND"


def header_for(version: int) -> bytes:
    first = b"\x89PORTBK\n" + struct.pack("<I", version)
    return first + struct.pack("<I", zlib.crc32(first))
