"""Which stored fields of which entity kinds are secrets: the one table both the management API
(hides them on GET, portico/resources) and the store (seals them at rest, portico/store/sealing.py)
read.

Subscription keys are hidden on GET too (portico/resources/engine.py) but not sealed: a service may
hold 300,000 subscriptions, whose keys the gateway indexes at every load and backups stream as they
are; opening 600,000 sealed values there would cost more than the rest of the work together.
"""

from __future__ import annotations

from typing import Any

# Top-level fields of a kind's stored properties: never rendered, readable only through the kind's
# listSecrets-style action (or never).
HIDDEN_FIELDS: dict[str, tuple[str, ...]] = {
    "identityProvider": ("clientSecret",),
    "authorizationServer": ("clientSecret", "resourceOwnerUsername", "resourceOwnerPassword"),
    "openidConnectProvider": ("clientSecret",),
    "portalSetting": ("validationKey",),
    "tenantAccess": ("primaryKey", "secondaryKey"),
    "certificate": ("data", "password"),
    "logger": ("credentials",),
    "cache": ("connectionString",),
    "gateway": ("primaryKey", "secondaryKey"),
}

# Secrets nested in a kind's properties, as paths of keys ("*": every key of an object there).
NESTED_SECRETS: dict[str, tuple[tuple[str, ...], ...]] = {
    "authorizationProvider": (("oauth2", "grantTypes", "*", "clientSecret"),),
    "portalConfig": (("delegation", "validationKey"),),
    "backend": (("proxy", "password"),),
    "authorization": (("parameters", "clientSecret"),),
}

# A named value's `value` is a secret when the named value says so (`secret: true`).
NAMED_VALUE = "namedValue"

# Secrets of a service's own properties (not of an entity): the PFX and password of the items of
# these lists (custom-domain certificates, CA certificates).
SERVICE_SECRETS: dict[str, tuple[str, ...]] = {
    "hostnameConfigurations": ("encodedCertificate", "certificatePassword"),
    "certificates": ("encodedCertificate", "certificatePassword"),
}

# Kinds that may hold a secret.
SECRET_KINDS: frozenset[str] = frozenset({*HIDDEN_FIELDS, *NESTED_SECRETS, NAMED_VALUE})


def secret_paths(kind: str, data: dict[str, Any]) -> list[tuple[str, ...]]:
    """The paths of `data` (a stored entity's properties) that hold a secret of `kind`, with the
    keys "*" stands for filled in; only paths present in `data` with a value other than None."""
    out: list[tuple[str, ...]] = []
    for f in HIDDEN_FIELDS.get(kind, ()):
        if data.get(f) is not None:
            out.append((f,))
    if kind == NAMED_VALUE and data.get("secret") and data.get("value") is not None:
        out.append(("value",))
    for path in NESTED_SECRETS.get(kind, ()):
        _expand(data, path, (), out)
    return out


def _expand(node: Any, path: tuple[str, ...], done: tuple[str, ...], out: list[tuple[str, ...]]) -> None:
    if not isinstance(node, dict):
        return
    head, rest = path[0], path[1:]
    keys = list(node) if head == "*" else [head]
    for k in keys:
        if k not in node or node[k] is None:
            continue
        if rest:
            _expand(node[k], rest, (*done, k), out)
        else:
            out.append((*done, k))


def without_nested_secrets(kind: str, props: dict[str, Any]) -> dict[str, Any]:
    """`props` without the nested secrets of `kind` (keys removed whatever their value; the
    objects along the way copied, so stored data is never changed): what a GET shows."""
    out = dict(props)
    for path in NESTED_SECRETS.get(kind, ()):
        _drop(out, path)
    return out


def _drop(node: dict[str, Any], path: tuple[str, ...]) -> None:
    head, rest = path[0], path[1:]
    for k in list(node) if head == "*" else [head]:
        if not rest:
            node.pop(k, None)
        elif isinstance(node.get(k), dict):
            node[k] = dict(node[k])
            _drop(node[k], rest)


def candidate_paths(kind: str, data: dict[str, Any]) -> list[tuple[str, ...]]:
    """Every path of `data` where `kind` may hold a secret, whatever the entity's other fields say
    now (a named value that stopped being secret may still hold a sealed value until rewritten)."""
    paths = secret_paths(kind, data)
    if kind == NAMED_VALUE and not data.get("secret") and data.get("value") is not None:
        paths.append(("value",))
    return paths
