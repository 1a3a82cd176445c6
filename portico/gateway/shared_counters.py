"""Rate-limit and quota counters shared by all gateway worker processes of one node.

`SharedCounters` has the interface of `portico.gateway.policies.limits.Counters` (fixed windows
starting at a key's first call; `peek`, `add`, `len`) but keeps its windows in one
`multiprocessing.shared_memory` segment, so a limit means the same with one worker or eight.

Layout. A 64-byte header (magic, slot count, probe length, eviction count), then a table of 32-byte
slots `=Qddd` (native byte order: the segment never leaves the machine): key hash, window start,
count, period, in `time.monotonic()` seconds (on Linux one clock for every process). Hash 0 marks a
slot never used. Fixed-size slots in an open-addressing table need no allocator and no pointers:
every process reads and writes them with `struct.unpack_from`/`pack_into` at computed offsets.

Keys. A key is identified by its 64-bit hash only: BLAKE2b of `repr(key)`, never 0. Python's `hash()`
of a str differs from process to process, `repr()` of tuples of str/int/float does not. A 64-bit
collision between two live keys would merge their counters (odds about n²/2⁶⁵). Keys equal in Python
but with different reprs (`1` and `1.0`) are different counters here: callers pass floats for periods.

Probing. A key lives in one of the `probe` (32) slots after its home slot `hash % slots`. Slots are
never emptied, only reused, so a lookup stops at the first never-used slot. A new window takes the
first slot of its range that is never-used or whose window has expired (now - start >= period); if
all of them hold live windows, it takes the one whose window ends soonest: under extreme key
cardinality (more than `probe` live keys crowding one range) that counter restarts from zero. Such
evictions are counted (`evictions`).

Locking. Every read and write holds one cross-process lock (a spawn-context `multiprocessing.Lock`,
a POSIX semaphore). A process killed inside the few-µs critical section would hold it forever; a
caller that waits longer than `lock_timeout` seconds takes it that a holder died, logs an error and
releases the lock once (a worker stalled that long inside the section could race once).

Lifecycle. The parent calls `create()`, hands the object to spawn-context `Process`es as an argument
(it pickles as segment name + lock; children re-attach) and calls `unlink()` when they are gone;
children call `close()`. In Python 3.11 `SharedMemory(name)` registers the segment with the
resource tracker even when attaching: a child with its own tracker would destroy the segment when it
exits, and unregistering it in a child that shares its parent's tracker (spawn children do) drops
the parent's registration (its `unlink()` then makes the tracker print a KeyError). Children
therefore map the segment directly (`shm_open` + `mmap`) and never involve the tracker; only the
creator registers (and unregisters on `unlink()`), so a parent that dies without unlinking still has
the tracker remove the segment. POSIX only.
"""

from __future__ import annotations

import hashlib
import logging
import math
import mmap
import multiprocessing
import os
import struct
import time
from array import array
from multiprocessing.shared_memory import SharedMemory
from typing import Any

log = logging.getLogger("portico.gateway")

PROBE = 32
_MAGIC = b"PRTCNT01"
_HEADER = struct.Struct("=8sQQ")  # magic, slots, probe
_EVICTIONS = struct.Struct("=Q")  # at offset 24
_EVICTIONS_AT = 24
_HEADER_SIZE = 64
_SLOT = struct.Struct("=Qddd")  # key hash, window start, count, period
_SLOT_SIZE = _SLOT.size  # 32
_COUNT = struct.Struct("=d")  # at slot offset + 16
_HASH_CACHE_MAX = 8192


def key_hash(key: Any) -> int:
    """The key's identity in the table: stable across processes and interpreter runs, never 0."""
    h = int.from_bytes(hashlib.blake2b(repr(key).encode(), digest_size=8).digest(), "little")
    return h or 1


