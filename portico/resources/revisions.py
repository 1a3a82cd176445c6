"""API revisions and releases, stored the way the gateway reads them: the API `echo` is always its
current revision, and every other revision is the API `echo;rev=N` with its own operations,
policies, schemas and tags. Creating a revision copies the source's subtree; releasing one makes
it current by exchanging the two subtrees (releases themselves stay with the API).

`GET /apis` lists every revision, `echo;rev=N` included, as Azure's `Api_ListByService` does;
Microsoft's own clients filter out the non-current ones themselves: the developer portal's
`ApiService.getApis` asks `/apis?$filter=isCurrent eq true` (added once revisions showed up there
as duplicate APIs), the VS Code extension's API tree keeps only `isCurrent` APIs of
`listByService`, and APIOps groups the API names it lists by their root before `;rev=`. (A 2017
post for api-version 2017-01-01 said non-current revisions were not listed; current clients rely
on the behaviour above.)

`isOnline`: an offline revision is not served by the gateway, even on its revision URL; the
current revision is always online (stored `isOnline: true`, whatever a request says)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from portico.arm.errors import ArmError, invalid_field, validation_error
from portico.resources.models import ApiProps
from portico.resources.references import to_relative
from portico.store import entities as E

_REVISION = re.compile(r"^[A-Za-z0-9]{1,100}$")
REV = ";rev="
# Children of an API that belong to the API as a whole rather than to one revision.
API_WIDE_KINDS = frozenset({"release"})
# Properties every revision of an API shares, with the names Azure's refusal uses ("Can't change
# property Path for non-current revision"): they are changed through the current revision only.
SHARED_PROPERTIES = {
    "displayName": "Name",
    "description": "Description",
    "path": "Path",
    "apiVersion": "ApiVersion",
    "apiVersionSetId": "ApiVersionSet",
}
# What a PUT of an existing or new non-current revision may set besides the shared properties.
REVISION_PROPERTIES = (
    "apiRevisionDescription",
    "isOnline",
    "serviceUrl",
    "protocols",
    "subscriptionRequired",
    "subscriptionKeyParameterNames",
    "authenticationSettings",
    "termsOfServiceUrl",
    "contact",
    "license",
    "apiVersionDescription",
)


def split(name: str) -> tuple[str, str | None]:
    """`echo;rev=2` → (`echo`, `2`); `echo` → (`echo`, None)."""
    base, sep, rev = name.partition(REV)
    if not sep:
        return name, None
    if not _REVISION.match(rev):
        raise invalid_field("apiId", f"revision '{rev[:100]}' must be 1-100 letters or digits")
    return base, rev


def _same(field: str, a: Any, b: Any) -> bool:
    if field == "path":
        return str(a or "").strip("/").lower() == str(b or "").strip("/").lower()
    if field == "apiVersionSetId":
        return to_relative(str(a or "")).strip("/").lower() == to_relative(str(b or "")).strip("/").lower()
    return (a or None) == (b or None)


def refuse_shared_changes(
    current: dict[str, Any], props: dict[str, Any], own: dict[str, Any] | None = None
) -> None:
    """A 400 when `props`, written to a non-current revision, change a property the revisions
    share: a value equal to the current revision's (or to the revision's own stored copy) is no
    change."""
    for field, label in SHARED_PROPERTIES.items():
        value = props.get(field)
        if value is None or _same(field, value, current.get(field)):
            continue
        if own is not None and _same(field, value, own.get(field)):
            continue
        raise ArmError(
            400,
            "ValidationError",
            f"Can't change property {label} for non-current revision.",
            target=f"properties.{field}",
        )


def with_shared(current: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """`data` of a non-current revision with the shared properties of the current revision."""
    out = {k: v for k, v in data.items() if k not in SHARED_PROPERTIES}
    out.update({k: current[k] for k in SHARED_PROPERTIES if current.get(k) is not None})
    return out


async def _move_or_copy(conn: AsyncConnection, store: int, src: str, dst: str, *, move: bool) -> None:
    """Every revision-specific entity under `apis/{src}` written again under `apis/{dst}`."""
    src_path, dst_path = f"apis/{src}", f"apis/{dst}"
    for row in await E.list_subtree(conn, store, src_path):
        if row.parent == src_path and row.kind in API_WIDE_KINDS:
            continue
        parent = dst_path + row.parent[len(src_path) :]
        await E.put(conn, store, row.kind, parent, row.name, row.display_name, row.data)
        if move:
            await E.remove(conn, store, row.kind, row.parent, row.name)


async def create(
    conn: AsyncConnection, store: int, base: str, rev: str, props: dict[str, Any]
) -> tuple[str, bool]:
    """Creates (or describes anew) revision `rev` of API `base` (its stored name); returns the
    revision's entity name and whether it was created."""
    base_row = await E.get(conn, store, "api", "", base)
    if base_row is None:
        raise ArmError(404, "ResourceNotFound", f"Api '{base}' was not found.")
    if str(base_row.data.get("apiRevision", "1")) == rev:
        raise ArmError(
            409,
            "RevisionIsCurrent",
            f"Revision {rev} is the current revision of API '{base}'; PUT apis/{base}.",
        )
    name = f"{base}{REV}{rev}"
    existing = await E.get(conn, store, "api", "", name, lock=True)
    if existing is not None:
        data = dict(existing.data)
        created = False
    else:
        source = base
        if props.get("sourceApiId"):
            rel = to_relative(str(props["sourceApiId"])).strip("/").split("/")
            src_name = rel[1] if len(rel) == 2 and rel[0].lower() == "apis" else ""
            if split(src_name)[0].lower() != base.lower():
                raise invalid_field("properties.sourceApiId", f"must be API '{base}' or one of its revisions")
            found = await E.find_name(conn, store, "api", "", src_name)
            if found is None:
                raise invalid_field("properties.sourceApiId", f"API '{src_name}' was not found")
            source = found
        src_row = base_row if source == base else await E.get(conn, store, "api", "", source)
        assert src_row is not None
        data = dict(src_row.data)
        await _move_or_copy(conn, store, source, name, move=False)
        created = True
    refuse_shared_changes(base_row.data, props, None if created else data)
    data = with_shared(base_row.data, data)
    data["apiRevision"] = rev
    data["isCurrent"] = False
    for f in REVISION_PROPERTIES:
        if props.get(f) is not None:
            data[f] = props[f]
    data.pop("sourceApiId", None)
    try:
        ApiProps.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
    await E.put(conn, store, "api", "", name, data.get("displayName"), data, exists=not created)
    return name, created


