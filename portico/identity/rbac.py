"""Azure-style RBAC: built-in role definitions, role assignments at scopes, and `authorize`."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select

from portico.arm.errors import ArmError
from portico.identity.roles import (
    Role,
    find_role,
    normalize_scope,
    role_names,
    scope_covers,
)
from portico.identity.validation import LOCAL_ISSUER, Principal
from portico.store.db import Database
from portico.store.schema import role_assignments

# --- assignments --------------------------------------------------------------------------------
# An assignment names its principal by object id AND issuer, as Entra names one by tenant and
# object id: an outside issuer can mint any `oid`, so an id alone would let it borrow the roles of
# a local app whose client id it copies. Portico's own issuer is stored as LOCAL_ISSUER.


@dataclass(frozen=True)
class Assignment:
    id: str
    principal_id: str
    issuer: str
    role: str
    scope: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "principal_id": self.principal_id,
            "issuer": self.issuer,
            "role": self.role,
            "scope": self.scope,
            "created_at": self.created_at.isoformat(),
        }


def _row_to_assignment(row: Any) -> Assignment:
    return Assignment(row.id, row.principal_id, row.issuer, row.role, row.scope, row.created_at)


# Per-process cache of a principal's (role, scope) pairs. Short enough that a change made on another
# node shows within ~2 s; changes made through this process clear it at once.
_CACHE_TTL = 1.5
_cache: dict[tuple[str, str, str], tuple[float, list[tuple[Role, str]]]] = {}


def invalidate_cache() -> None:
    _cache.clear()


def validate_issuer(issuer: str) -> str:
    """LOCAL_ISSUER, or an outside issuer exactly as its tokens' `iss` claim spells it (a URL)."""
    iss = issuer.strip()
    if iss == LOCAL_ISSUER:
        return iss
    if len(iss) > 600 or not iss.startswith(("https://", "http://")):
        raise ValueError(
            f"Invalid issuer {issuer!r}: use '{LOCAL_ISSUER}' for Portico's own apps or the issuer URL "
            "of a trusted outside issuer (its tokens' 'iss' claim), e.g. "
            "'https://login.microsoftonline.com/{tenant}/v2.0'."
        )
    return iss


def validate_assignment(
    principal_id: str, role: str, scope: str, issuer: str = LOCAL_ISSUER
) -> tuple[str, Role, str, str]:
    """(principal id, role, scope, issuer) in canonical form, or ValueError naming the bad field."""
    pid = principal_id.strip()
    if not pid or len(pid) > 200:
        raise ValueError("The principal id must be 1 to 200 characters.")
    found = find_role(role)
    if found is None:
        raise ValueError(f"Unknown role {role!r}. Built-in roles: {', '.join(role_names())}.")
    return pid, found, normalize_scope(scope), validate_issuer(issuer)


async def insert_assignment(
    conn: Any, principal_id: str, role: str, scope: str, *, issuer: str = LOCAL_ISSUER
) -> Assignment:
    """Assign inside the caller's transaction; an existing identical assignment is returned as is."""
    pid, found, norm, iss = validate_assignment(principal_id, role, scope, issuer)
    rows = (
        await conn.execute(
            select(role_assignments).where(
                role_assignments.c.principal_id == pid,
                role_assignments.c.issuer == iss,
                role_assignments.c.role == found.name,
            )
        )
    ).all()
    for row in rows:
        if row.scope.casefold() == norm.casefold():
            return _row_to_assignment(row)
    a = Assignment(str(uuid.uuid4()), pid, iss, found.name, norm, datetime.now(UTC))
    await conn.execute(
        role_assignments.insert().values(
            id=a.id,
            principal_id=a.principal_id,
            issuer=a.issuer,
            role=a.role,
            scope=a.scope,
            created_at=a.created_at,
        )
    )
    invalidate_cache()
    return a


async def assign_role(
    db: Database, principal_id: str, role: str, scope: str, *, issuer: str = LOCAL_ISSUER
) -> Assignment:
    """Give `principal_id` of `issuer` a built-in `role` at `scope` (ValueError on a bad field)."""
    validate_assignment(principal_id, role, scope, issuer)  # fail before opening a write transaction
    async with db.write() as conn:
        a = await insert_assignment(conn, principal_id, role, scope, issuer=issuer)
    invalidate_cache()
    return a


