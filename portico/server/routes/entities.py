"""Entities under a service (APIs, products, users, ...): the kinds of `portico/resources/kinds.py`."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from portico.arm.call import Call, method_not_allowed, service_missing
from portico.arm.errors import ArmError
from portico.arm.http import empty, json_response
from portico.arm.paging import next_link, parse_page
from portico.resources import catalog, policy_raw
from portico.resources import kinds as K
from portico.resources.engine import EntityEngine, quote_etag
from portico.store import services as S

# kinds whose GET answers `?format=rawxml` (API Management's policy document formats)
POLICY_KINDS = frozenset({"policy", "policyFragment"})


def no_route(call: Call) -> ArmError:
    path = "/" + "/".join(call.segments)
    return ArmError(404, "ResourceNotFound", f"No resource type matches '{path[:300]}'.")


async def entity(call: Call) -> Response:
    sub, rg, name = call.subscription_id, call.group_name, call.service_name
    rest = [s for s in call.params["path"].split("/") if s]
    target = K.resolve(rest)
    if target is None:
        raise no_route(call)
    scope = call.service_scope
    noun = target.kind.rbac_noun
    method = call.method
    db = call.rt.db
    if_match = call.request.headers.get("if-match")

    if target.action is not None:
        if method != "POST":
            raise method_not_allowed(call.method)
        action_names = {
            "listsecrets": "listSecrets",
            "listvalue": "listValue",
            "regenerateprimarykey": "regeneratePrimaryKey",
            "regeneratesecondarykey": "regenerateSecondaryKey",
            **{action: name for (_kind, action), name in catalog.ACTIONS.items()},
        }
        await call.authorize(
            f"Microsoft.ApiManagement/service/{noun}/{action_names[target.action]}/action", scope
        )
        writes = target.action.startswith("regenerate")
        action_body = await call.body(required=False)
        async with db.write() if writes else db.read() as conn:
            svc = await call.service(conn, lock=writes)
            res = await EntityEngine(conn, svc).action(target, action_body)
        headers = {"ETag": quote_etag(res.etag)} if res.etag else None
        if res.body is None:
            return empty(catalog.ACTION_STATUS.get((target.kind.kind, target.action), 204), headers)
        return json_response(res.body, headers=headers)

    if target.name is None:
        if method != "GET":
            raise method_not_allowed(call.method)
        await call.authorize(f"Microsoft.ApiManagement/service/{noun}/read", scope)
        q = call.query()
        page = parse_page(q.get("$top"), q.get("$skip"), q.get("$filter"))
        async with db.read() as conn:
            svc = await call.service(conn)
            items, total, more = await EntityEngine(conn, svc).list(target, page)
        url = call.url()
        out: dict[str, Any] = {"value": items, "count": total}
        link = next_link(url, q, page, len(items), more)
        if link:
            out["nextLink"] = link
        return json_response(out)

    if method in ("GET", "HEAD"):
        await call.authorize(f"Microsoft.ApiManagement/service/{noun}/read", scope)
        async with db.read() as conn:
            try:
                if not target.ancestors and not target.kind.link_target:
                    # Fast path: the service and a top-level entity in one statement.
                    svc_or_none, row = await S.get_service_and_entity(
                        conn, sub, rg, name, target.kind.kind, target.parent, target.name
                    )
                    if svc_or_none is None:
                        raise service_missing(name, rg)
                    engine = EntityEngine(conn, svc_or_none)
                    # not under this exact name: maybe under another case (ARM names ignore case)
                    res = engine.result_of(target, row) if row is not None else await engine.get(target)
                else:
                    svc = await call.service(conn)
                    res = await EntityEngine(conn, svc).get(target)
            except ArmError as exc:
                if method == "HEAD" and exc.status == 404:
                    return empty(404)
                raise
        headers = {"ETag": quote_etag(res.etag or "")}
        if method == "HEAD":
            return empty(target.kind.head_status, headers)
        rawxml = call.query().get("format", "").lower() == "rawxml"
        if target.kind.kind in POLICY_KINDS and rawxml and res.body is not None:
            props = res.body["properties"]
            props["value"] = policy_raw.decode(str(props.get("value", "")))
            props["format"] = "rawxml"
        return json_response(res.body, headers=headers)
    if target.kind.read_only:
        raise method_not_allowed(call.method)
    if method in ("PUT", "PATCH"):
        await call.authorize(f"Microsoft.ApiManagement/service/{noun}/write", scope)
        body = await call.body(required=not (target.kind.link_target or target.kind.body_optional))
        async with db.write() as conn:
            svc = await call.service(conn, lock=True)
            engine = EntityEngine(conn, svc)
            res = await (
                engine.put(target, body, if_match)
                if method == "PUT"
                else engine.patch(target, body, if_match)
            )
        return json_response(
            res.body, 201 if res.created else 200, headers={"ETag": quote_etag(res.etag or "")}
        )
    if method == "DELETE":
        await call.authorize(f"Microsoft.ApiManagement/service/{noun}/delete", scope)
        async with db.write() as conn:
            svc = await call.service(conn, lock=True)
            deleted = await EntityEngine(conn, svc).delete(target, if_match, call.query())
        return empty(target.kind.delete_status if deleted else 204)
    raise method_not_allowed(call.method)
