"""SharedCounters: the semantics of Counters, in shared memory across spawn-context worker processes."""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portico.gateway.policies.limits import Counters
from portico.gateway.shared_counters import SharedCounters, key_hash

pytestmark = pytest.mark.slow

SPAWN = multiprocessing.get_context("spawn")
ROOT = Path(__file__).resolve().parents[2]
KEY = ("svc-1", "policy@3:5", "sub-1", 60.0)


@pytest.fixture
def shared() -> Iterator[SharedCounters]:
    c = SharedCounters.create(slots=1024)
    yield c
    c.unlink()


@pytest.fixture(params=["Counters", "SharedCounters"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "Counters":
        yield Counters()
    else:
        c = SharedCounters.create(slots=1024)
        yield c
        c.unlink()


def _same_home(slots: int, n: int) -> list[tuple[Any, ...]]:
    """n distinct keys whose home slot is the same in a table of `slots` slots."""
    by_home: dict[int, list[tuple[Any, ...]]] = {}
    i = 0
    while True:
        k = ("svc", "p", f"k{i}", 100.0)
        group = by_home.setdefault(key_hash(k) % slots, [])
        group.append(k)
        if len(group) == n:
            return group
        i += 1


# ---------------------------------------------------------------- same-process semantics (both classes)


def test_first_call_starts_the_window(store: Any) -> None:
    assert store.peek(KEY, 60.0, 1000.0) == (0.0, 60.0)
    assert store.add(KEY, 60.0, 1010.0, 1) == 1.0
    assert store.add(KEY, 60.0, 1020.0, 2) == 3.0
    # the window started at the peek (t=1000), not at the first add
    assert store.peek(KEY, 60.0, 1030.0) == (3.0, 30.0)
    assert store.peek(KEY, 60.0, 1059.5) == (3.0, 0.5)


def test_window_renews_at_start_plus_period(store: Any) -> None:
    store.add(KEY, 60.0, 1000.0, 5)
    assert store.peek(KEY, 60.0, 1059.999) == (5.0, pytest.approx(0.001))
    assert store.peek(KEY, 60.0, 1060.0) == (0.0, 60.0)  # now - start >= period: new window at 1060
    assert store.add(KEY, 60.0, 1061.0, 1) == 1.0
    assert store.peek(KEY, 60.0, 1119.0) == (1.0, 1.0)
    assert store.add(KEY, 60.0, 1500.0, 1) == 1.0  # long idle: a fresh window


def test_keys_are_independent_and_amounts_fractional(store: Any) -> None:
    a, b = ("s", "p", "a", 10.0), ("s", "p", "b", 10.0)
    assert store.add(a, 10.0, 1.0, 0.25) == 0.25
    assert store.add(b, 10.0, 2.0, 3) == 3.0
    assert store.add(a, 10.0, 3.0, 1.5) == 1.75
    assert store.peek(a, 10.0, 4.0) == (1.75, 7.0)
    assert store.peek(b, 10.0, 4.0) == (3.0, 8.0)
    assert store.peek(a, 10.0, 11.0) == (0.0, 10.0)
    assert store.peek(b, 10.0, 11.0) == (3.0, 1.0)


def test_take_counts_only_below_the_limit(store: Any) -> None:
    assert store.take(KEY, 60.0, 1000.0, 2) == (True, 0.0, 60.0)
    assert store.take(KEY, 60.0, 1010.0, 2) == (True, 1.0, 50.0)
    assert store.take(KEY, 60.0, 1020.0, 2) == (False, 2.0, 40.0)  # refused: not counted
    assert store.peek(KEY, 60.0, 1030.0) == (2.0, 30.0)
    assert store.take(KEY, 60.0, 1060.0, 2) == (True, 0.0, 60.0)  # a new window


def test_len_counts_live_windows(store: Any) -> None:
    assert len(store) == 0
    now = time.monotonic()
    for i in range(5):
        store.add(("s", "p", f"k{i}", 60.0), 60.0, now, 1)
    assert len(store) == 5


def test_random_trace_matches_counters(shared: SharedCounters) -> None:
    rng = random.Random(7)
    ref = Counters()
    keys = [("svc", "p", f"who{i}", float(rng.choice([1, 5, 60]))) for i in range(40)]
    now = 100.0
    for _ in range(5000):
        now += rng.choice([0.0, 0.001, 0.01, 0.1, 0.5])
        k = rng.choice(keys)
        r = rng.random()
        if r < 0.4:
            assert shared.peek(k, k[-1], now) == ref.peek(k, k[-1], now)
        elif r < 0.6:
            assert shared.take(k, k[-1], now, 3) == ref.take(k, k[-1], now, 3)
        else:
            amount = rng.choice([1, 2, 0.5])
            assert shared.add(k, k[-1], now, amount) == ref.add(k, k[-1], now, amount)
    assert shared.evictions == 0


# ---------------------------------------------------------------- table behaviour


def test_expired_windows_free_their_slots() -> None:
    c = SharedCounters.create(slots=8, probe=8)
    try:
        for i in range(8):
            c.add(("s", "p", f"old{i}", 1.0), 1.0, 0.0, 1)
        assert len(c) == 0  # all expired long ago (monotonic now >> 1)
        for i in range(8):
            assert c.add(("s", "p", f"new{i}", 5.0), 5.0, 10.0, i) == i
        assert c.evictions == 0
        for i in range(8):
            assert c.peek(("s", "p", f"new{i}", 5.0), 5.0, 11.0) == (i, 4.0)
    finally:
        c.unlink()


def test_lookup_continues_past_an_expired_slot() -> None:
    a, b = _same_home(8, 2)
    c = SharedCounters.create(slots=8, probe=8)
    try:
        c.add(a, 1.0, 0.0, 1)  # home slot
        c.add(b, 100.0, 0.0, 7)  # next slot
        # a's window has expired: its slot is free, but b must still be found behind it
        assert c.add(b, 100.0, 5.0, 1) == 8.0
        assert c.peek(a, 1.0, 5.0) == (0.0, 1.0)
        assert c.peek(b, 100.0, 5.0) == (8.0, 95.0)
    finally:
        c.unlink()


def test_full_probe_range_evicts_the_window_ending_soonest() -> None:
    c = SharedCounters.create(slots=8, probe=8)
    try:
        keys = [("s", "p", f"k{i}", 100.0) for i in range(8)]
        for i, k in enumerate(keys):
            c.add(k, 100.0, float(i), 10 + i)  # k0's window ends first (t=100)
        extra = ("s", "p", "extra", 100.0)
        assert c.add(extra, 100.0, 50.0, 1) == 1.0
        assert c.evictions == 1
        for i, k in enumerate(keys[1:], 1):
            assert c.peek(k, 100.0, 50.0) == (10.0 + i, 50.0 + i)
        # k0 lost its count (documented): it starts over, evicting k1 (now the soonest to end)
        assert c.peek(keys[0], 100.0, 60.0) == (0.0, 100.0)
        assert c.evictions == 2
        assert c.peek(extra, 100.0, 60.0) == (1.0, 90.0)
    finally:
        c.unlink()


def test_many_keys_keep_their_counts() -> None:
    c = SharedCounters.create(slots=4096)
    try:
        now = time.monotonic()
        keys = [("svc", "policy@1:1", f"client-{i}", 60.0) for i in range(2000)]
        for i, k in enumerate(keys):
            c.add(k, 60.0, now, i)
            c.add(k, 60.0, now, 1)
        assert all(c.peek(k, 60.0, now)[0] == i + 1 for i, k in enumerate(keys))
        assert c.evictions == 0
        assert len(c) == 2000
    finally:
        c.unlink()


def test_key_hash_is_stable_across_processes() -> None:
    keys = [KEY, ("a", 1, 2.5, "é"), ("", "", "", 0.0)]
    expected = [key_hash(k) for k in keys]
    assert all(h != 0 for h in expected)
    assert len(set(expected)) == len(expected)
    code = (
        "from portico.gateway.shared_counters import key_hash;"
        f"print([key_hash(k) for k in {keys!r}], hash('x'))"
    )
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split("] ")
        assert out[0] + "]" == repr(expected)
        outputs.append(out[1])
    assert outputs[0] != outputs[1]  # str hash() really does differ between the runs


def test_closed_and_lifecycle_errors() -> None:
    with pytest.raises(TypeError):
        SharedCounters()
    with pytest.raises(ValueError):
        SharedCounters.create(slots=4, probe=8)
    c = SharedCounters.create(slots=64)
    c.close()
    c.close()
    with pytest.raises(ValueError, match="closed"):
        c.add(KEY, 60.0, 0.0, 1)
    with pytest.raises(ValueError, match="closed"):
        c.peek(KEY, 60.0, 0.0)
    c.unlink()
    c.unlink()
    assert not Path("/dev/shm", c.name).exists()


def test_lock_only_pickles_while_spawning(shared: SharedCounters) -> None:
    with pytest.raises(RuntimeError):
        pickle.dumps(shared)


# ---------------------------------------------------------------- real worker processes


def _worker(counters: SharedCounters, barrier: Any, index: int, n: int) -> None:
    # pickling round trip: the parent's value is visible, and unlink belongs to the parent
    assert counters.peek(("pre",), 60.0, time.monotonic()) == (5.0, pytest.approx(60.0, abs=30))
    try:
        counters.unlink()
    except RuntimeError:
        pass
    else:
        os._exit(3)
    barrier.wait()
    for _ in range(n):
        counters.add(KEY, 60.0, time.monotonic(), 1)
        counters.add(("own", index), 60.0, time.monotonic(), 1)
    counters.close()


def test_processes_share_the_counts(shared: SharedCounters) -> None:
    shared.add(("pre",), 60.0, time.monotonic(), 5)
    barrier = SPAWN.Barrier(3)
    procs = [SPAWN.Process(target=_worker, args=(shared, barrier, i, 2000)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    now = time.monotonic()
    assert shared.peek(KEY, 60.0, now)[0] == 6000.0
    assert [shared.peek(("own", i), 60.0, now)[0] for i in range(3)] == [2000.0] * 3


def _hold_lock(counters: SharedCounters, held: Any) -> None:
    counters._lock.acquire()
    held.set()
    time.sleep(60)


def test_lock_of_a_killed_holder_is_recovered(caplog: pytest.LogCaptureFixture) -> None:
    c = SharedCounters.create(slots=64, lock_timeout=0.2)
    try:
        held = SPAWN.Event()
        p = SPAWN.Process(target=_hold_lock, args=(c, held))
        p.start()
        assert held.wait(30)
        p.kill()
        p.join()
        with caplog.at_level(logging.ERROR, "portico.gateway"):
            t0 = time.monotonic()
            assert c.add(KEY, 60.0, t0, 1) == 1.0
        assert time.monotonic() - t0 < 5
        assert "holder probably died" in caplog.text
        assert c.add(KEY, 60.0, t0, 1) == 2.0  # and the lock works normally afterwards
    finally:
        c.unlink()


_LIFECYCLE = """
import multiprocessing, sys, time
from portico.gateway.shared_counters import SharedCounters

def child(counters, close):
    counters.add(("k",), 60.0, time.monotonic(), 1)
    if close:
        counters.close()

if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    c = SharedCounters.create(slots=256)
    print(c.name, flush=True)
    procs = [ctx.Process(target=child, args=(c, close)) for close in (True, False)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0]
    assert c.peek(("k",), 60.0, time.monotonic())[0] == 2.0
    if sys.argv[1] == "unlink":
        c.unlink()
"""


@pytest.mark.parametrize("end", ["unlink", "forget"])
def test_no_resource_tracker_warnings(tmp_path: Path, end: str) -> None:
    script = tmp_path / "lifecycle.py"
    script.write_text(textwrap.dedent(_LIFECYCLE))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "default"}
    r = subprocess.run(
        [sys.executable, str(script), end], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    name = r.stdout.strip()
    assert not Path("/dev/shm", name).exists()
    if end == "unlink":
        assert r.stderr == ""
    else:  # the safety net: a parent that never unlinks is cleaned up, and told
        assert "leaked shared_memory" in r.stderr
        assert "Traceback" not in r.stderr
