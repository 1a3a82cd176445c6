"""Fault injection for crash and timing tests. Both are unset in production and read once at import.

- `PORTICO_FAILPOINTS=restore.before_switch,...`: the process kills itself with SIGKILL when it
  reaches a named point, exactly as `kill -9` would at that moment.
- `PORTICO_PAUSEPOINTS=backup.mid_write=/path/to/file,...`: at a named point, the operation waits
  (without blocking the server) for as long as that file exists, so a test can hold an operation
  in progress deterministically instead of racing it.
"""

from __future__ import annotations

import asyncio
import os
import signal

_ACTIVE = frozenset(p.strip() for p in os.environ.get("PORTICO_FAILPOINTS", "").split(",") if p.strip())
_PAUSES = dict(
    p.strip().split("=", 1) for p in os.environ.get("PORTICO_PAUSEPOINTS", "").split(",") if "=" in p
)


def failpoint(name: str) -> None:
    if name in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)


async def pausepoint(name: str) -> None:
    path = _PAUSES.get(name)
    # Polling is the point: the signal is a file another process (the test) removes.
    while path is not None and os.path.exists(path):  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.05)
