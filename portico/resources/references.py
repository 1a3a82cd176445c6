"""References between entities are stored relative to their service (`/users/u1`) so that a
restore into a differently named service needs no rewriting; they are rendered as full ARM ids."""

from __future__ import annotations

import re

_SERVICE_PREFIX = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ApiManagement/service/[^/]+",
    re.IGNORECASE,
)


def to_relative(ref: str) -> str:
    """`/subscriptions/.../service/x/users/u1` or `users/u1` or `/users/u1` → `/users/u1`."""
    ref = ref.strip()
    m = _SERVICE_PREFIX.match(ref)
    if m:
        ref = ref[m.end() :]
    return "/" + ref.strip("/")


def to_absolute(service_arm_id: str, ref: str) -> str:
    return service_arm_id + ref if ref.startswith("/") else ref
