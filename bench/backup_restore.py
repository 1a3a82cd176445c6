"""Backup and restore of the BRIEF's large service, end to end as the Azure SDK drives it.

    .venv/bin/python bench/backup_restore.py [--db sqlite|postgres] [--scale 1.0] [--rss-scale 0.1]

Starts Azurite and two Portico servers (source and standby: "restore into another instance"),
seeds the large service into the source's database, then measures in the same run:
- backup: `begin_backup(...).result()` wall time (SDK polling included), server-side duration, bytes;
- restore into the standby: the same;
- the floor: reading the same rows straight from the database + uploading the same bytes with
  azure-storage-blob (backup), and downloading them + inserting the same rows into an empty table
  (restore) — no Portico logic in between;
- peak RSS of the server process during each operation (VmHWM, reset before each), at two service
  sizes, to show memory does not grow with the service.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from azure.mgmt.apimanagement import models as M  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402

from bench.large_service import scaled, seed  # noqa: E402
from portico.secrets_box import SecretBox  # noqa: E402
from tests.conftest import sdk_client  # noqa: E402
from tests.e2e.dr_support import SUB, Rest  # noqa: E402
from tests.support.azurite import run_azurite  # noqa: E402
from tests.support.postgres import create_database, postgres_cluster  # noqa: E402
from tests.support.server import PorticoServer, free_port  # noqa: E402


def _peak_rss_reset(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _db_url(server: PorticoServer) -> str:
    return server.env.get("PORTICO_DATABASE_URL") or f"sqlite+aiosqlite:///{server.data_dir / 'portico.db'}"


def _store_id(server: PorticoServer, service: str) -> int:
    async def q() -> int:
        from sqlalchemy import select

        from portico.store.db import Database
        from portico.store.schema import services

        db = Database(_db_url(server))
        try:
            async with db.read() as conn:
                return int(
                    (
                        await conn.execute(
                            select(services.c.active_store_id).where(services.c.name_key == service)
                        )
                    ).scalar_one()
                )
        finally:
            await db.close()

    return asyncio.run(q())


COLUMNS = "kind, parent, name, display_name, etag, data"


def floor_read(server: PorticoServer, store: int) -> tuple[float, list[tuple[Any, ...]]]:
    url = _db_url(server)
    t = time.perf_counter()
    if url.startswith("sqlite"):
        con = sqlite3.connect(url.split(":///", 1)[1])
        rows = con.execute(
            f"SELECT {COLUMNS} FROM entities WHERE store_id = ? ORDER BY kind, parent, name", (store,)
        ).fetchall()
        con.close()
    else:
        import asyncpg

        async def fetch() -> list[tuple[Any, ...]]:
            con = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
            try:
                recs = await con.fetch(
                    f"SELECT {COLUMNS} FROM entities WHERE store_id = $1 ORDER BY kind, parent, name", store
                )
                return [tuple(r) for r in recs]
            finally:
                await con.close()

        rows = asyncio.run(fetch())
    return time.perf_counter() - t, rows


def floor_insert(url: str, rows: list[tuple[Any, ...]]) -> float:
    if url.startswith("sqlite"):
        with tempfile.TemporaryDirectory() as d:
            con = sqlite3.connect(Path(d) / "floor.db", isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute(
                "CREATE TABLE entities (store_id INTEGER, kind TEXT, parent TEXT, name TEXT, display_name TEXT, etag TEXT, data TEXT,"
                " PRIMARY KEY (store_id, kind, parent, name)) WITHOUT ROWID"
            )
            con.execute("CREATE INDEX ix ON entities (store_id, kind, name)")
            t = time.perf_counter()
            con.execute("BEGIN")
            con.executemany("INSERT INTO entities VALUES (1, ?, ?, ?, ?, ?, ?)", rows)
            con.execute("COMMIT")
            elapsed = time.perf_counter() - t
            con.close()
            return elapsed
    import asyncpg

    async def ins() -> float:
        con = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            await con.execute(
                "CREATE TEMP TABLE floor_entities (store_id int, kind text, parent text, name text, display_name text, etag text, data text,"
                " PRIMARY KEY (store_id, kind, parent, name))"
            )
            t = time.perf_counter()
            await con.copy_records_to_table("floor_entities", records=[(1, *r) for r in rows])
            return time.perf_counter() - t
        finally:
            await con.close()

    return asyncio.run(ins())


def server_seconds(server: PorticoServer, kind: str) -> float:
    """Duration of the newest operation of `kind` as the server recorded it (no client polling)."""

    async def q() -> float:
        from sqlalchemy import select

        from portico.store.db import Database
        from portico.store.schema import operations

        db = Database(_db_url(server))
        try:
            async with db.read() as conn:
                r = (
                    await conn.execute(
                        select(operations)
                        .where(operations.c.kind == kind)
                        .order_by(operations.c.started_at.desc())
                        .limit(1)
                    )
                ).first()
                assert r is not None and r.status == "Succeeded", r
                return float((r.ended_at - r.started_at).total_seconds())
        finally:
            await db.close()

    return asyncio.run(q())


def run_op(server: PorticoServer, fn: Any) -> tuple[float, float]:
    assert server.proc is not None
    _peak_rss_reset(server.proc.pid)
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t, _peak_rss_mb(server.proc.pid)


def measure(
    args: argparse.Namespace, scale: float, az: Any, pg: str | None, tmp: Path, with_floor: bool
) -> dict[str, Any]:
    account = az.account_names[0]
    key = az.key(account)
    # Management nodes: no gateway in the process (it would load the large service as well).
    env = {
        "PORTICO_GATEWAY_PORT": "0",
        "PORTICO_GATEWAY_HTTPS_PORT": "0",
        "PORTICO_STORAGE_BACKEND": "azure",
        "PORTICO_BLOB_ENDPOINT_TEMPLATE": az.endpoint_template,
        "PORTICO_LOG_LEVEL": "warning",
    }
    servers = []
    keys = {name: base64.b64encode(os.urandom(32)).decode() for name in ("source", "standby")}
    for name in ("source", "standby"):
        e = dict(env, PORTICO_SECRET_KEY=keys[name])  # each instance its own server secret key
        if pg:
            e["PORTICO_DATABASE_URL"] = create_database(
                pg, f"bench_{name}_{int(scale * 1000)}_{time.time_ns() % 10**6}"
            )
        servers.append(PorticoServer(tmp / f"{name}-{scale}", free_port(), e).start())
    source, standby = servers
    try:
        Rest(source).service("rg", "large")
        Rest(standby).service("rg", "standby")
        size = scaled(scale)
        t = time.perf_counter()
        # secrets sealed with the source's key, as the server stores them
        box = SecretBox(base64.b64decode(keys["source"]))
        count = asyncio.run(seed(_db_url(source), "large", size, box))
        print(f"  seeded {count:,} entities in {time.perf_counter() - t:.1f}s", flush=True)
        blob = f"large-{scale}-{time.time_ns()}"
        params = M.ApiManagementServiceBackupRestoreParameters(
            storage_account=account, container_name="bench", backup_name=blob, access_key=key
        )
        src_client, dst_client = sdk_client(source, SUB), sdk_client(standby, SUB)
        backup_s, backup_rss = run_op(
            source, lambda: src_client.api_management_service.begin_backup("rg", "large", params).result()
        )
        restore_s, restore_rss = run_op(
            standby, lambda: dst_client.api_management_service.begin_restore("rg", "standby", params).result()
        )
        container = BlobServiceClient(
            az.endpoint(account), credential={"account_name": account, "account_key": key}
        ).get_container_client("bench")
        blob_client = container.get_blob_client(blob)
        size_bytes = blob_client.get_blob_properties().size
        out: dict[str, Any] = {
            "scale": scale,
            "entities": count,
            "backup_s": backup_s,
            "restore_s": restore_s,
            "blob_bytes": size_bytes,
            "backup_server_s": server_seconds(source, "backup"),
            "restore_server_s": server_seconds(standby, "restore"),
            "backup_peak_rss_mb": backup_rss,
            "restore_peak_rss_mb": restore_rss,
        }
        if with_floor:
            read_s, rows = floor_read(source, _store_id(source, "large"))
            data = blob_client.download_blob(max_concurrency=4).readall()
            t = time.perf_counter()
            container.get_blob_client(blob + "-floor").upload_blob(data, max_concurrency=4, overwrite=True)
            upload_s = time.perf_counter() - t
            t = time.perf_counter()
            blob_client.download_blob(max_concurrency=4).readall()
            download_s = time.perf_counter() - t
            insert_s = floor_insert(_db_url(standby), rows)
            out.update(
                floor_read_s=read_s,
                floor_upload_s=upload_s,
                floor_download_s=download_s,
                floor_insert_s=insert_s,
                backup_floor_s=read_s + upload_s,
                restore_floor_s=download_s + insert_s,
            )
        return out
    finally:
        for s in servers:
            s.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the large service (1.0 = BRIEF's)")
    ap.add_argument(
        "--rss-scale", type=float, default=0.1, help="a smaller size, to compare peak RSS; 0 to skip"
    )
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="portico-bench-") as d, run_azurite() as az:
        acct = az.account_names[0]
        BlobServiceClient(
            az.endpoint(acct), credential={"account_name": acct, "account_key": az.key(acct)}
        ).create_container("bench")
        pg_ctx = postgres_cluster() if args.db == "postgres" else None
        pg = pg_ctx.__enter__() if pg_ctx else None
        try:
            scales = [args.scale] + ([args.rss_scale] if args.rss_scale else [])
            for i, scale in enumerate(scales):
                print(f"scale {scale} ({args.db}):", flush=True)
                results.append(measure(args, scale, az, pg, Path(d), with_floor=i == 0))
        finally:
            if pg_ctx:
                pg_ctx.__exit__(None, None, None)
    main_r = results[0]
    print()
    print(
        f"machine: {platform.machine()}, {platform.python_version()}, {os.cpu_count()} cores; database {args.db}"
    )
    print(f"service: {main_r['entities']:,} entities; backup blob {main_r['blob_bytes'] / 1e6:.1f} MB")
    print(f"{'':10} {'portico':>9} {'floor':>9} {'ratio':>7} {'target':>8}  peak RSS")
    print(
        f"{'backup':10} {main_r['backup_s']:8.2f}s {main_r['backup_floor_s']:8.2f}s {main_r['backup_s'] / main_r['backup_floor_s']:6.2f}x {'<=5s':>8}  {main_r['backup_peak_rss_mb']:.0f} MB"
    )
    print(
        f"{'restore':10} {main_r['restore_s']:8.2f}s {main_r['restore_floor_s']:8.2f}s {main_r['restore_s'] / main_r['restore_floor_s']:6.2f}x {'<=10s':>8}  {main_r['restore_peak_rss_mb']:.0f} MB"
    )
    print(
        f"server-side (no SDK polling): backup {main_r['backup_server_s']:.2f}s, restore {main_r['restore_server_s']:.2f}s"
    )
    print(
        f"floor parts: read {main_r['floor_read_s']:.2f}s + upload {main_r['floor_upload_s']:.2f}s; download {main_r['floor_download_s']:.2f}s + insert {main_r['floor_insert_s']:.2f}s"
    )
    for r in results[1:]:
        print(
            f"at scale {r['scale']} ({r['entities']:,} entities): backup {r['backup_s']:.2f}s peak RSS {r['backup_peak_rss_mb']:.0f} MB, "
            f"restore {r['restore_s']:.2f}s peak RSS {r['restore_peak_rss_mb']:.0f} MB"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
