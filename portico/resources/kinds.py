"""The entity kinds of a service and how URL paths under `.../service/{name}/` map onto them.

Storage key of an entity: (kind, parent, name) where `parent` is the relative path of the
entity that owns it ("" at service level), e.g. an operation `apis/echo/operations/get` is
("operation", "apis/echo", "get"). Policies and tag links share one kind each; their parent
says what they are attached to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from portico.arm.errors import ArmError
from portico.resources import catalog
from portico.resources import models as m

_ID_DEFAULT = re.compile(r"^[^*#&+:<>?/\\%\x00-\x1f\x7f]+$")


@dataclass(frozen=True)
class Kind:
    kind: str  # storage key
    segment: str  # URL collection segment, as Azure spells it
    arm_type: str  # e.g. Microsoft.ApiManagement/service/apis
    model: type[m.Props]
    id_max: int = 256
    link_target: str | None = None  # links answer with the target entity's contract
    fixed_name: str | None = None  # policies are always named "policy"
    delete_status: int = 200  # api and user deletes are LROs in the SDK: 202/204 only
    head_status: int = 200  # HEAD answer; product/group links answer 204 (checkEntityExists), tag links 200
    children: dict[str, Kind] = field(default_factory=dict)
    names: tuple[str, ...] | None = None  # the only names Azure accepts (built-in entities), as spelled
    body_optional: bool = False  # PUT without a body (notifications and their recipients)
    delete_if_match: bool = True  # DELETE requires If-Match (links and recipients do not)
    read_only: bool = False  # GET only (tenant settings)

    @property
    def rbac_noun(self) -> str:
        return self.arm_type.removeprefix("Microsoft.ApiManagement/service/")


def _k(kind: str, segment: str, arm_type: str, model: type[m.Props], **kw: object) -> Kind:
    return Kind(kind, segment, "Microsoft.ApiManagement/service/" + arm_type, model, **kw)  # type: ignore[arg-type]


def _policy(arm_type: str) -> Kind:
    return _k("policy", "policies", arm_type, m.PolicyProps, fixed_name="policy")


def _tag_link(arm_type: str) -> Kind:
    return _k("tagLink", "tags", arm_type, m.LinkProps, id_max=80, link_target="tag", head_status=200)


OPERATION = _k(
    "operation",
    "operations",
    "apis/operations",
    m.OperationProps,
    id_max=80,
    children={"policies": _policy("apis/operations/policies"), "tags": _tag_link("apis/operations/tags")},
)
API = _k(
    "api",
    "apis",
    "apis",
    m.ApiProps,
    delete_status=204,
    children={
        "operations": OPERATION,
        "policies": _policy("apis/policies"),
        "schemas": _k("schema", "schemas", "apis/schemas", m.SchemaProps, id_max=80),
        "releases": _k("release", "releases", "apis/releases", m.ApiReleaseProps, id_max=80),
        "tags": _tag_link("apis/tags"),
    },
)
PRODUCT = _k(
    "product",
    "products",
    "products",
    m.ProductProps,
    children={
        "apis": _k("productApi", "apis", "products/apis", m.LinkProps, link_target="api", head_status=204),
        "groups": _k(
            "productGroup", "groups", "products/groups", m.LinkProps, link_target="group", head_status=204
        ),
        "policies": _policy("products/policies"),
        "tags": _tag_link("products/tags"),
    },
)
GROUP = _k(
    "group",
    "groups",
    "groups",
    m.GroupProps,
    children={
        "users": _k(
            "groupUser", "users", "groups/users", m.LinkProps, id_max=80, link_target="user", head_status=204
        )
    },
)
TOP_LEVEL: dict[str, Kind] = {
    k.segment.lower(): k
    for k in (
        API,
        PRODUCT,
        GROUP,
        _k("user", "users", "users", m.UserProps, id_max=80, delete_status=204),
        _k("subscription", "subscriptions", "subscriptions", m.SubscriptionProps),
        _k("namedValue", "namedValues", "namedValues", m.NamedValueProps),
        _k("backend", "backends", "backends", m.BackendProps, id_max=80),
        _k("tag", "tags", "tags", m.TagProps, id_max=80),
        _k("apiVersionSet", "apiVersionSets", "apiVersionSets", m.ApiVersionSetProps, id_max=80),
        _policy("policies"),
    )
}


def _from_spec(spec: catalog.KindSpec) -> Kind:
    children = {c.segment: _from_spec(c) for c in spec.children}
    return _k(spec.kind, spec.segment, spec.arm_type, spec.model, children=children, **spec.options)


TOP_LEVEL.update({s.segment.lower(): _from_spec(s) for s in catalog.TOP_LEVEL})
API.children.update({s.segment: _from_spec(s) for s in catalog.API_CHILDREN})
PRODUCT.children.update({s.segment: _from_spec(s) for s in catalog.PRODUCT_CHILDREN})

# Kinds whose entities are "runtime data" (BRIEF): users, subscriptions, group memberships.
RUNTIME_KINDS = frozenset({"user", "subscription", "groupUser"}) | catalog.RUNTIME_KINDS
BUILTIN_GROUPS = {
    "administrators": (
        "Administrators",
        "Administrators is a built-in group containing the admin email account.",
    ),
    "developers": ("Developers", "Developers is a built-in group. Its membership is managed by the system."),
    "guests": ("Guests", "Guests is a built-in group. Its membership is managed by the system."),
}
ACTIONS = {
    ("subscription", "listsecrets"),
    ("subscription", "regenerateprimarykey"),
    ("subscription", "regeneratesecondarykey"),
    ("namedValue", "listvalue"),
} | set(catalog.ACTIONS)


@dataclass(frozen=True)
class Target:
    """What a relative URL path under a service addresses."""

    kind: Kind
    parent: str  # relative path of the owner ("" at service level)
    name: str | None  # None: the collection
    action: str | None = None  # e.g. "listSecrets" on an item
    ancestors: tuple[tuple[Kind, str], ...] = ()  # (kind, name) of each owner, outermost first

    @property
    def path(self) -> str:
        own = f"{self.kind.segment}/{self.name}" if self.name is not None else self.kind.segment
        return f"{self.parent}/{own}" if self.parent else own


def check_id(kind: Kind, value: str) -> str:
    if kind.names is not None:
        for allowed in kind.names:
            if allowed.lower() == value.lower():
                return allowed
        raise ArmError(
            400,
            "ValidationError",
            f"Invalid {kind.segment} identifier '{value[:80]}': it must be one of {', '.join(kind.names)}.",
            target="name",
        )
    if kind.fixed_name is not None:
        if value.lower() != kind.fixed_name:
            raise ArmError(
                400, "ValidationError", f"Policy identifier must be '{kind.fixed_name}', got '{value[:80]}'."
            )
        return kind.fixed_name
    if not value or len(value) > kind.id_max or not _ID_DEFAULT.match(value):
        raise ArmError(
            400,
            "ValidationError",
            f"Invalid {kind.segment} identifier '{value[:80]}': it must be 1-{kind.id_max} characters and "
            "must not contain * # & + : < > ? / \\ % or control characters.",
            target="name",
        )
    return value


def resolve(segments: list[str]) -> Target | None:
    """Map `["apis", "echo", "operations", "get"]` to its Target; None when no such resource type."""
    table = TOP_LEVEL
    parent_parts: list[str] = []
    ancestors: list[tuple[Kind, str]] = []
    i = 0
    while i < len(segments):
        kind = table.get(segments[i].lower())
        if kind is None:
            return None
        parent = "/".join(parent_parts)
        if i + 1 == len(segments):
            return Target(kind, parent, None, None, tuple(ancestors))
        name = check_id(kind, segments[i + 1])
        if i + 2 == len(segments):
            return Target(kind, parent, name, None, tuple(ancestors))
        if i + 3 == len(segments) and (kind.kind, segments[i + 2].lower()) in ACTIONS:
            return Target(kind, parent, name, segments[i + 2].lower(), tuple(ancestors))
        if kind.link_target or kind.fixed_name:
            return None
        ancestors.append((kind, name))
        parent_parts += [kind.segment, name]
        table = {k.lower(): v for k, v in kind.children.items()}
        i += 2
    return None