async def make_current(conn: AsyncConnection, store: int, base: str, revision_name: str) -> None:
    """Revision `revision_name` of API `base` becomes `base`; the former current one becomes
    `base;rev=<its revision>`."""
    base_row = await E.get(conn, store, "api", "", base, lock=True)
    rev_row = await E.get(conn, store, "api", "", revision_name, lock=True)
    if base_row is None or rev_row is None:
        raise invalid_field("properties.apiId", f"revision '{revision_name}' was not found")
    old_rev = str(base_row.data.get("apiRevision", "1"))
    retired = f"{base}{REV}{old_rev}"
    await _move_or_copy(conn, store, base, retired, move=True)
    await _move_or_copy(conn, store, revision_name, base, move=True)
    old = {**base_row.data, "isCurrent": False}
    new = {**rev_row.data, "isCurrent": True, "isOnline": True}
    await E.put(conn, store, "api", "", retired, old.get("displayName"), old)
    await E.put(conn, store, "api", "", base, new.get("displayName"), new, exists=True)
    await E.remove(conn, store, "api", "", revision_name)


async def release_target(conn: AsyncConnection, store: int, api: str, api_id: str) -> tuple[str, str]:
    """(stored revision name, relative reference) of a release's `apiId`, which must name a
    revision of `api`."""
    rel = to_relative(api_id).strip("/").split("/")
    name = rel[1] if len(rel) == 2 and rel[0].lower() == "apis" else ""
    base, rev = split(name)
    if base.lower() != api.lower() or rev is None:
        raise invalid_field("properties.apiId", f"must name a revision of API '{api}' (apis/{api};rev=N)")
    found = await E.find_name(conn, store, "api", "", f"{api}{REV}{rev}")
    if found is None:
        base_row = await E.get(conn, store, "api", "", api)
        if base_row is not None and str(base_row.data.get("apiRevision", "1")) == rev:
            return api, f"/apis/{api}{REV}{rev}"  # already current
        raise invalid_field("properties.apiId", f"revision {rev} of API '{api}' was not found")
    return found, f"/apis/{api}{REV}{rev}"


async def list_revisions(conn: AsyncConnection, store: int, base: str) -> list[dict[str, Any]]:
    base_row = await E.get(conn, store, "api", "", base)
    if base_row is None:
        raise ArmError(404, "ResourceNotFound", f"Api '{base}' was not found.")
    rows = [(base, base_row.data)]
    rows += [
        (r.name, r.data)
        for r in await E.list_children(conn, store, "api", "")
        if r.name.startswith(base + REV)
    ]
    out = []
    for name, data in rows:
        rev = str(data.get("apiRevision", "1"))
        item: dict[str, Any] = {
            "apiId": f"/apis/{base}{REV}{rev}",
            "apiRevision": rev,
            "privateUrl": await _private_url(conn, store, data, rev),
            "isOnline": data.get("isOnline", True),
            "isCurrent": name == base,
        }
        if data.get("apiRevisionDescription"):
            item["description"] = data["apiRevisionDescription"]
        out.append(item)
    return sorted(out, key=lambda i: (len(i["apiRevision"]), i["apiRevision"]))


async def _private_url(conn: AsyncConnection, store: int, data: dict[str, Any], rev: str) -> str:
    """Where the gateway serves the revision: `;rev=N` after the API's URL, which for a version
    set of the Segment scheme ends with the version (portico/gateway/routing.py, `addresses`)."""
    path = f"/{data.get('path', '')}"
    vs_ref, version = data.get("apiVersionSetId"), data.get("apiVersion")
    if isinstance(vs_ref, str) and version:
        vs = await E.get(conn, store, "apiVersionSet", "", vs_ref.rsplit("/", 1)[-1])
        if vs is not None and (vs.data.get("versioningScheme") or "Segment") == "Segment":
            path = f"{path.rstrip('/')}/{version}"
    return f"{path}{REV}{rev}"
