"""Failpoints for crash testing: `PORTICO_FAILPOINTS=restore.before_switch,...` makes the process
kill itself with SIGKILL when it reaches a named point, exactly as `kill -9` would at that moment.

Unset in production; read once at import. Points are listed in docs/architecture.md.
"""

from __future__ import annotations

import os
import signal

_ACTIVE = frozenset(p.strip() for p in os.environ.get("PORTICO_FAILPOINTS", "").split(",") if p.strip())


def failpoint(name: str) -> None:
    if name in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)
