"""Credential manager endpoints: authorization providers and their authorizations (connections).

Configuration goes through the entity engine like every kind (`routes/entities.py`); around it,
these handlers obtain tokens (a client-credentials authorization is connected when it is written),
give login links for authorization-code consent, forget tokens with their authorization, and show
each provider's `redirectUrl` as Portico's own consent redirect (`identity/credentials/consent.py`).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from portico.arm.call import Call, method_not_allowed
from portico.arm.errors import ArmError
from portico.arm.http import json_response
from portico.identity.credentials import connect, consent
from portico.identity.credentials import tokens as TK
from portico.names import fold_name
from portico.resources import kinds as K
from portico.resources.engine import EntityEngine, quote_etag
from portico.server.routes.entities import entity

_PROVIDERS = "authorizationProviders"


def _with_redirect(call: Call, resp: Response) -> Response:
    """The answer with every provider's redirectUrl made Portico's consent redirect."""
    if resp.status_code not in (200, 201) or not resp.body:
        return resp
    doc: dict[str, Any] = orjson.loads(resp.body)
    url = consent.redirect_url(call.base_url())
    for item in doc.get("value", [doc]) if isinstance(doc.get("value"), list) else [doc]:
        oauth2 = (item.get("properties") or {}).get("oauth2")
        if isinstance(oauth2, dict):
            oauth2["redirectUrl"] = url
    headers = {k: v for k, v in resp.headers.items() if k.lower() == "etag"}
    return json_response(doc, resp.status_code, headers=headers)


async def providers(call: Call) -> Response:
    call.params["path"] = _PROVIDERS
    return _with_redirect(call, await entity(call))


async def provider(call: Call) -> Response:
    name = call.params["authorizationProviderId"]
    call.params["path"] = f"{_PROVIDERS}/{name}"
    resp = await entity(call)
    if call.method == "DELETE" and resp.status_code == 200:
        async with call.rt.db.write() as conn:
            svc = await call.service(conn)
            await TK.remove(conn, svc.active_store_id, name)
    return _with_redirect(call, resp)


async def _tokens_held(call: Call, resp: Response, provider: str) -> Response:
    """The answer with `Connected` authorization-code connections that hold no token (a restore
    brings their configuration, never their tokens) shown as not authenticated, as they are."""
    if call.method != "GET" or resp.status_code != 200 or not resp.body:
        return resp
    doc: dict[str, Any] = orjson.loads(resp.body)
    items = doc["value"] if isinstance(doc.get("value"), list) else [doc]
    connected = [
        i
        for i in items
        if (i.get("properties") or {}).get("oauth2grantType") == "AuthorizationCode"
        and i["properties"].get("status") == "Connected"
    ]
    if not connected:
        return resp
    async with call.rt.db.read() as conn:
        svc = await call.service(conn)
        held = await TK.held(conn, svc.active_store_id, provider)
    for item in connected:
        if fold_name(str(item.get("name") or "")) not in held:
            item["properties"]["status"] = "Error"
            item["properties"]["error"] = {
                "code": "Unauthenticated",
                "message": "This connection holds no token in this service (its tokens are never "
                "backed up): consent again through a login link.",
            }
    headers = {k: v for k, v in resp.headers.items() if k.lower() == "etag"}
    return json_response(doc, resp.status_code, headers=headers)


async def authorizations(call: Call) -> Response:
    pname = call.params["authorizationProviderId"]
    call.params["path"] = f"{_PROVIDERS}/{pname}/authorizations"
    return await _tokens_held(call, await entity(call), pname)


async def authorization(call: Call) -> Response:
    pname, aname = call.params["authorizationProviderId"], call.params["authorizationId"]
    call.params["path"] = f"{_PROVIDERS}/{pname}/authorizations/{aname}"
    resp = await entity(call)
    if call.method == "GET":
        return await _tokens_held(call, resp, pname)
    if call.method == "DELETE" and resp.status_code == 200:
        async with call.rt.db.write() as conn:
            svc = await call.service(conn)
            await TK.remove(conn, svc.active_store_id, pname, aname)
    if call.method not in ("PUT", "PATCH") or resp.status_code not in (200, 201):
        return resp
    db, box = call.rt.db, call.rt.scheduler.box
    async with db.read() as conn:
        svc = await call.service(conn)
        c = await connect.read(conn, svc.active_store_id, pname, aname)
    if c is not None and c.data.get("status") != "Connected":
        async with db.write() as conn:  # tokens of a consent or credentials now replaced
            await TK.remove(conn, svc.active_store_id, c.provider_name, c.name)
    if c is not None and c.data.get("oauth2grantType") == "ClientCredentials":
        await connect.connect_client_credentials(db, box, svc.active_store_id, c.provider_name, c.name)
    target = K.resolve(call.params["path"].split("/"))
    assert target is not None
    async with db.read() as conn:
        svc = await call.service(conn)
        res = await EntityEngine(conn, svc).get(target)
    return json_response(res.body, resp.status_code, headers={"ETag": quote_etag(res.etag or "")})


async def login_links(call: Call) -> Response:
    if call.method != "POST":
        raise method_not_allowed(call.method)
    pname, aname = call.params["authorizationProviderId"], call.params["authorizationId"]
    target = K.resolve([_PROVIDERS, pname, "authorizations", aname])
    assert target is not None
    await call.authorize_service(
        f"Microsoft.ApiManagement/service/{target.kind.rbac_noun}/getLoginLinks/action"
    )
    body = await call.body(required=False)
    post_login = body.get("postLoginRedirectUrl") if isinstance(body, dict) else None
    if post_login is not None and not isinstance(post_login, str):
        raise ArmError(
            400, "ValidationError", "postLoginRedirectUrl must be a string.", target="postLoginRedirectUrl"
        )
    async with call.rt.db.read() as conn:
        svc = await call.service(conn)
        c = await connect.read(conn, svc.active_store_id, pname, aname)
    if c is None:
        raise ArmError(404, "ResourceNotFound", f"Authorization '{aname[:256]}' was not found.")
    if c.data.get("oauth2grantType") != "AuthorizationCode":
        raise ArmError(
            400,
            "ValidationError",
            f"Authorization '{c.name}' uses the {c.data.get('oauth2grantType')} grant type: login links "
            "exist only for AuthorizationCode connections.",
        )
    link = consent.login_link(
        call.base_url(), call.rt.scheduler.box, svc.id, c.provider_name, c.name, post_login
    )
    return json_response({"loginLink": link})
