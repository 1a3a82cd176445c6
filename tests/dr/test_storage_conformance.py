"""The storage-backend contract, run against every backend: memory and local here, Azure (Azurite) in
`test_storage_conformance_azurite` (slow: it starts Azurite)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from portico.dr.archive import Record
from portico.dr.storage import (
    AccountKey,
    AccountNotFound,
    AuthenticationFailed,
    BlobContainer,
    BlobInfo,
    BlobNotFound,
    ContainerNotFound,
    InvalidMetadata,
    InvalidName,
    StorageError,
    open_container,
)
from tests.dr.storage_envs import StorageEnv, make_env, random_key, unique_container

BACKENDS = ["memory", "local"]


@pytest.fixture(params=BACKENDS)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageEnv]:
    e = make_env(request.param, tmp_path, None)
    yield e
    await e.close()


@pytest.fixture
async def container(env: StorageEnv) -> BlobContainer:
    name = unique_container()
    await env.create_container(name)
    return env.open(name)


async def put(c: BlobContainer, name: str, data: bytes, metadata: dict[str, str] | None = None) -> BlobInfo:
    w = await c.open_writer(name, metadata or {})
    for i in range(0, len(data), 700):
        await w.write(data[i : i + 700])
    return await w.commit()


async def read_all(c: BlobContainer, name: str, chunk_size: int = 1000) -> bytes:
    return b"".join([chunk async for chunk in c.iter_chunks(name, chunk_size)])


async def names(c: BlobContainer, prefix: str = "") -> list[str]:
    return [i.name async for i in c.list(prefix)]


# -- containers ---------------------------------------------------------------------------------


async def test_container_exists(env: StorageEnv) -> None:
    name = unique_container()
    c = env.open(name)
    assert await c.exists() is False
    await env.create_container(name)
    assert await c.exists() is True


async def test_missing_container_refuses_writes_and_writes_nothing(env: StorageEnv) -> None:
    name = unique_container()
    c = env.open(name)
    with pytest.raises(ContainerNotFound, match=name):
        await c.open_writer("backup.bin", {"a": "b"})
    with pytest.raises(ContainerNotFound):
        await c.get_info("backup.bin")
    with pytest.raises(ContainerNotFound):
        await names(c)
    assert await c.exists() is False


async def test_container_deleted_while_writing_fails_commit(env: StorageEnv) -> None:
    if env.backend == "azure":
        pytest.skip("deleting an Azure container is asynchronous")
    name = unique_container()
    await env.create_container(name)
    c = env.open(name)
    w = await c.open_writer("x")
    await w.write(b"abc")
    if env.backend == "memory":
        assert env.memory is not None
        env.memory.delete_container(env.account, name)
    else:
        from portico.dr.storage import LocalAccounts

        assert env.local_root is not None
        LocalAccounts(env.local_root).delete_container(env.account, name, force=True)
    with pytest.raises(ContainerNotFound):
        await w.commit()


# -- write, read ------------------------------------------------------------------------------


async def test_small_blob_round_trip(container: BlobContainer) -> None:
    info = await put(container, "small.bin", b"hello world", {"kind": "test", "Mixed_Case": "Value 1"})
    assert info.name == "small.bin" and info.size == 11
    got = await container.get_info("small.bin")
    assert got.size == 11
    assert got.metadata == {"kind": "test", "Mixed_Case": "Value 1"}
    assert got.last_modified.tzinfo is not None
    assert await container.read_range("small.bin", 0, 11) == b"hello world"
    assert await read_all(container, "small.bin") == b"hello world"


async def test_empty_blob(container: BlobContainer) -> None:
    info = await put(container, "empty", b"")
    assert info.size == 0
    assert (await container.get_info("empty")).size == 0
    assert await read_all(container, "empty") == b""
    assert await container.read_range("empty", 0, 10) == b""


async def test_multi_block_blob(container: BlobContainer) -> None:
    data = os.urandom(5 * 1024 + 123)  # block_size is 1024 in these tests: 6 blocks
    w = await container.open_writer("dir/big.bin", {"n": "1"})
    for i in range(0, len(data), 333):
        await w.write(data[i : i + 333])
    info = await w.commit()
    assert info.size == len(data)
    assert (await container.get_info("dir/big.bin")).size == len(data)
    assert await read_all(container, "dir/big.bin", chunk_size=700) == data
    assert await read_all(container, "dir/big.bin", chunk_size=1 << 20) == data
    chunks = [c async for c in container.iter_chunks("dir/big.bin", 1000)]
    assert [len(c) for c in chunks[:-1]] == [1000] * (len(chunks) - 1)


async def test_range_reads(container: BlobContainer) -> None:
    data = bytes(range(256)) * 20
    await put(container, "r", data)
    assert await container.read_range("r", 0, 10) == data[:10]
    assert await container.read_range("r", 1000, 2500) == data[1000:3500]
    assert await container.read_range("r", len(data) - 5, 100) == data[-5:]
    assert await container.read_range("r", len(data), 10) == b""
    assert await container.read_range("r", len(data) + 100, 10) == b""
    assert await container.read_range("r", 7, 0) == b""


async def test_iter_chunks_with_offset_and_length(container: BlobContainer) -> None:
    data = os.urandom(4000)
    await put(container, "o", data)
    got = b"".join([c async for c in container.iter_chunks("o", 300, offset=123, length=2000)])
    assert got == data[123:2123]
    got = b"".join([c async for c in container.iter_chunks("o", 300, offset=3900)])
    assert got == data[3900:]
    got = b"".join([c async for c in container.iter_chunks("o", 300, offset=3990, length=100)])
    assert got == data[3990:]


async def test_iter_chunks_stopped_early(container: BlobContainer) -> None:
    await put(container, "early", os.urandom(10_000))
    it = container.iter_chunks("early", 1000)
    first = await it.__anext__()  # type: ignore[attr-defined]
    assert len(first) == 1000
    await it.aclose()  # type: ignore[attr-defined]


async def test_overwrite_replaces_blob(container: BlobContainer) -> None:
    await put(container, "same", b"first version", {"v": "1"})
    await put(container, "same", b"second", {"v": "2"})
    info = await container.get_info("same")
    assert (info.size, info.metadata) == (6, {"v": "2"})
    assert await read_all(container, "same") == b"second"
    assert await names(container) == ["same"]


async def test_commit_can_replace_metadata(container: BlobContainer) -> None:
    w = await container.open_writer("m", {"phase": "start"})
    await w.write(b"x" * 3000)
    info = await w.commit({"phase": "done", "size": "3000"})
    assert info.metadata == {"phase": "done", "size": "3000"}
    assert (await container.get_info("m")).metadata == {"phase": "done", "size": "3000"}


async def test_set_metadata(container: BlobContainer) -> None:
    await put(container, "s", b"data", {"a": "1"})
    await container.set_metadata("s", {"b": "2", "c": "three"})
    info = await container.get_info("s")
    assert info.metadata == {"b": "2", "c": "three"}
    assert await read_all(container, "s") == b"data"


async def test_list_with_prefix_and_metadata(container: BlobContainer) -> None:
    await put(container, "b/1", b"3", {"k": "b1"})
    await put(container, "a/2", b"22", {"k": "a2"})
    await put(container, "a/1", b"1", {"k": "a1"})
    await put(container, "ab", b"4444")
    all_infos = [i async for i in container.list()]
    assert [i.name for i in all_infos] == ["a/1", "a/2", "ab", "b/1"]
    a = [i async for i in container.list("a/")]
    assert [(i.name, i.size, i.metadata) for i in a] == [("a/1", 1, {"k": "a1"}), ("a/2", 2, {"k": "a2"})]
    assert await names(container, "zzz") == []


async def test_delete(container: BlobContainer) -> None:
    await put(container, "d", b"x")
    await container.delete("d")
    with pytest.raises(BlobNotFound):
        await container.get_info("d")
    assert await names(container) == []
    with pytest.raises(BlobNotFound):
        await container.delete("d")


# -- visibility -------------------------------------------------------------------------------


async def test_abort_leaves_nothing(container: BlobContainer) -> None:
    w = await container.open_writer("aborted", {"x": "y"})
    await w.write(os.urandom(5000))
    await w.abort()
    await w.abort()  # idempotent
    with pytest.raises(BlobNotFound):
        await container.get_info("aborted")
    assert await names(container) == []
    with pytest.raises(StorageError):
        await w.write(b"more")


async def test_async_with_aborts_on_error(container: BlobContainer) -> None:
    with pytest.raises(RuntimeError):
        async with await container.open_writer("ctx") as w:
            await w.write(b"x" * 4000)
            raise RuntimeError("boom")
    assert await names(container) == []


async def test_uncommitted_writer_is_invisible(container: BlobContainer) -> None:
    await put(container, "existing", b"old")
    w = await container.open_writer("pending")
    await w.write(os.urandom(4000))  # several blocks staged
    w2 = await container.open_writer("existing")
    await w2.write(os.urandom(4000))
    with pytest.raises(BlobNotFound):
        await container.get_info("pending")
    assert await names(container) == ["existing"]
    assert await read_all(container, "existing") == b"old"
    await w.commit()
    await w2.abort()
    assert await names(container) == ["existing", "pending"]
    assert await read_all(container, "existing") == b"old"


async def test_missing_blob(container: BlobContainer) -> None:
    for call in (
        lambda: container.get_info("nope"),
        lambda: container.read_range("nope", 0, 10),
        lambda: container.delete("nope"),
        lambda: container.set_metadata("nope", {"a": "b"}),
        lambda: read_all(container, "nope"),
    ):
        with pytest.raises(BlobNotFound, match="nope"):
            await call()


# -- credentials ------------------------------------------------------------------------------


async def test_wrong_key(env: StorageEnv, container: BlobContainer) -> None:
    await put(container, "secret", b"x")
    bad_key = random_key()
    c = env.open(container.container, credential=AccountKey(env.account, bad_key))
    for call in (
        c.exists,
        lambda: c.open_writer("y"),
        lambda: c.get_info("secret"),
        lambda: c.read_range("secret", 0, 1),
        lambda: names(c),
        lambda: c.delete("secret"),
    ):
        with pytest.raises(AuthenticationFailed) as info:
            await call()
        assert bad_key not in str(info.value) and bad_key not in repr(info.value)
        assert env.key not in str(info.value)
    assert await names(container) == ["secret"]


async def test_unknown_account(env: StorageEnv) -> None:
    key = random_key()
    c = env.open("anything", account=env.unknown_account, credential=AccountKey(env.unknown_account, key))
    for call in (c.exists, lambda: c.open_writer("x"), lambda: c.get_info("x"), lambda: names(c)):
        with pytest.raises(AccountNotFound) as info:
            await call()
        assert key not in str(info.value)


def test_credential_for_another_account(env: StorageEnv) -> None:
    with pytest.raises(AuthenticationFailed, match="otheraccount"):
        env.open("somecontainer", credential=AccountKey("otheraccount", env.key))


def test_credentials_hide_secrets(env: StorageEnv) -> None:
    cred = AccountKey(env.account, env.key)
    assert env.key not in repr(cred) and env.key not in str(cred)
    c = env.open("somecontainer")
    assert env.key not in repr(c)


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["ab", "-abc", "abc-", "a--bc", "ABC", "abc_d", "a" * 64, "abc.d", ""])
def test_bad_container_names(env: StorageEnv, bad: str) -> None:
    with pytest.raises(InvalidName):
        env.open(bad)


@pytest.mark.parametrize("bad", ["ab", "ABC", "a-b-c", "a" * 25, "abc_d", ""])
def test_bad_account_names(env: StorageEnv, bad: str) -> None:
    with pytest.raises(InvalidName):
        open_container(
            env.backend,
            account=bad,
            container="valid",
            credential=AccountKey(bad, "a2V5"),
            local_root=env.local_root,
        )


BAD_BLOBS = ["", "../x", "a/../b", "..", "/abs", "a\\b", "a\x00b", "x" * 1025, "a/./b", "dir/", "trailing."]


@pytest.mark.parametrize("bad", BAD_BLOBS)
async def test_bad_blob_names(container: BlobContainer, bad: str) -> None:
    for call in (
        lambda: container.open_writer(bad),
        lambda: container.get_info(bad),
        lambda: container.read_range(bad, 0, 1),
        lambda: container.delete(bad),
    ):
        with pytest.raises(InvalidName):
            await call()
    assert await names(container) == []


async def test_unusual_but_valid_blob_names(container: BlobContainer) -> None:
    valid = ["a b", "émoji-✓", "x" * 1024, "deep/" * 20 + "leaf", "%2E", "~tilde", ".hidden", "a..b"]
    for i, name in enumerate(valid):
        await put(container, name, str(i).encode())
    assert sorted(await names(container)) == sorted(valid)
    for i, name in enumerate(valid):
        assert await read_all(container, name) == str(i).encode()


@pytest.mark.parametrize(
    "bad",
    [{"1abc": "x"}, {"a-b": "x"}, {"ok": "caf\u00e9"}, {"ok": "line\nbreak"}, {"ok": " padded"}, {"": "x"}],
)
async def test_bad_metadata(container: BlobContainer, bad: dict[str, str]) -> None:
    with pytest.raises(InvalidMetadata):
        await container.open_writer("m", bad)
    await put(container, "m", b"x")
    with pytest.raises(InvalidMetadata):
        await container.set_metadata("m", bad)


# -- the backup format on this backend ----------------------------------------------------------


@pytest.mark.parametrize("key", [None, bytes(range(32))], ids=["plain", "encrypted"])
async def test_backup_round_trip(container: BlobContainer, key: bytes | None) -> None:
    from portico.dr.archive import catalog_entry, open_backup, verify_backup, write_backup
    from tests.dr.archive_util import aiter_batches, manifest_input, sample_records

    recs = sample_records(300) + [Record("blob", "", f"r{i}", None, "", os.urandom(700)) for i in range(20)]
    writer = await container.open_writer("backups/b1.portico", {"origin": "conformance"})
    m = await write_backup(
        writer, manifest=manifest_input(), records=aiter_batches(recs, 64), encryption_key=key
    )
    info = await container.get_info("backups/b1.portico")
    assert info.size == m.blob_size and info.size > 3 * 1024  # several blocks of 1 KiB
    entry = catalog_entry(info)
    assert entry is not None and entry.record_count == len(recs) and info.metadata["origin"] == "conformance"
    reader = await open_backup(container, "backups/b1.portico", encryption_key=key)
    got = [r async for batch in reader.records(batch_size=100) for r in batch]
    assert got == recs
    assert (await verify_backup(container, "backups/b1.portico", encryption_key=key)).ok
