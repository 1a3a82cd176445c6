"""Built-in Azure role definitions and assignable scopes: plain data, no database (the CLI's help
lists the roles without loading the server side)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    # ARM wildcards: `*` matches any run of characters, `/` included; matching ignores case.
    alts = "|".join(".*".join(re.escape(part) for part in p.split("*")) for p in patterns)
    return re.compile(f"(?:{alts})", re.IGNORECASE)


@dataclass(frozen=True)
class Role:
    name: str
    id: str
    description: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...] = ()
    _allow: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _deny: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_allow", _compile(self.actions))
        object.__setattr__(self, "_deny", _compile(self.not_actions))

    def permits(self, action: str) -> bool:
        if self._allow is None or not self._allow.fullmatch(action):
            return False
        return self._deny is None or not self._deny.fullmatch(action)


_COMMON = (
    "Microsoft.Authorization/*/read",
    "Microsoft.Insights/alertRules/*",
    "Microsoft.ResourceHealth/availabilityStatuses/read",
    "Microsoft.Resources/deployments/*",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Support/*",
)
_NO_USER_KEYS = ("Microsoft.ApiManagement/service/users/keys/read",)

BUILTIN_ROLES: tuple[Role, ...] = (
    Role(
        "Owner",
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "Grants full access to manage all resources, including assigning roles.",
        ("*",),
    ),
    Role(
        "Contributor",
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "Grants full access to manage all resources, but does not allow you to assign roles.",
        ("*",),
        (
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
        ),
    ),
    Role(
        "Reader",
        "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "View all resources, but does not allow you to make any changes.",
        ("*/read",),
    ),
    Role(
        "API Management Service Contributor",
        "312a565d-c81f-4fd8-895a-4e21e48d571c",
        "Can manage service and the APIs",
        ("Microsoft.ApiManagement/service/*", *_COMMON),
    ),
    Role(
        "API Management Service Operator Role",
        "e022efe7-f5ba-4159-bbe4-b44f577e9b61",
        "Can manage service but not the APIs",
        (
            "Microsoft.ApiManagement/service/*/read",
            "Microsoft.ApiManagement/service/backup/action",
            "Microsoft.ApiManagement/service/delete",
            "Microsoft.ApiManagement/service/managedeployments/action",
            "Microsoft.ApiManagement/service/read",
            "Microsoft.ApiManagement/service/restore/action",
            "Microsoft.ApiManagement/service/updatecertificate/action",
            "Microsoft.ApiManagement/service/updatehostname/action",
            "Microsoft.ApiManagement/service/write",
            *_COMMON,
        ),
        _NO_USER_KEYS,
    ),
    Role(
        "API Management Service Reader Role",
        "71522526-b88f-4d52-b57f-d31fc3546d0d",
        "Read-only access to service and APIs",
        ("Microsoft.ApiManagement/service/*/read", "Microsoft.ApiManagement/service/read", *_COMMON),
        _NO_USER_KEYS,
    ),
)
_ROLES_BY_KEY: dict[str, Role] = {r.name.casefold(): r for r in BUILTIN_ROLES} | {
    r.id: r for r in BUILTIN_ROLES
}


def find_role(name_or_id: str) -> Role | None:
    """A built-in role by name (any case) or by its role-definition GUID."""
    return _ROLES_BY_KEY.get(name_or_id.strip().casefold())


def role_names() -> list[str]:
    return [r.name for r in BUILTIN_ROLES]


# --- scopes -------------------------------------------------------------------------------------

_SEG = r"[^/]+"
_SCOPE_RE = re.compile(
    rf"^/subscriptions/{_SEG}(?:/resourceGroups/{_SEG}(?:/providers/Microsoft\.ApiManagement/service/{_SEG})?)?$",
    re.IGNORECASE,
)


def normalize_scope(scope: str) -> str:
    """The canonical spelling of an assignable scope, or ValueError saying what is accepted."""
    s = scope.strip()
    if s == "/":
        return s
    s = s.rstrip("/")
    if len(s) > 600 or not _SCOPE_RE.match(s):
        raise ValueError(
            f"Invalid scope {scope!r}. Use '/', '/subscriptions/{{subscriptionId}}', "
            "'/subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}' or "
            "'/subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/"
            "Microsoft.ApiManagement/service/{serviceName}'."
        )
    return s


def scope_covers(assigned: str, requested: str) -> bool:
    """True when `assigned` is `requested` or one of its ancestors (segment boundary, any case)."""
    if assigned == "/":
        return True
    a = assigned.rstrip("/").casefold()
    r = requested.rstrip("/").casefold()
    return r == a or r.startswith(a + "/")
