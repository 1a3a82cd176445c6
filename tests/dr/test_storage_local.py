"""Local-backend specifics: account keys at rest, trusted access, crash safety, concurrency."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from portico.dr.storage import (
    AccountKey,
    AccountNotFound,
    AuthenticationFailed,
    LocalAccounts,
    LocalTrusted,
    SasToken,
    open_container,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "storage"


def test_keys_are_stored_hashed(root: Path) -> None:
    accounts = LocalAccounts(root)
    key = accounts.create_account("acct1")
    doc = json.loads((root / "accounts.json").read_text())
    entry = doc["accounts"]["acct1"]
    assert key not in json.dumps(doc) and entry["key_hash"].startswith("scrypt$16384$8$1$")
    assert stat.S_IMODE(os.stat(root / "accounts.json").st_mode) == 0o600
    assert accounts.verify("acct1", key)
    assert not accounts.verify("acct1", "")
    with pytest.raises(AccountNotFound):
        accounts.verify("acct2", key)
    assert [a.name for a in accounts.list_accounts()] == ["acct1"]


async def test_trusted_access_and_other_credentials(root: Path) -> None:
    accounts = LocalAccounts(root)
    accounts.create_account("acct1")
    accounts.create_container("acct1", "backups")
    async with open_container(
        "local", account="acct1", container="backups", credential=LocalTrusted("acct1"), local_root=root
    ) as c:
        assert await c.exists()
    async with open_container(
        "local",
        account="acct1",
        container="backups",
        credential=SasToken("acct1", "sv=x&sig=y"),
        local_root=root,
    ) as c:
        with pytest.raises(AuthenticationFailed, match="access key"):
            await c.exists()
    async with open_container(
        "local", account="nosuch", container="backups", credential=LocalTrusted("nosuch"), local_root=root
    ) as c:
        with pytest.raises(AccountNotFound):
            await c.exists()


async def test_account_deleted_after_opening(root: Path) -> None:
    accounts = LocalAccounts(root)
    key = accounts.create_account("acct1")
    accounts.create_container("acct1", "backups")
    c = open_container(
        "local", account="acct1", container="backups", credential=AccountKey("acct1", key), local_root=root
    )
    assert await c.exists()
    accounts.delete_account("acct1")
    with pytest.raises(AccountNotFound):
        await c.exists()
    with pytest.raises(AccountNotFound):
        await c.open_writer("x")


async def test_interrupted_writes_leave_nothing_visible(root: Path) -> None:
    accounts = LocalAccounts(root)
    key = accounts.create_account("acct1")
    accounts.create_container("acct1", "backups")
    c = open_container(
        "local", account="acct1", container="backups", credential=AccountKey("acct1", key), local_root=root
    )
    w = await c.open_writer("crashed")
    await w.write(os.urandom(10_000))
    await w._flush()  # type: ignore[attr-defined]
    # the process "dies" here: the temporary file stays, nothing is visible
    assert [i async for i in c.list()] == []
    tmp_dir = root / "accounts" / "acct1" / "backups" / ".tmp"
    (left,) = list(tmp_dir.iterdir())
    # a later writer removes temporary files older than a day
    os.utime(left, (1, 1))
    await (await c.open_writer("other")).abort()
    assert not left.exists()
    # an orphaned data file (commit interrupted between its two renames) is not visible either
    (root / "accounts" / "acct1" / "backups" / "orphan.0123456789abcdef.blob").write_bytes(b"x")
    assert [i async for i in c.list()] == []


async def test_concurrent_writers_of_one_name(root: Path) -> None:
    accounts = LocalAccounts(root)
    key = accounts.create_account("acct1")
    accounts.create_container("acct1", "backups")
    c = open_container(
        "local", account="acct1", container="backups", credential=AccountKey("acct1", key), local_root=root
    )

    async def write(i: int) -> None:
        w = await c.open_writer("same", {"writer": str(i)})
        await w.write(str(i).encode() * 1000)
        await w.commit()

    await asyncio.gather(*(write(i) for i in range(8)))
    info = await c.get_info("same")
    data = await c.read_range("same", 0, 10_000)
    assert data == info.metadata["writer"].encode() * 1000
    files = [p.name for p in (root / "accounts" / "acct1" / "backups").iterdir() if p.name.endswith(".blob")]
    assert len(files) == 1  # replaced generations are removed
