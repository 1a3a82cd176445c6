"""Gateway worker processes: the gateway's share of the machine's cores.

One Python process serves one core. `PORTICO_GATEWAY_WORKERS` processes (one per CPU by default)
each bind the gateway ports with SO_REUSEPORT, so the kernel spreads connections over them, and
each keeps its own compiled configuration (its own poller). What must be one per node is owned by
the parent (the `portico serve` or `portico gateway` process):
- rate-limit counters: one shared-memory table (`SharedCounters`) all workers update, so a limit
  means the same with one worker or eight (quota counters live in the database: each worker adds
  its counts from a background task once a second, portico/gateway/quotas.py);
- usage records: workers send them in batches over a pipe (`UsageForwarder`); the parent's
  `UsageWriter` writes them to the database. Workers write nothing else but their quota counts,
  never on a request, so a slow insert (or SQLite's single writer) never stalls one.
The parent restarts a worker that dies (with a back-off) and stops them all on shutdown. Workers
ask the kernel to kill them if the parent dies (PR_SET_PDEATHSIG), so a crashed node never leaves
processes holding its ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from portico.gateway.analytics import UsageSink, UsageWriter
from portico.gateway.serving import EXIT_NO_LISTENER, run, serve_gateway_worker, tls_files
from portico.gateway.shared_counters import SharedCounters
from portico.secrets_box import load_or_create
from portico.settings import Settings, configure_logging
from portico.store.db import Database

log = logging.getLogger("portico.gateway")

_SPAWN = multiprocessing.get_context("spawn")


def worker_count(settings: Settings) -> int:
    if settings.gateway_workers >= 0:
        return settings.gateway_workers
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when the parent exits, however it exits."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request above was in place
        os._exit(1)


def _worker_main(
    settings: Settings,
    index: int,
    counters: SharedCounters,
    usage: Connection | None,
    ready: Any,
    parent: int,
) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node's process stops its workers (SIGTERM)
    configure_logging(settings)
    try:
        run(lambda: serve_gateway_worker(settings, index, counters, usage, ready.set))
    finally:
        counters.close()


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: Any = None
        self.started = 0.0
        self.restarts = 0


class WorkerPool:
    """The parent's side: start, watch, restart and stop the gateway workers; write their usage."""

    def __init__(self, settings: Settings, count: int, db: Database | None = None) -> None:
        self.settings = settings
        self.count = count
        self._db = db
        self._own_db = db is None
        self.counters: SharedCounters | None = None
        self.writer: UsageWriter | None = None
        self.sink: UsageSink | None = None
        self.workers = [_Worker(i) for i in range(count)]
        self._stopping = False
        self._watch: asyncio.Task[None] | None = None
        self.failed = asyncio.Event()  # every worker exited for good (no port could be opened)

    async def start(self) -> None:
        if self.settings.gateway_https_port:
            tls_files(self.settings)  # generated once here, not raced by the workers on a first start
        if self._db is None:
            self._db = Database(self.settings.resolved_database_url, load_or_create(self.settings))
            await self._db.start()  # the schema is current before any worker opens the database
        self.counters = SharedCounters.create()
        if self.settings.gateway_analytics:
            self.writer = UsageWriter(self._db, max_queue=self.settings.gateway_analytics_queue)
            self.writer.start()
            self.sink = UsageSink(self.writer)
        for w in self.workers:
            await self._spawn(w)
        self._watch = asyncio.get_running_loop().create_task(self._watch_loop())

    async def _spawn(self, w: _Worker) -> None:
        assert self.counters is not None
        child_end: Connection | None = None
        if self.sink is not None:
            parent_end, child_end = _SPAWN.Pipe(duplex=False)
            await self.sink.attach(parent_end)
        ready = _SPAWN.Event()
        w.process = _SPAWN.Process(
            target=_worker_main,
            args=(self.settings, w.index, self.counters, child_end, ready, os.getpid()),
            name=f"portico-gateway-{w.index}",
            daemon=True,
        )
        w.process.start()
        w.started = time.monotonic()
        if child_end is not None:
            child_end.close()  # the child has its copy; the parent reads EOF when the child is gone
        # Wait until it listens with its configuration loaded: once `portico serve` answers, so
        # does its gateway.
        deadline = time.monotonic() + 120.0
        while not ready.is_set() and w.process.is_alive() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async def _watch_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.2)
            alive = 0
            for w in self.workers:
                p = w.process
                if p is None:
                    continue
                if p.is_alive():
                    alive += 1
                    continue
                code = p.exitcode
                p.close()
                w.process = None
                if self._stopping:
                    return
                if code == EXIT_NO_LISTENER:
                    log.error("gateway worker %d opened no port; not restarting it", w.index)
                    continue
                # back off when a worker keeps dying right after it starts
                quick = time.monotonic() - w.started < 5.0
                w.restarts = w.restarts + 1 if quick else 0
                delay = min(30.0, 0.5 * 2 ** min(w.restarts, 6)) if quick else 0.0
                log.error(
                    "gateway worker %d exited (code %s); restarting it%s",
                    w.index,
                    code,
                    f" in {delay:.1f}s" if delay else "",
                )
                if delay:
                    await asyncio.sleep(delay)
                if not self._stopping:
                    await self._spawn(w)
                    alive += 1
            if alive == 0 and all(w.process is None for w in self.workers):
                self.failed.set()
                return

    async def stop(self) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        procs = [w.process for w in self.workers if w.process is not None]
        for p in procs:
            with contextlib.suppress(Exception):
                p.terminate()  # SIGTERM: the worker finishes its requests in flight
        deadline = time.monotonic() + 5.0
        for p in procs:
            while p.is_alive() and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a child process
                await asyncio.sleep(0.05)
            if p.is_alive():
                p.kill()
            p.join(1)
        if self.sink is not None:
            await self.sink.close()  # reads what the workers sent before they exited
        if self.writer is not None:
            await self.writer.stop()
        if self._own_db and self._db is not None:
            await self._db.close()
        if self.counters is not None:
            self.counters.unlink()