class SharedCounters:
    """Fixed windows keyed by tuples of str/int/float, in shared memory: see the module docstring."""

    _buf: memoryview | None
    _shm: SharedMemory | None  # the creator's segment (it alone unlinks)
    _mmap: mmap.mmap | None  # an attached process's mapping

    def __init__(self) -> None:
        raise TypeError("use SharedCounters.create(), then pass the object to the worker processes")

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    def create(cls, slots: int = 1 << 17, *, probe: int = PROBE, lock_timeout: float = 2.0) -> SharedCounters:
        """Allocate a table of `slots` windows (32 bytes each) and its lock, in the parent process."""
        if probe < 1 or slots < probe:
            raise ValueError("need 1 <= probe <= slots")
        shm = SharedMemory(create=True, size=_HEADER_SIZE + slots * _SLOT_SIZE)
        buf = shm.buf
        assert buf is not None
        try:
            _HEADER.pack_into(buf, 0, _MAGIC, slots, probe)
            lock = multiprocessing.get_context("spawn").Lock()
        except BaseException:
            shm.close()
            shm.unlink()
            raise
        self = cls.__new__(cls)
        self._setup(shm.name, slots, probe, lock, lock_timeout)
        self._shm, self._mmap, self._buf = shm, None, buf
        return self

    def _setup(self, name: str, slots: int, probe: int, lock: Any, lock_timeout: float) -> None:
        self._name = name
        self._slots = slots
        self._probe = probe
        self._lock = lock
        self._lock_timeout = lock_timeout
        self._hashes: dict[Any, int] = {}
        self._unlinked = False

    def __getstate__(self) -> dict[str, Any]:
        # the lock pickles only while spawning a process (multiprocessing's rule for locks)
        return {
            "name": self._name,
            "slots": self._slots,
            "probe": self._probe,
            "lock": self._lock,
            "lock_timeout": self._lock_timeout,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._setup(state["name"], state["slots"], state["probe"], state["lock"], state["lock_timeout"])
        self._shm = None
        self._mmap = None
        self._buf = None
        import _posixshmem  # what SharedMemory uses, without its resource-tracker registration

        fd = _posixshmem.shm_open("/" + self._name, os.O_RDWR, mode=0o600)
        try:
            self._mmap = mmap.mmap(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        self._buf = memoryview(self._mmap)
        magic, slots, probe = _HEADER.unpack_from(self._buf, 0)
        if magic != _MAGIC or slots != self._slots or probe != self._probe:
            self.close()
            raise ValueError(f"shared memory {self._name!r} is not this counters table")

    @property
    def name(self) -> str:
        return self._name

    def close(self) -> None:
        """Unmap the table in this process (idempotent). The segment lives on until `unlink()`."""
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None
        if self._shm is not None:
            self._shm.close()

    def unlink(self) -> None:
        """In the creating process, once the workers are gone: unmap and free the segment (idempotent)."""
        shm = self._shm
        if shm is None:
            raise RuntimeError("only the process that created the counters can unlink them")
        self.close()
        if not self._unlinked:
            self._unlinked = True
            shm.unlink()

    def __repr__(self) -> str:
        state = "closed" if self._buf is None else "open"
        return f"<SharedCounters {self._name} slots={self._slots} {state}>"

    # ---------------------------------------------------------------- locking

    def _acquire(self) -> memoryview:
        """Take the lock (pair with `_release` in a finally); the table, if not closed."""
        buf = self._buf
        if buf is None:
            raise ValueError("SharedCounters is closed")
        if not self._lock.acquire(True, self._lock_timeout):
            self._acquire_slow()
        return buf

    def _acquire_slow(self) -> None:
        lock = self._lock
        while not lock.acquire(True, self._lock_timeout):
            log.error(
                "shared rate-limit counters: lock held for over %.1f s, its holder probably died; "
                "releasing it",
                self._lock_timeout,
            )
            try:
                lock.release()
            except ValueError:  # another waiter released it first
                pass

    def _release(self) -> None:
        try:
            self._lock.release()
        except ValueError:  # broken by a waiter (see _acquire_slow) while we held it
            pass

    # ---------------------------------------------------------------- counters

    def _hash(self, key: Any) -> int:
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= _HASH_CACHE_MAX:
                self._hashes.clear()
            h = self._hashes[key] = key_hash(key)
        return h

    def _window(self, buf: memoryview, h: int, period: float, now: float) -> tuple[int, float, float]:
        """(slot offset, start, count) of the key's current window, started if need be. Under the lock."""
        n = self._slots
        home = h % n
        unpack = _SLOT.unpack_from
        free = -1  # first slot of the range that is never-used or expired
        victim, victim_end = _HEADER_SIZE + home * _SLOT_SIZE, float("inf")
        for i in range(self._probe):
            j = home + i
            off = _HEADER_SIZE + (j if j < n else j - n) * _SLOT_SIZE
            sh, start, count, sp = unpack(buf, off)
            if sh == h:
                if now - start >= period:
                    _SLOT.pack_into(buf, off, h, now, 0.0, period)
                    return off, now, 0.0
                return off, start, count
            if sh == 0:
                if free < 0:
                    free = off
                break
            if free < 0:
                if now - start >= sp:
                    free = off
                elif start + sp < victim_end:
                    victim, victim_end = off, start + sp
        if free < 0:
            free = victim
            (evictions,) = _EVICTIONS.unpack_from(buf, _EVICTIONS_AT)
            _EVICTIONS.pack_into(buf, _EVICTIONS_AT, evictions + 1)
        _SLOT.pack_into(buf, free, h, now, 0.0, period)
        return free, now, 0.0

    def peek(self, key: Any, period: float, now: float) -> tuple[float, float]:
        """(count in the current window, seconds until it renews)."""
        _added, count, start = self._apply(key, period, now, 0.0)
        return count, max(0.0, start + period - now)

    def add(self, key: Any, period: float, now: float, amount: float) -> float:
        return self._apply(key, period, now, amount)[1] + amount

    def take(self, key: Any, period: float, now: float, limit: float) -> tuple[bool, float, float]:
        """Count one call if the window has room below `limit`: (taken, count before, seconds until
        the window renews), under one lock round trip."""
        taken, count, start = self._apply(key, period, now, 1.0, limit)
        return taken, count, max(0.0, start + period - now)

    def _apply(
        self, key: Any, period: float, now: float, amount: float, limit: float = math.inf
    ) -> tuple[bool, float, float]:
        """Add `amount` unless the count would pass `limit`: (added, count before, window start),
        under the lock."""
        h = self._hash(key)
        buf = self._acquire()
        try:
            off, start, count = self._window(buf, h, period, now)
            added = count + amount <= limit
            if added and amount:
                _COUNT.pack_into(buf, off + 16, count + amount)
        finally:
            self._release()
        return added, count, start

    def __len__(self) -> int:
        """Live windows in the table (a snapshot; O(slots))."""
        now = time.monotonic()
        buf = self._acquire()
        try:
            table = bytes(buf[_HEADER_SIZE : _HEADER_SIZE + self._slots * _SLOT_SIZE])
        finally:
            self._release()
        hashes, floats = array("Q"), array("d")
        hashes.frombytes(table)
        floats.frombytes(table)
        return sum(
            1
            for h, start, period in zip(hashes[::4], floats[1::4], floats[3::4], strict=True)
            if h and now - start < period
        )

    @property
    def evictions(self) -> int:
        """Live windows dropped so far because their whole probe range was live (see the docstring)."""
        buf = self._acquire()
        try:
            return int(_EVICTIONS.unpack_from(buf, _EVICTIONS_AT)[0])
        finally:
            self._release()
