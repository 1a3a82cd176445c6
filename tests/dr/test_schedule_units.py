"""Schedules without a server: cron/time-zone arithmetic, naming, retention over the memory
backend, the secret box, and the migration matching the schema."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from portico.dr.archive import catalog_metadata
from portico.dr.retention import prune
from portico.dr.schedules_model import Retention, backup_name, is_schedule_blob, next_run
from portico.dr.storage import AccountKey, MemoryStorage
from portico.secrets_box import SecretBox, SecretBoxError, load_or_create
from portico.settings import Settings

SVC_ID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ApiManagement/service/shop"


def test_next_run_follows_the_time_zone_across_dst() -> None:
    paris = ZoneInfo("Europe/Paris")
    # 02:30 does not exist in Paris on 2026-03-29 (clocks jump from 02:00 to 03:00)
    before = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    first = next_run("30 2 * * *", "Europe/Paris", before)
    assert first is not None and first.tzinfo == UTC
    assert first.astimezone(paris).date().isoformat() in ("2026-03-29", "2026-03-30")
    summer = next_run("0 3 * * *", "Europe/Paris", datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    winter = next_run("0 3 * * *", "Europe/Paris", datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    assert summer == datetime(2026, 7, 2, 1, 0, tzinfo=UTC) and winter == datetime(
        2026, 12, 2, 2, 0, tzinfo=UTC
    )
    at = datetime(2026, 1, 1, 0, 15, tzinfo=UTC)
    assert next_run("15 * * * *", "UTC", at) == at + timedelta(hours=1)  # strictly after


def test_names() -> None:
    when = datetime(2026, 5, 1, 2, 0, 7, 123, tzinfo=ZoneInfo("Europe/Paris"))
    name = backup_name("nightly/", "shop", when)
    assert name == "nightly/shop-20260501T000007Z"
    assert is_schedule_blob(name, "nightly/", "shop")
    assert not is_schedule_blob("nightly/shop-manual", "nightly/", "shop")
    assert not is_schedule_blob("nightly/shop-20260501T000007Z.bak", "nightly/", "shop")
    assert not is_schedule_blob("nightly/shopx-20260501T000007Z", "nightly/", "shop")


async def _put(
    container: object, name: str, created: datetime, service_id: str = SVC_ID, days: float = 30
) -> None:
    md = catalog_metadata(
        {
            "format_version": 1,
            "portico_version": "test",
            "source_service_name": service_id.rsplit("/", 1)[-1],
            "source_service_id": service_id,
            "sku": {"name": "Developer", "capacity": 1},
            "created_at": created.isoformat(),
            "snapshot_time": created.isoformat(),
            "expires_at": (created + timedelta(days=days)).isoformat(),
        }
    )
    writer = await container.open_writer(name, {})  # type: ignore[attr-defined]
    await writer.write(b"x")
    await writer.commit(md)


async def test_retention_rules() -> None:
    storage = MemoryStorage()
    key = storage.create_account("acct")
    storage.create_container("acct", "ccc")
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    async with storage.container("acct", "ccc", AccountKey("acct", key)) as c:
        made = []
        for i in range(6):  # one a day, the newest now
            t = now - timedelta(days=5 - i)
            made.append(backup_name("p/", "shop", t))
            await _put(c, made[-1], t)
        await _put(
            c, backup_name("p/", "shop", now - timedelta(days=40)), now - timedelta(days=40)
        )  # expired
        await _put(
            c, "p/shop-20200101T000000Z", now - timedelta(days=1), service_id=SVC_ID.replace("shop", "other")
        )
        w = await c.open_writer("p/shop-20200102T000000Z", {})
        await w.write(b"not a backup")
        await w.commit()

        r = await prune(
            c,
            prefix="p/",
            service_name="shop",
            service_arm_id=SVC_ID,
            retention=Retention(keep_last=4),
            now=now,
            protect={made[-1]},
        )
        assert (
            len(r.expired) == 1
            and sorted(r.deleted) == sorted(made[:2])
            and sorted(r.kept) == sorted(made[2:])
        )
        assert r.summary() == {"deleted": 3, "expired": 1, "kept": 4}
        r = await prune(
            c,
            prefix="p/",
            service_name="shop",
            service_arm_id=SVC_ID.upper(),
            retention=Retention(keep_days=1.5),
            now=now,
            protect={made[-1]},
        )
        assert sorted(r.deleted) == sorted(made[2:4]) and sorted(r.kept) == sorted(made[4:])
        # the protected (just made) backup survives even a policy that would delete it
        r = await prune(
            c,
            prefix="p/",
            service_name="shop",
            service_arm_id=SVC_ID,
            retention=Retention(keep_days=0.001),
            now=now + timedelta(days=1),
            protect={made[-1]},
        )
        assert r.deleted == [made[-2]] and r.kept == [made[-1]]
        left = sorted([i.name async for i in c.list("p/")])
        assert left == sorted([made[-1], "p/shop-20200101T000000Z", "p/shop-20200102T000000Z"])


def test_secret_box(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    box = load_or_create(s)
    assert oct(os.stat(tmp_path / "secret.key").st_mode & 0o777) == "0o600"
    assert load_or_create(s).key_id == box.key_id  # the same key on the next start
    sealed = box.seal(b"storage-key", b"schedule:1")
    assert b"storage-key" not in sealed and box.open(sealed, b"schedule:1") == b"storage-key"
    with pytest.raises(SecretBoxError, match="damaged"):
        box.open(sealed, b"schedule:2")  # bound to its owner
    other = SecretBox(os.urandom(32))
    with pytest.raises(SecretBoxError, match="another server secret key"):
        other.open(sealed, b"schedule:1")
    assert "storage" not in repr(box)


def test_migrations_create_the_schema(tmp_path: Path) -> None:
    """Alembic's head equals portico.store.schema for the schedules table (and all the others)."""
    import asyncio

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from portico.store.db import Database
    from portico.store.schema import metadata

    async def diff() -> list[object]:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
        await db.start()
        try:
            async with db.engine.connect() as conn:
                return await conn.run_sync(
                    lambda c: compare_metadata(MigrationContext.configure(c), metadata)
                )
        finally:
            await db.close()

    changes = [c for c in asyncio.run(diff()) if "backup_schedules" in str(c)]
    assert changes == []
