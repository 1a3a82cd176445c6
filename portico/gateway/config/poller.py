"""The poller: keeps each gateway node's compiled, in-memory tables of every service current.

Nothing here runs on the request path except dictionary look-ups. A poller asks the database,
every `gateway_config_poll_seconds`, one small question: the id, etag and active store of every
service with its store's `config_version` (bumped by the triggers of migration 0002 on every
change to an active store). Then, per service:
- a new service or a new active store (a restore switched it) → full load of that store;
- a new service etag only (service PUT/PATCH: hostnames...) → the service row is re-read;
- a higher config_version → the changed keys are read from `config_changes` and only those
  entities are re-read and applied; a node too far behind (log trimmed) reloads the service.
Compiled tables are rebuilt by swapping whole objects, so a request in flight keeps a consistent
view: a full load builds a new `ServiceConfig` beside the one serving and swaps it in when it is
complete. Subscriptions and users (the big tables) are patched in place, key by key.

A restore must be served within a second, also for the BRIEF's large service (328,853 entities:
bench/gateway_reload.py). Reading 300,000 rows into Python takes longer than that on a small
machine, so:
- a full load reads through the database driver (no SQLAlchemy rows), keeps subscriptions and
  users as the JSON text the database holds (a subscription is parsed at its first request, a
  user when a policy reads `context.User`), reuses the previous generation's compiled operations
  whose JSON did not change, and leaves operations' URL regexes to their first match
  (portico/gateway/routing.py);
- while a restore fills its staging store, the poller reads that store's subscriptions and users
  ahead and compiles its routing tables once their rows are in (`Staged`), and polls every
  `RESTORE_POLL_SECONDS` to see the switch sooner: the switch then checks that the routing rows
  did not change since (SQLite: reads them; PostgreSQL: which transactions wrote them) and adopts
  the tables compiled ahead, reads the last subscriptions and users, and checks by counting that
  nothing was missed. On PostgreSQL the counts are most of the switch (0.3-0.7 s for the large
  service on a small, busy machine: every row is a heap visit in a store not vacuumed yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from portico.gateway.config.loader import (
    RESTORE_POLL_SECONDS,
    Driver,
    Staged,
    apply_changes,
    full_load,
    read_ahead,
    warm,
)
from portico.gateway.config.model import PolicyCompiling, ServiceConfig
from portico.gateway.selfhosted import resolve
from portico.secrets_box import SecretBox
from portico.store import sealing
from portico.store.schema import services, stores

if TYPE_CHECKING:
    from portico.gateway.jwks import JwksCache
    from portico.gateway.policies.limits import CounterStore
    from portico.gateway.quotas import QuotaLedger
    from portico.store.db import Database

log = logging.getLogger("portico.gateway")


def opened_row(box: SecretBox | None, row: Any) -> Any:
    """A service row with the certificates of its properties opened (portico/store/sealing.py)."""
    props = row.properties or {}
    opened = sealing.open_service(box, row.name, props)
    if opened is props:
        return row
    return SimpleNamespace(**{**row._asdict(), "properties": opened})


class ConfigStore:
    """All services of the database, kept current by polling (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        gateway_domain: str,
        poll_seconds: float,
        counters: CounterStore,
        jwks: JwksCache,
        quotas: QuotaLedger | None = None,
    ) -> None:
        self.db = db
        self.domain = gateway_domain.lower().strip(".")
        self.poll_seconds = poll_seconds
        self.compiling = PolicyCompiling(counters, jwks, quotas=quotas)
        self.services: dict[int, ServiceConfig] = {}
        self.by_host: dict[str, ServiceConfig] = {}
        self.wildcards: list[tuple[str, ServiceConfig]] = []
        self.generation = 0
        self.last_poll = 0.0
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.loads = 0
        self.staged: dict[int, Staged] = {}  # staging store id → what was read of it so far
        self._no_preload: set[int] = set()  # staging stores whose reading ahead failed

    async def start(self, selfhosted: tuple[str, str] | None = None) -> None:
        """`selfhosted`: (gateway name, token) of the one self-hosted gateway this node serves;
        TokenError when the token does not authenticate it."""
        if selfhosted is not None:
            async with self.db.read() as conn:
                self.compiling.selfhosted = await resolve(conn, *selfhosted)
        await self.poll()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for store_id in list(self.staged):
            await self._take_staged(store_id)

    async def _loop(self) -> None:
        woken = time.monotonic()
        while True:
            fast = bool(self.staged) and RESTORE_POLL_SECONDS < self.poll_seconds
            await asyncio.sleep(RESTORE_POLL_SECONDS if fast else self.poll_seconds)
            now = time.monotonic()
            wake = now - woken >= self.poll_seconds - RESTORE_POLL_SECONDS / 2
            if wake:
                woken = now
            try:
                await self.poll(wake=wake)
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be briefly unavailable: keep serving
                if self.last_error != type(exc).__name__:
                    log.warning("gateway configuration poll failed: %s", type(exc).__name__, exc_info=exc)
                self.last_error = type(exc).__name__

    def lookup_host(self, host: str) -> ServiceConfig | None:
        svc = self.by_host.get(host)
        if svc is not None:
            return svc
        for suffix, s in self.wildcards:
            if host.endswith(suffix):
                return s
        return None

    def _index_hosts(self) -> None:
        by_host: dict[str, ServiceConfig] = {}
        wild: list[tuple[str, ServiceConfig]] = []
        for svc in sorted(self.services.values(), key=lambda s: s.id):
            if svc.gateway_disabled:
                continue
            by_host[f"{svc.name.lower()}.{self.domain}"] = svc
        for svc in sorted(self.services.values(), key=lambda s: s.id):
            if svc.gateway_disabled:
                continue
            for h in (*svc.proxy_hosts, *svc.gateway_hosts):  # a self-hosted node's hostnames too
                if h.startswith("*."):
                    wild.append((h[1:], svc))
                else:
                    by_host.setdefault(h, svc)
        wild.sort(key=lambda w: len(w[0]), reverse=True)
        self.by_host, self.wildcards = by_host, wild

    async def poll(self, *, wake: bool = True) -> None:
        """One poll; `wake`: also let the reads ahead of staging stores (`Staged`) read again."""
        s, st = services.c, stores.c
        q = select(
            s.id, s.name, s.etag, s.location, s.properties, s.active_store_id, st.config_version
        ).select_from(services.outerjoin(stores, st.id == s.active_store_id))
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
            box = sealing.box_of(conn)
            seen: set[int] = set()
            changed_hosts = False
            sh = self.compiling.selfhosted
            if sh is not None:
                rows = [r for r in rows if r.id == sh.service_id and time.time() < sh.expiry]
                if not rows and self.services:
                    log.warning("self-hosted gateway %s: the token expired; serving nothing", sh.name)
            for row in rows:
                seen.add(row.id)
                current = self.services.get(row.id)
                version = int(row.config_version or 0)
                if current is None or current.store_id != row.active_store_id:
                    fresh = ServiceConfig(self.compiling, opened_row(box, row), previous=current)
                    staged = await self._take_staged(row.active_store_id)
                    if staged is not None and staged.op_cache:
                        fresh._op_cache = staged.op_cache  # compiled ahead (maybe not all of them)
                    await self._full_load(conn, fresh, version, staged)
                    self.services[row.id] = fresh
                    changed_hosts = True
                    continue
                if current.etag != row.etag:
                    old_hosts = (current.proxy_hosts, current.name, current.gateway_disabled)
                    current._service_row(opened_row(box, row))
                    changed_hosts = changed_hosts or old_hosts != (
                        current.proxy_hosts,
                        current.name,
                        current.gateway_disabled,
                    )
                if version != current.version:
                    gateway_hosts = set(current.gateway_hosts)
                    await self._apply_changes(conn, current, version)
                    changed_hosts = changed_hosts or set(current.gateway_hosts) != gateway_hosts
            for gone in set(self.services) - seen:
                del self.services[gone]
                changed_hosts = True
            if changed_hosts:
                self._index_hosts()
            await self._track_restores(conn, wake)
        self.last_poll = time.time()

    async def _track_restores(self, conn: Any, wake: bool) -> None:
        """Follow the staging stores that restores are loading into these services (`Staged`)."""
        st = stores.c
        rows = (await conn.execute(select(st.id, st.service_id).where(st.state == "staging"))).all()
        loading = {
            r.id: r.service_id
            for r in rows
            if r.service_id in self.services and self.services[r.service_id].store_id != r.id
        }
        for store_id in set(self.staged) - set(loading):
            await self._take_staged(store_id)  # the restore failed (a switched-in one was taken)
        self._no_preload &= set(loading)
        for store_id, service_id in loading.items():
            staged = self.staged.get(store_id)
            if staged is not None:
                if wake:
                    staged.wake.set()
            elif store_id not in self._no_preload:
                staged = self.staged[store_id] = Staged(service_id, store_id)
                staged.task = asyncio.get_running_loop().create_task(self._follow(staged))

    async def _take_staged(self, store_id: int) -> Staged | None:
        """Stop following a staging store; what was read of it (None: nothing usable)."""
        staged = self.staged.pop(store_id, None)
        if staged is not None and staged.task is not None:
            staged.stop.set()
            staged.wake.set()
            await staged.task  # at most one query or compile slice away
        return staged

    async def _follow(self, staged: Staged) -> None:
        """Read a staging store ahead after every poll, each time in a snapshot of its own, until
        `staged.stopping`; compile its routing tables once their rows are in."""
        try:
            while not staged.stopping:
                rows = versions = None
                async with self.db.read() as conn:
                    driver = await Driver.of(conn)
                    await read_ahead(driver, staged)
                    if (
                        staged.routing is None
                        and (staged.sub_json or staged.user_json)
                        and not staged.stopping
                    ):
                        # Rows arrive in key order and every routing kind sorts before
                        # "subscription": the restore has loaded the backup's routing rows.
                        rows = versions = await driver.fetch_routing(staged.store_id)
                        if not driver.sqlite:  # in the same snapshot as the rows
                            versions = await driver.fetch_routing_versions(staged.store_id)
                if rows is not None and versions is not None and not staged.stopping:
                    # outside the transaction: it takes a while
                    await self._warm(staged, rows, versions)
                staged.passes += 1
                await staged.wake.wait()
                staged.wake.clear()
        except Exception as exc:  # an optimisation only: the switch will read the store whole
            log.warning(
                "gateway: reading store %s ahead failed: %s",
                staged.store_id,
                type(exc).__name__,
                exc_info=exc,
            )
            if self.staged.get(staged.store_id) is staged:
                del self.staged[staged.store_id]
            self._no_preload.add(staged.store_id)

    async def _warm(
        self, staged: Staged, rows: list[tuple[Any, ...]], versions: list[tuple[Any, ...]]
    ) -> None:
        current = self.services.get(staged.service_id)
        if current is not None:
            await warm(self.compiling, current, staged, rows, versions)

    async def _full_load(
        self, conn: Any, svc: ServiceConfig, version: int, staged: Staged | None = None
    ) -> None:
        await full_load(conn, svc, version, staged)
        self.generation += 1
        self.loads += 1

    async def _apply_changes(self, conn: Any, svc: ServiceConfig, version: int) -> None:
        if not await apply_changes(conn, svc, version):
            # the log was trimmed past what this node saw (or is inconsistent): reload everything
            fresh = ServiceConfig(self.compiling, svc.row, previous=svc)
            await self._full_load(conn, fresh, version)
            self.services[svc.id] = fresh
            self._index_hosts()
            return
        self.generation += 1


__all__ = ["RESTORE_POLL_SECONDS", "ConfigStore"]
