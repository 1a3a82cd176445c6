"""Link resources (2022-08-01 and later): products/{id}/apiLinks|groupLinks and
tags/{id}/apiLinks|productLinks|operationLinks, as views over the product and tag links the older
paths store (productApi, productGroup, tagLink). A target has one link per owner, as in Azure; its
link id is kept on the stored link (`linkName`), and a link the older paths made is named after
its target, as those paths name it. A PUT naming an already-linked target under another id renames
that link, so a template redeployed over links made by older tools converges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portico.arm.errors import ArmError, invalid_field
from portico.resources.engine import EntityEngine
from portico.resources.references import to_absolute, to_relative
from portico.store import entities as E

ARM = "Microsoft.ApiManagement/service"


@dataclass(frozen=True)
class LinkView:
    owner_segment: str  # products | tags
    owner_kind: str
    segment: str  # apiLinks ...
    field: str  # apiId ...
    target_kind: str  # api | group | product | operation
    stored_kind: str  # productApi | productGroup | tagLink


VIEWS = {
    ("products", "apilinks"): LinkView("products", "product", "apiLinks", "apiId", "api", "productApi"),
    ("products", "grouplinks"): LinkView(
        "products", "product", "groupLinks", "groupId", "group", "productGroup"
    ),
    ("tags", "apilinks"): LinkView("tags", "tag", "apiLinks", "apiId", "api", "tagLink"),
    ("tags", "productlinks"): LinkView("tags", "tag", "productLinks", "productId", "product", "tagLink"),
    ("tags", "operationlinks"): LinkView(
        "tags", "tag", "operationLinks", "operationId", "operation", "tagLink"
    ),
}


class Links:
    def __init__(self, eng: EntityEngine, view: LinkView, owner: str) -> None:
        self.eng, self.v, self.owner = eng, view, owner

    async def owner_name(self) -> str:
        found = await E.find_name(self.eng.conn, self.eng.store, self.v.owner_kind, "", self.owner)
        if found is None:
            raise ArmError(
                404, "ResourceNotFound", f"{self.v.owner_kind.capitalize()} '{self.owner}' was not found."
            )
        return found

    def _item(self, owner: str, link: str, target_path: str) -> dict[str, Any]:
        sid = self.eng.svc.arm_id
        return {
            "id": f"{sid}/{self.v.owner_segment}/{owner}/{self.v.segment}/{link}",
            "name": link,
            "type": f"{ARM}/{self.v.owner_segment}/{self.v.segment}",
            "properties": {self.v.field: to_absolute(sid, "/" + target_path)},
        }

    async def _links(self, owner: str) -> list[tuple[str, str, str, str]]:
        """(link id, target path, stored parent, stored name) of the owner's links of this view."""
        conn, store = self.eng.conn, self.eng.store
        if self.v.owner_segment == "products":
            rows = await E.list_children(conn, store, self.v.stored_kind, f"products/{owner}")
            plural = self.v.target_kind + "s"
            return [(_link_id(r.data, r.name), f"{plural}/{r.name}", r.parent, r.name) for r in rows]
        out = []
        for r in await E.list_all(conn, store, "tagLink"):
            if r.name != owner:
                continue
            parts = r.parent.split("/")
            kind = {2: "api" if parts[0] == "apis" else "product", 4: "operation"}.get(len(parts))
            if kind == self.v.target_kind:
                out.append((_link_id(r.data, parts[-1]), r.parent, r.parent, r.name))
        return out

    async def items(self) -> list[dict[str, Any]]:
        owner = await self.owner_name()
        return [self._item(owner, link, target) for link, target, _p, _n in await self._links(owner)]

    async def _find(self, owner: str, link: str) -> tuple[str, str, str, str] | None:
        for found in await self._links(owner):
            if found[0].lower() == link.lower():
                return found
        return None

    async def get(self, link: str) -> dict[str, Any]:
        owner = await self.owner_name()
        found = await self._find(owner, link)
        if found is None:
            raise ArmError(404, "ResourceNotFound", f"Link '{link[:80]}' was not found.")
        return self._item(owner, found[0], found[1])

    async def put(self, link: str, body: Any) -> tuple[dict[str, Any], bool]:
        owner = await self.owner_name()
        props = body.get("properties") if isinstance(body, dict) else None
        ref = props.get(self.v.field) if isinstance(props, dict) else None
        if not isinstance(ref, str) or not ref:
            raise invalid_field(f"properties.{self.v.field}", "is required")
        parts = to_relative(ref).strip("/").split("/")
        conn, store = self.eng.conn, self.eng.store
        if self.v.target_kind == "operation":
            ok = len(parts) == 4 and parts[0].lower() == "apis" and parts[2].lower() == "operations"
            api = await E.find_name(conn, store, "api", "", parts[1]) if ok else None
            op = await E.find_name(conn, store, "operation", f"apis/{api}", parts[3]) if api else None
            target_parent, target = (f"apis/{api}/operations/{op}", op) if op else ("", None)
        else:
            plural = self.v.target_kind + "s"
            ok = len(parts) == 2 and parts[0].lower() == plural.lower()
            target = await E.find_name(conn, store, self.v.target_kind, "", parts[1]) if ok else None
            target_parent = f"{plural}/{target}"
        if target is None:
            raise invalid_field(f"properties.{self.v.field}", f"'{ref[:200]}' was not found")
        if self.v.owner_segment == "products":
            parent, name = f"products/{owner}", target
        else:
            parent, name = target_parent, owner
        before = await self._find(owner, link)
        if before is not None and (before[2], before[3]) != (parent, name):
            # the link id now designates another target: its old target is unlinked
            await E.remove(conn, store, self.v.stored_kind, before[2], before[3])
        exists = await E.exists(conn, store, self.v.stored_kind, parent, name)
        # a link named after its target stores no id: the older paths read it the same way
        data = {} if link.lower() == target.lower() else {"linkName": link}
        await E.put(conn, store, self.v.stored_kind, parent, name, None, data, exists=exists)
        return self._item(owner, link, target_parent), before is None

    async def delete(self, link: str) -> bool:
        owner = await self.owner_name()
        found = await self._find(owner, link)
        if found is None:
            return False
        return await E.remove(self.eng.conn, self.eng.store, self.v.stored_kind, found[2], found[3])


def _link_id(data: dict[str, Any], target: str) -> str:
    """The link id a stored link carries, or its target's name (links made by the older paths)."""
    name = data.get("linkName") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else target
