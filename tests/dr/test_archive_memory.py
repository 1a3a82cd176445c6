"""Streaming: peak memory of writing and reading a backup does not grow with its size."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from portico.dr.archive import Record, open_backup, write_backup
from portico.dr.storage import AccountKey, LocalAccounts, open_container
from tests.dr.archive_util import manifest_input

MiB = 1024 * 1024


POOL = [os.urandom(1000).hex().encode() for _ in range(64)]  # 2 KB entities


async def source(n: int) -> AsyncIterator[list[Record]]:
    for start in range(0, n, 500):
        yield [
            Record("api", "", f"api-{i}", f"API {i}", f'"{i:x}"', POOL[i % 64])
            for i in range(start, min(n, start + 500))
        ]


async def peaks(tmp_path: Path, n: int, key: bytes | None) -> tuple[int, int, int]:
    root = tmp_path / f"storage{n}"
    accounts = LocalAccounts(root)
    k = accounts.create_account("acct1")
    accounts.create_container("acct1", "backups")
    c = open_container(
        "local", account="acct1", container="backups", credential=AccountKey("acct1", k), local_root=root
    )
    tracemalloc.start()
    try:
        writer = await c.open_writer("b")
        m = await write_backup(writer, manifest=manifest_input(), records=source(n), encryption_key=key)
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        reader = await open_backup(c, "b", encryption_key=key)
        count = 0
        async for batch in reader.records(batch_size=1000):
            count += len(batch)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    return write_peak, read_peak, m.plaintext_size


@pytest.mark.slow  # backs up and measures several sizes: seconds, not a unit test
async def test_peak_memory_is_independent_of_backup_size(tmp_path: Path) -> None:
    small = await peaks(tmp_path, 12_000, None)  # 30 MB of plaintext
    large = await peaks(tmp_path, 48_000, bytes(32))  # 120 MB, encrypted
    assert large[2] > 3.5 * small[2] > 80 * MiB  # several times more data ...
    assert large[0] < small[0] + 8 * MiB, (small, large)  # ... about the same peak when writing
    assert large[1] < small[1] + 8 * MiB, (small, large)  # ... and when reading
    assert large[0] < 48 * MiB and large[1] < 48 * MiB
    print(f"peaks (write, read, plaintext) small={small} large={large}")
