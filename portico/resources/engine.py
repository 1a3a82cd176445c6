"""CRUD of the entities under a service: validation, references, cascades, secrets and rendering.

Callers hand in a connection inside the right transaction (read snapshot or write); the engine
never commits. HTTP concerns (status codes, headers) stay in portico.server.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from portico.arm.errors import ArmError, invalid_field, validation_error
from portico.arm.paging import Page
from portico.edmx import EdmxError, read_model
from portico.resources import catalog, policy_raw, revisions, websocket_apis
from portico.resources import kind_rules as R
from portico.resources import kinds as K
from portico.resources.importers.graphql import GRAPHQL_CONTENT_TYPE, sdl_from_text
from portico.resources.importers.odata import ODATA_CONTENT_TYPE
from portico.resources.kind_actions import run_action
from portico.resources.kinds import Kind, Target
from portico.resources.policy_xml import check_policy_document, is_resolver_policy
from portico.resources.references import to_absolute, to_relative
from portico.secret_fields import HIDDEN_FIELDS as SECRET_HIDDEN_FIELDS
from portico.store import entities as E
from portico.store.services import Service

# Stored fields that never leave the server, and fields hidden on GET that have a listSecrets-style action.
INTERNAL_FIELDS = {"user": ("passwordHash",)}
HIDDEN_FIELDS: dict[str, tuple[str, ...]] = {"subscription": ("primaryKey", "secondaryKey")}
HIDDEN_FIELDS.update(SECRET_HIDDEN_FIELDS)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def new_subscription_key() -> str:
    return secrets.token_hex(16)


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


@dataclass(frozen=True)
class Result:
    body: dict[str, Any] | None
    etag: str | None = None
    created: bool = False


def etag_matches(header: str | None, etag: str) -> bool:
    if header is None:
        return True
    for tag in header.split(","):
        tag = tag.strip().removeprefix("W/").strip('"')
        if tag == "*" or tag == etag:
            return True
    return False


def quote_etag(etag: str) -> str:
    return f'"{etag}"'


class EntityEngine:
    def __init__(self, conn: AsyncConnection, service: Service) -> None:
        self.conn = conn
        self.svc = service
        self.store = service.active_store_id

    # --- rendering -------------------------------------------------------------------------------
    def _arm_id(self, path: str) -> str:
        return f"{self.svc.arm_id}/{path}"

    def render(
        self, kind: Kind, parent: str, name: str, data: dict[str, Any], *, path: str | None = None
    ) -> dict[str, Any]:
        props = {k: v for k, v in data.items() if k not in INTERNAL_FIELDS.get(kind.kind, ())}
        for f in HIDDEN_FIELDS.get(kind.kind, ()):
            props.pop(f, None)
        if kind.kind == "namedValue" and props.get("secret"):
            props.pop("value", None)
        if kind.kind == "subscription":
            props["scope"] = to_absolute(self.svc.arm_id, props["scope"])
            if props.get("ownerId"):
                props["ownerId"] = to_absolute(self.svc.arm_id, props["ownerId"])
        if kind.kind == "api" and props.get("apiVersionSetId"):
            props["apiVersionSetId"] = to_absolute(self.svc.arm_id, props["apiVersionSetId"])
        if kind.kind == "release" and props.get("apiId"):
            props["apiId"] = to_absolute(self.svc.arm_id, props["apiId"])
        R.render_props(kind.kind, props, self.svc.arm_id)
        own = f"{kind.segment}/{name}"
        return {
            "id": self._arm_id(path or (f"{parent}/{own}" if parent else own)),
            "type": kind.arm_type,
            "name": name,
            "properties": props,
        }

    async def _render_link(self, t: Target, name: str) -> tuple[dict[str, Any], str]:
        assert t.kind.link_target
        target_kind = _kind_by_name(t.kind.link_target)
        row = await E.get(self.conn, self.store, target_kind.kind, "", name)
        if row is None:  # a dangling link (its target was removed in the same restore): report absence
            raise ArmError(
                404, "ResourceNotFound", f"{target_kind.segment[:-1].capitalize()} '{name}' was not found."
            )
        body = self.render(target_kind, "", name, row.data, path=f"{t.parent}/{t.kind.segment}/{name}")
        return body, row.etag

    # --- reads -----------------------------------------------------------------------------------
    async def _canonical(self, t: Target) -> Target:
        """`t` with its owners' names as stored (ARM names match ignoring case: apis/ECHO/operations
        is apis/echo/operations); 404 when an owner does not exist."""
        parent_path = ""
        ancestors: list[tuple[K.Kind, str]] = []
        for kind, owner in t.ancestors:
            found = await E.find_name(self.conn, self.store, kind.kind, parent_path, owner)
            if found is None:
                raise ArmError(
                    404, "ResourceNotFound", f"{kind.segment[:-1].capitalize()} '{owner}' was not found."
                )
            ancestors.append((kind, found))
            parent_path = (
                f"{parent_path}/{kind.segment}/{found}" if parent_path else f"{kind.segment}/{found}"
            )
        return replace(t, parent=parent_path, ancestors=tuple(ancestors))

    async def _located(self, t: Target, *, lock: bool = False) -> tuple[Target, E.Row | None]:
        """`t` with every name as stored, and its row (None: no such entity). The exact name is
        read first; another case is looked for only when that misses (a link is named after its
        target, so a new link takes the target's stored name). A PUT of apis/ECHO updates apis/echo."""
        t = await self._canonical(t)
        assert t.name is not None
        row = await E.get(self.conn, self.store, t.kind.kind, t.parent, t.name, lock=lock)
        if row is None:
            if t.kind.link_target:
                target = _kind_by_name(t.kind.link_target).kind
                other = await E.find_name(self.conn, self.store, target, "", t.name)
            else:
                other = await E.other_case(self.conn, self.store, t.kind.kind, t.parent, t.name)
            if other is not None and other != t.name:
                t = replace(t, name=other)
                row = await E.get(self.conn, self.store, t.kind.kind, t.parent, other, lock=lock)
        return t, row

    async def get(self, t: Target) -> Result:
        assert t.name is not None
        t, row = await self._located(t)
        assert t.name is not None
        if row is None:
            raise _missing(t)
        if t.kind.link_target:
            body, etag = await self._render_link(t, t.name)
            return Result(body, etag)
        return Result(self.render(t.kind, t.parent, t.name, row.data), row.etag)

    def result_of(self, t: Target, row: E.Row | None) -> Result:
        """`get` of a top-level, non-link entity whose row the caller already read."""
        assert t.name is not None and not t.ancestors and not t.kind.link_target
        if row is None:
            raise _missing(t)
        return Result(self.render(t.kind, t.parent, t.name, row.data), row.etag)

    async def list(self, t: Target, page: Page) -> tuple[list[dict[str, Any]], int, bool]:
        """Returns (items of this page, total count, more pages follow)."""
        t = await self._canonical(t)
        if page.filter is None:
            total = await E.count_children(self.conn, self.store, t.kind.kind, t.parent)
            rows = await E.list_children(
                self.conn, self.store, t.kind.kind, t.parent, offset=page.skip, limit=page.top
            )
            items = [await self._render_row(t, r) for r in rows]
            return [i for i in items if i is not None], total, page.skip + len(rows) < total
        rows = await E.list_children(self.conn, self.store, t.kind.kind, t.parent)
        matched: list[dict[str, Any]] = []
        for r in rows:
            item = await self._render_row(t, r)
            if item is not None and page.filter.predicate(item):
                matched.append(item)
        window = matched[page.skip : page.skip + page.top]
        return window, len(matched), page.skip + len(window) < len(matched)

    async def _render_row(self, t: Target, r: E.Row) -> dict[str, Any] | None:
        if t.kind.link_target:
            try:
                return (await self._render_link(t, r.name))[0]
            except ArmError:
                return None
        return self.render(t.kind, r.parent, r.name, r.data)

    # --- writes ----------------------------------------------------------------------------------
    def check_writable(self) -> None:
        if self.svc.busy and self.svc.busy.startswith("restore:"):
            raise ArmError(
                409,
                "ServiceRestoreInProgress",
                f"Service '{self.svc.name}' is being restored (operation {self.svc.busy.split(':', 1)[1]}); "
                "configuration changes are refused until the restore completes.",
            )

    async def put(self, t: Target, body: Any, if_match: str | None) -> Result:
        assert t.name is not None
        self.check_writable()
        t, existing = await self._located(t, lock=True)
        assert t.name is not None
        if existing is not None and not etag_matches(if_match, existing.etag):
            raise _precondition(t)
        if existing is None and if_match not in (None, "*"):
            raise _precondition(t)
        if t.kind.link_target:
            return await self._put_link(t, existing is None)
        props = _props_of(body)
        data = await self._normalize(t, props, existing.data if existing else None)
        etag, created = await E.put(
            self.conn,
            self.store,
            t.kind.kind,
            t.parent,
            t.name,
            _display(data),
            data,
            exists=existing is not None,
        )
        if t.kind.kind == "api" and websocket_apis.is_websocket(data):
            await websocket_apis.ensure_handshake(self.conn, self.store, t.name)
        return Result(self.render(t.kind, t.parent, t.name, data), etag, created)

    async def patch(self, t: Target, body: Any, if_match: str | None) -> Result:
        assert t.name is not None
        self.check_writable()
        t, existing = await self._located(t, lock=True)
        assert t.name is not None
        if if_match is None:
            raise ArmError(
                400,
                "IfMatchRequired",
                "The If-Match header is required to update an entity; send the ETag from GET or '*'.",
            )
        if existing is None:
            raise _missing(t)
        if not etag_matches(if_match, existing.etag):
            raise _precondition(t)
        if t.kind.link_target:
            raise ArmError(405, "MethodNotAllowed", "Links cannot be updated; PUT or DELETE them.")
        props = _props_of(body)
        merged = {k: v for k, v in existing.data.items() if k not in INTERNAL_FIELDS.get(t.kind.kind, ())}
        merged.update(props)
        data = await self._normalize(t, merged, existing.data)
        etag, _ = await E.put(
            self.conn, self.store, t.kind.kind, t.parent, t.name, _display(data), data, exists=True
        )
        return Result(self.render(t.kind, t.parent, t.name, data), etag)

    async def delete(self, t: Target, if_match: str | None, query: dict[str, str]) -> bool:
        """Returns False when there was nothing to delete."""
        assert t.name is not None
        self.check_writable()
        # Links (product apis/groups, group users, tag links) are deleted without If-Match, as the
        # Azure API defines them; every other entity requires it.
        if if_match is None and not t.kind.link_target and t.kind.delete_if_match:
            raise ArmError(
                400,
                "IfMatchRequired",
                "The If-Match header is required to delete an entity; send the ETag from GET or '*'.",
            )
        try:
            t, existing = await self._located(t, lock=True)
        except ArmError as exc:
            if exc.status == 404:  # its owner is gone: nothing to delete
                return False
            raise
        assert t.name is not None
        if existing is None:
            return False
        if not etag_matches(if_match, existing.etag):
            raise _precondition(t)
        await R.before_delete(self.conn, self.store, t)
        await self._cascade(t, query)
        await E.remove(self.conn, self.store, t.kind.kind, t.parent, t.name)
        await R.after_delete(self.conn, self.store, t)
        return True

    async def _cascade(self, t: Target, query: dict[str, str]) -> None:
        assert t.name is not None
        kind, name, path = t.kind.kind, t.name, t.path
        flag = query.get("deleteSubscriptions", "").lower() == "true"
        if kind == "group" and name in K.BUILTIN_GROUPS:
            raise ArmError(
                400, "MethodNotAllowedInBuiltInGroup", f"Built-in group '{name}' cannot be deleted."
            )
        if kind in ("product", "user"):
            ref_field = "scope" if kind == "product" else "ownerId"
            ref = f"/{t.kind.segment}/{name}"
            subs = [
                r
                for r in await E.list_children(self.conn, self.store, "subscription", "")
                if r.data.get(ref_field) == ref
            ]
            if subs and not flag:
                raise ArmError(
                    409,
                    "EntityHasSubscriptions",
                    f"{t.kind.segment[:-1].capitalize()} '{name}' has {len(subs)} subscription(s); "
                    "delete them first or pass deleteSubscriptions=true.",
                )
            for r in subs:
                await E.remove(self.conn, self.store, "subscription", "", r.name)
        await E.remove_subtree(self.conn, self.store, path)
        if kind == "api":
            await E.remove_named(self.conn, self.store, ["productApi"], name)
            if revisions.REV not in name:  # an API goes with all its revisions
                for r in await E.list_children(self.conn, self.store, "api", ""):
                    if r.name.startswith(name + revisions.REV):
                        await E.remove_subtree(self.conn, self.store, f"apis/{r.name}")
                        await E.remove(self.conn, self.store, "api", "", r.name)
        elif kind == "group":
            await E.remove_named(self.conn, self.store, ["productGroup"], name)
        elif kind == "user":
            await E.remove_named(self.conn, self.store, ["groupUser"], name)
        elif kind == "tag":
            await E.remove_named(self.conn, self.store, ["tagLink"], name)

    async def action(self, t: Target, body: Any = None) -> Result:
        assert t.name is not None and t.action is not None
        t, row = await self._located(t, lock=t.action.startswith("regenerate"))
        assert t.name is not None and t.action is not None
        if row is None:
            raise _missing(t)
        if (t.kind.kind, t.action) in catalog.ACTIONS:
            refs = (
                await R.fragment_references(self.conn, self.store, t.name)
                if t.kind.kind == "policyFragment"
                else []
            )
            out, changed = run_action(t, row.data, body, refs)
            etag = row.etag
            if changed is not None:
                self.check_writable()
                etag, _ = await E.put(
                    self.conn,
                    self.store,
                    t.kind.kind,
                    t.parent,
                    t.name,
                    row.display_name,
                    changed,
                    exists=True,
                )
            return Result(out, etag)
        if t.action == "listsecrets":
            return Result(
                {"primaryKey": row.data["primaryKey"], "secondaryKey": row.data["secondaryKey"]}, row.etag
            )
        if t.action == "listvalue":
            return Result({"value": row.data.get("value")}, row.etag)
        self.check_writable()
        field = "primaryKey" if t.action == "regenerateprimarykey" else "secondaryKey"
        data = dict(row.data)
        data[field] = new_subscription_key()
        etag, _ = await E.put(
            self.conn, self.store, t.kind.kind, t.parent, t.name, row.display_name, data, exists=True
        )
        return Result(None, etag)

    async def _put_link(self, t: Target, created: bool) -> Result:
        assert t.name is not None and t.kind.link_target
        target_kind = _kind_by_name(t.kind.link_target)
        if not await E.exists(self.conn, self.store, target_kind.kind, "", t.name):
            raise ArmError(
                404, "ResourceNotFound", f"{target_kind.segment[:-1].capitalize()} '{t.name}' was not found."
            )
        await E.put(self.conn, self.store, t.kind.kind, t.parent, t.name, None, {}, exists=not created)
        body, etag = await self._render_link(t, t.name)
        return Result(body, etag, created)

    # --- normalisation per kind ------------------------------------------------------------------
    async def _normalize(
        self, t: Target, props: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        kind = t.kind
        assert t.name is not None
        if kind.kind == "api" and ("value" in props or "format" in props):
            # Imports are PUTs handled by portico/resources/api_import.py; anything else would
            # silently drop the definition.
            raise ArmError(
                400,
                "ValidationError",
                "properties.format/value: an API definition can only be imported with PUT on the API.",
                target="properties.format",
            )
        try:
            model = kind.model.model_validate(props)
        except ValidationError as exc:
            raise validation_error(exc) from None
        data = model.model_dump(exclude_none=True)
        hook = getattr(self, f"_n_{kind.kind}", None)
        if hook is not None:
            data = await hook(t, data, props, old)
        elif kind.kind in R.NORMALIZERS:
            data = await R.NORMALIZERS[kind.kind](self.conn, self.store, t, data, old)
        return data

    async def _n_api(
        self, t: Target, data: dict[str, Any], props: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        base, rev = revisions.split(t.name or "")
        if rev is not None and old is not None and not old.get("isCurrent", True):
            current = await E.get(self.conn, self.store, "api", "", base)
            if current is not None:
                revisions.refuse_shared_changes(current.data, data, old)
                data = revisions.with_shared(current.data, data)
        data.setdefault("displayName", t.name)
        data.setdefault("apiRevision", "1")
        data.setdefault("isCurrent", True)
        if revisions.REV in (t.name or ""):
            # read-only in Azure's contract: a PUT that leaves it out (a re-import) keeps it
            data.setdefault("isOnline", (old or {}).get("isOnline", True))
        else:
            data["isOnline"] = True  # the current revision is always online (read-only there)
        data.setdefault("subscriptionRequired", True)
        data.setdefault("protocols", ["https"])
        data["type"] = data.get("type") or data.pop("apiType", None) or "http"
        data.pop("apiType", None)
        if data.get("serviceUrl") and not data["serviceUrl"].lower().startswith(
            ("http://", "https://", "ws://", "wss://")
        ):
            raise invalid_field("properties.serviceUrl", "must be an absolute URL")
        websocket_apis.check_api(
            data,
            old,
            given_protocols=props.get("protocols") is not None,
            given_type=bool(props.get("type") or props.get("apiType")),
        )
        if data.get("apiVersionSetId"):
            rel = to_relative(data["apiVersionSetId"])
            parts = rel.strip("/").split("/")
            found = (
                await E.find_name(self.conn, self.store, "apiVersionSet", "", parts[1])
                if len(parts) == 2 and parts[0].lower() == "apiversionsets"
                else None
            )
            if found is None:
                raise invalid_field("properties.apiVersionSetId", f"version set '{rel}' was not found")
            data["apiVersionSetId"] = f"/apiVersionSets/{found}"
        # Two current APIs cannot answer on the same path (the gateway routes by path); the
        # revisions of one API share its path.
        own_base = revisions.split(t.name or "")[0].lower()
        for r in await E.list_children(self.conn, self.store, "api", ""):
            if (
                r.name != t.name
                and r.name.partition(revisions.REV)[0].lower() != own_base
                and r.data.get("path", "").lower() == data["path"].lower()
                and r.data.get("apiVersion") == data.get("apiVersion")
                and not data.get("apiVersionSetId")
            ):
                raise ArmError(
                    409,
                    "PathAlreadyUsed",
                    f"Path '{data['path']}' is already used by API '{r.name}'.",
                    target="properties.path",
                )
        return data

    async def _n_release(
        self, t: Target, data: dict[str, Any], props: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        """A release makes the revision it names current."""
        api = t.parent.split("/", 1)[1]
        stored, ref = await revisions.release_target(self.conn, self.store, api, data["apiId"])
        if stored != api:
            await revisions.make_current(self.conn, self.store, api, stored)
        data["apiId"] = ref
        now = _now()
        data["createdDateTime"] = (old or {}).get("createdDateTime") or now
        data["updatedDateTime"] = now
        return data

    async def _n_schema(
        self, t: Target, data: dict[str, Any], props: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        """A GraphQL API's schema must be a valid GraphQL schema, an OData API's a valid EDMX document:
        the gateway and exports rely on them."""
        if data["contentType"] == GRAPHQL_CONTENT_TYPE:
            value = (data.get("document") or {}).get("value")
            if not isinstance(value, str) or not value.strip():
                raise invalid_field("properties.document.value", "the GraphQL schema (SDL) is required")
            sdl_from_text(value)
        elif data["contentType"] == ODATA_CONTENT_TYPE:  # the gateway reads the entity container
            value = (data.get("document") or {}).get("value")
            if not isinstance(value, str) or not value.strip():
                raise invalid_field(
                    "properties.document.value", "the OData metadata document (EDMX) is required"
                )
            try:
                read_model(value)
            except EdmxError as exc:
                where = f" (at {exc.where})" if exc.where else ""
                raise invalid_field("properties.document.value", f"{exc.message}{where}") from None
        return data

    async def _n_policy(
        self, t: Target, data: dict[str, Any], props: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        if data["format"].endswith("-link"):
            raise invalid_field(
                "properties.format", "linked policy documents are not supported; send the XML inline"
            )
        if data["format"] == "rawxml":  # stored as xml: the gateway and exports read XML
            data["value"] = policy_raw.encode(data["value"])
        await R.check_fragment_refs(self.conn, self.store, data["value"], "properties.value")
        await websocket_apis.check_policy(self.conn, self.store, t.parent, data["value"])
        check_policy_document(data["value"], resolver=is_resolver_policy(t.parent), scope=t.parent)
        await R.check_logger_refs(self.conn, self.store, data["value"], "properties.value")
        data["format"] = "xml"
        return data

    async def _n_group(
        self, t: Target, data: dict[str, Any], props: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        assert t.name is not None
        if t.name.lower() in K.BUILTIN_GROUPS and t.name not in K.BUILTIN_GROUPS:
            # Would be a second, undeletable "built-in" group beside the real one.
            raise ArmError(
                409,
                "GroupNameConflict",
                f"Group id '{t.name}' differs from the built-in group '{t.name.lower()}' only by case.",
            )
        builtin = t.name in K.BUILTIN_GROUPS
        data["builtIn"] = builtin
        if builtin:
            data["type"] = "system"
        elif data.get("type") == "system":
            raise invalid_field("properties.type", "only the built-in groups are of type system")
        return data

    async def _n_user(
        self, t: Target, data: dict[str, Any], props: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        password = data.pop("password", None)
        data.pop("confirmation", None)
        data.pop("appType", None)
        if password is not None:
            data["passwordHash"] = hash_password(password)
        elif old and "passwordHash" in old:
            data["passwordHash"] = old["passwordHash"]
        data["registrationDate"] = (old or {}).get("registrationDate") or _now()
        data.setdefault("identities", [{"provider": "Basic", "id": data["email"]}])
        return data

    async def _n_subscription(
        self, t: Target, data: dict[str, Any], props: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        scope = to_relative(data["scope"])
        parts = scope.strip("/").split("/")
        if scope.lower() == "/apis":
            scope = "/apis"
        elif len(parts) == 2 and parts[0].lower() in ("apis", "products"):
            kind = "api" if parts[0].lower() == "apis" else "product"
            found = await E.find_name(self.conn, self.store, kind, "", parts[1])
            if found is None:
                raise invalid_field("properties.scope", f"{kind} '{parts[1]}' was not found")
            scope = f"/{parts[0].lower()}/{found}"
        else:
            raise invalid_field("properties.scope", "must be /apis, /apis/{apiId} or /products/{productId}")
        data["scope"] = scope
        if data.get("ownerId"):
            owner = to_relative(data["ownerId"])
            oparts = owner.strip("/").split("/")
            found = (
                await E.find_name(self.conn, self.store, "user", "", oparts[1])
                if len(oparts) == 2 and oparts[0].lower() == "users"
                else None
            )
            if found is None:
                raise invalid_field("properties.ownerId", f"user '{owner}' was not found")
            data["ownerId"] = f"/users/{found}"
        prev = old or {}
        data["primaryKey"] = data.get("primaryKey") or prev.get("primaryKey") or new_subscription_key()
        data["secondaryKey"] = data.get("secondaryKey") or prev.get("secondaryKey") or new_subscription_key()
        if data["primaryKey"] == data["secondaryKey"]:
            raise invalid_field("properties.secondaryKey", "must differ from the primary key")
        data["createdDate"] = prev.get("createdDate") or _now()
        if data["state"] == "active" and not prev.get("startDate"):
            data["startDate"] = _now()
        elif prev.get("startDate"):
            data["startDate"] = prev["startDate"]
        return data

    async def _n_namedValue(
        self, t: Target, data: dict[str, Any], props: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        if data.get("keyVault") is None:
            data.pop("keyVault", None)
        elif not data["keyVault"].get("lastStatus") or data.get("value") is None:
            # the route reads the secret into `value` (routes/keyvault.py); a write that did not is refused
            raise invalid_field(
                "properties.keyVault",
                "the Key Vault secret has not been read: send keyVault or call refreshSecret",
            )
        else:
            data["secret"] = True  # a Key Vault named value is a secret, as in Azure
        if "value" not in data:
            if old and "value" in old and not old.get("keyVault"):
                data["value"] = old["value"]
            else:
                raise invalid_field("properties.value", "is required (or keyVault)")
        data.setdefault("tags", [])
        return data


def _kind_by_name(kind: str) -> Kind:
    for k in K.TOP_LEVEL.values():
        if k.kind == kind:
            return k
    raise KeyError(kind)


def _display(data: dict[str, Any]) -> str | None:
    """The copy of displayName kept in its own column (PostgreSQL text cannot hold NUL characters)."""
    v = data.get("displayName")
    return v.replace("\x00", "")[:300] if isinstance(v, str) else None


def _props_of(body: Any) -> dict[str, Any]:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ArmError(400, "InvalidRequestContent", "The request body must be a JSON object.")
    props = body.get("properties", {})
    if not isinstance(props, dict):
        raise invalid_field("properties", "must be an object")
    return props


def _missing(t: Target) -> ArmError:
    noun = t.kind.kind if t.kind.fixed_name else t.kind.segment.removesuffix("s")  # "policies": "policy"
    return ArmError(
        404, "ResourceNotFound", f"{noun[:1].upper() + noun[1:]} '{t.name}' was not found at '{t.path}'."
    )


def _precondition(t: Target) -> ArmError:
    return ArmError(
        412,
        "PreconditionFailed",
        f"The If-Match ETag does not match the current state of '{t.path}': it was changed by someone else; GET it again.",
    )