async def list_assignments(
    db: Database, principal_id: str | None = None, *, issuer: str | None = None
) -> list[Assignment]:
    q = select(role_assignments).order_by(role_assignments.c.created_at, role_assignments.c.id)
    if principal_id is not None:
        q = q.where(role_assignments.c.principal_id == principal_id)
    if issuer is not None:
        q = q.where(role_assignments.c.issuer == issuer)
    async with db.read() as conn:
        return [_row_to_assignment(r) for r in (await conn.execute(q)).all()]


async def delete_assignment(db: Database, assignment_id: str) -> bool:
    async with db.write() as conn:
        result = await conn.execute(delete(role_assignments).where(role_assignments.c.id == assignment_id))
    invalidate_cache()
    return bool(result.rowcount)


async def delete_assignments_of(conn: Any, principal_id: str, *, issuer: str = LOCAL_ISSUER) -> None:
    await conn.execute(
        delete(role_assignments).where(
            role_assignments.c.principal_id == principal_id, role_assignments.c.issuer == issuer
        )
    )
    invalidate_cache()


async def _grants(db: Database, issuer: str, principal_id: str) -> list[tuple[Role, str]]:
    key = (db.url, issuer, principal_id)
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    q = select(role_assignments.c.role, role_assignments.c.scope).where(
        role_assignments.c.principal_id == principal_id, role_assignments.c.issuer == issuer
    )
    async with db.read() as conn:
        rows = (await conn.execute(q)).all()
    grants = [
        (role, scope) for role, scope in ((find_role(r.role), r.scope) for r in rows) if role is not None
    ]
    if len(_cache) > 10_000:  # bound memory under many distinct principals
        _cache.clear()
    _cache[key] = (now + _CACHE_TTL, grants)
    return grants


async def is_authorized(db: Database, principal_id: str, action: str, scope: str, *, issuer: str) -> bool:
    for role, assigned in await _grants(db, issuer, principal_id):
        if scope_covers(assigned, scope) and role.permits(action):
            return True
    return False


async def authorize(db: Database, principal: Principal, action: str, scope: str) -> None:
    """Raise ARM's 403 AuthorizationFailed unless an assignment at or above `scope` permits `action`."""
    pid = principal.principal_id
    if await is_authorized(db, pid, action, scope, issuer=principal.assignment_issuer):
        return
    # A person is named by sign-in name, as ARM does: "The user 'alice@...' with object id '...'".
    upn = principal.claims.get("upn") or principal.claims.get("preferred_username")
    is_user = principal.claims.get("idtyp") == "user" and isinstance(upn, str)
    kind, name = ("user", upn) if is_user else ("client", pid)
    raise ArmError(
        403,
        "AuthorizationFailed",
        f"The {kind} '{name}' with object id '{pid}' does not have authorization to perform action "
        f"'{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, "
        "please refresh your credentials.",
    )


# --- request → action ---------------------------------------------------------------------------

_VERBS = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


def arm_action(method: str, path: str) -> str:
    """ARM operation name of a request, e.g. POST .../service/s1/backup →
    `Microsoft.ApiManagement/service/backup/action`, GET .../service/s1/apis/a → `.../apis/read`."""
    segs = [s for s in path.split("?", 1)[0].split("/") if s]
    method = method.upper()
    lowered = [s.casefold() for s in segs]
    if "providers" in lowered:
        i = lowered.index("providers")
        if i + 1 >= len(segs):
            return f"Microsoft.Resources/providers/{_VERBS.get(method, 'action')}"
        namespace, rest = segs[i + 1], segs[i + 2 :]
    else:
        # /subscriptions/{s}/resourceGroups/{rg}... are Microsoft.Resources types.
        namespace, rest = "Microsoft.Resources", segs
    action_name = None
    if method == "POST" and len(rest) >= 3 and len(rest) % 2 == 1:
        action_name, rest = rest[-1], rest[:-1]
    types = rest[0::2]
    type_path = "/".join([namespace, *types])
    if method == "POST":
        return f"{type_path}/{action_name}/action" if action_name else f"{type_path}/action"
    return f"{type_path}/{_VERBS.get(method, 'action')}"
