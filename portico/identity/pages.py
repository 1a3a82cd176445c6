"""Server-rendered sign-in pages: the authorization endpoint's sign-in form and the device-code page.

No external assets and no scripts. Every value is escaped by Jinja's autoescape. Forms carry a CSRF
token that must equal the `SameSite=Strict`, HttpOnly cookie set with the page (double submit), so
another site cannot post a sign-in or approve a device code. Passwords travel only in POST bodies and
are never logged; failed attempts are throttled per user (portico.identity.users).
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from portico.identity.flows import authorization_code as authcode
from portico.identity.flows import device_code
from portico.identity.issuer import OAuthError
from portico.identity.throttle import TokenBuckets, address_key
from portico.identity.user_tokens import Issuer
from portico.identity.users import SignInError, authenticate

log = logging.getLogger("portico.identity")

MAX_FORM_BYTES = 32 * 1024
# Wrong device codes allowed per source address (IPv6 by /64) in CODE_WINDOW seconds, per node: a
# code is short, so guessing pending ones is throttled.
CODE_GUESSES, CODE_WINDOW = 20, 300.0
CSRF_COOKIE = "portico_csrf"
# Tenants a person may sign in through: the tenant itself and Entra's multi-tenant aliases.
ALIASES = ("organizations", "common")
_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # No script at all; inline style only. form-action is left open: the sign-in form's answer
    # redirects to the app's loopback address.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
}

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


class PageForm:
    """A posted form, checked against the CSRF cookie."""

    def __init__(self, values: dict[str, str], csrf_ok: bool) -> None:
        self.values = values
        self.csrf_ok = csrf_ok

    def get(self, name: str) -> str:
        return self.values.get(name, "")


async def read_form(request: Request) -> PageForm:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().casefold()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OAuthError(400, "invalid_request", "The request body is too large.")
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError(400, "invalid_request", "The body must be application/x-www-form-urlencoded.")
    try:
        raw = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError(400, "invalid_request", "The request body is not valid form data.") from None
    values = {k: v[0] for k, v in raw.items()}
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = values.pop("csrf_token", "")
    ok = bool(cookie) and bool(sent) and hmac.compare_digest(cookie.encode(), sent.encode())
    return PageForm(values, ok)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page with a fresh CSRF token (cookie + hidden field)."""
    token = secrets.token_urlsafe(32)
    html = _env.get_template(template).render(csrf_token=token, error=context.pop("error", None), **context)
    resp = HTMLResponse(html, status_code=status, headers=_HEADERS)
    resp.set_cookie(
        CSRF_COOKIE,
        token,
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
        path="/",
    )
    return resp


def message_page(request: Request, title: str, message: str, status: int = 200) -> HTMLResponse:
    return render(request, "message.html", status, title=title, message=message)


def answer(request: Request, result: authcode.Answer) -> Response:
    """303 to the redirect URI, or (form_post) a page whose form the browser posts there at once."""
    if result.response_mode != "form_post":
        return RedirectResponse(result.location, status_code=303, headers=_HEADERS)
    nonce = secrets.token_urlsafe(16)
    html = _env.get_template("form_post.html").render(
        title="Signing in", action=result.redirect_uri, fields=sorted(result.values.items()), nonce=nonce
    )
    # The one script: submit the form on load (a button does it without scripts).
    csp = f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; frame-ancestors 'none'"
    return HTMLResponse(html, headers={**_HEADERS, "Content-Security-Policy": csp})


def build_pages_router(iss: Issuer) -> APIRouter:
    router = APIRouter(tags=["identity"])
    settings = iss.settings
    tenants = {settings.tenant_id.casefold(), *ALIASES}

    def tenant_ok(tenant: str) -> bool:
        return tenant.casefold() in tenants

    def unknown_tenant(request: Request) -> HTMLResponse:
        return message_page(
            request, "Sign-in failed", "Tenant not found. Check the tenant id in the URL.", 404
        )

    # --- device authorization endpoint (JSON, for MSAL) -------------------------------------------

    @router.post("/{tenant}/oauth2/v2.0/devicecode")
    async def devicecode(tenant: str, request: Request) -> JSONResponse:
        try:
            if not tenant_ok(tenant):
                raise OAuthError(
                    404, "invalid_tenant", "Tenant not found. Check the tenant id in the authority URL."
                )
            form = await read_form(request)
            body = await device_code.start(iss, form.values)
        except OAuthError as e:
            return e.response()
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    # --- authorization endpoint: sign-in page ----------------------------------------------------

    async def signin_page(request: Request, params: dict[str, str], error: str | None = None) -> Response:
        try:
            req = await authcode.parse_request(iss, params)
        except authcode.PageError as e:
            return message_page(request, "Sign-in failed", str(e), 400)
        except authcode.RedirectError as e:
            return answer(request, e.answer)
        return render(
            request,
            "signin.html",
            title="Sign in",
            app_name=req.client.display_name,
            action=request.url.path,
            hidden=sorted(req.params.items()),
            username=params.get("username") or req.login_hint,
            error=error,
        )

    @router.get("/{tenant}/oauth2/v2.0/authorize")
    async def authorize(tenant: str, request: Request) -> Response:
        if not tenant_ok(tenant):
            return unknown_tenant(request)
        return await signin_page(request, dict(request.query_params))

    @router.post("/{tenant}/oauth2/v2.0/authorize")
    async def authorize_post(tenant: str, request: Request) -> Response:
        if not tenant_ok(tenant):
            return unknown_tenant(request)
        try:
            form = await read_form(request)
        except OAuthError as e:
            return message_page(request, "Sign-in failed", e.description, 400)
        params = {k: form.get(k) for k in authcode.FORWARDED if k in form.values}
        if not form.csrf_ok:
            return await signin_page(
                request, params, "The form expired or came from another site. Sign in again."
            )
        try:
            req = await authcode.parse_request(iss, params)
        except authcode.PageError as e:
            return message_page(request, "Sign-in failed", str(e), 400)
        except authcode.RedirectError as e:
            return answer(request, e.answer)
        if form.get("action") == "cancel":
            declined = authcode.RedirectError(
                req.redirect_uri,
                req.state,
                req.response_mode,
                "access_denied",
                "AADSTS65004: The user declined to sign in.",
            )
            return answer(request, declined.answer)
        try:
            user = await authenticate(iss.db, form.get("username"), form.get("password"))
        except SignInError as e:
            return await signin_page(request, {**params, "username": form.get("username")}, str(e))
        log.info("user %s signed in to client %s", user.oid, req.client.client_id)
        return answer(request, await authcode.issue_code(iss, req, user))

    # --- device-code verification page -----------------------------------------------------------

    path = device_code.VERIFICATION_PATH
    code_guesses = TokenBuckets(CODE_GUESSES, CODE_WINDOW)

    def code_page(
        request: Request, user_code: str = "", error: str | None = None, status: int = 200
    ) -> Response:
        return render(
            request,
            "devicecode.html",
            status,
            title="Enter code",
            action=path,
            user_code=user_code,
            error=error,
        )

    @router.get(path)
    async def devicelogin(request: Request) -> Response:
        return code_page(request)

    @router.post(path)
    async def devicelogin_post(request: Request) -> Response:
        try:
            form = await read_form(request)
        except OAuthError as e:
            return message_page(request, "Sign-in failed", e.description, 400)
        user_code = device_code.normalize_user_code(form.get("user_code"))
        if not form.csrf_ok:
            return code_page(
                request, user_code, "The form expired or came from another site. Enter the code again."
            )
        address = address_key(request.client.host if request.client else None)
        wait = code_guesses.take(address)
        if wait > 0:
            return code_page(
                request,
                "",
                f"Too many wrong codes from your network. Try again in {math.ceil(wait)} seconds.",
                429,
            )
        found = await device_code.pending(iss, user_code)
        code_guesses.settle(address, failed=found is None)
        if found is None:
            return code_page(request, "", "That code is not valid or has expired. Check it and try again.")
        grant, app_name = found

        def signin(error: str | None = None) -> Response:
            return render(
                request,
                "signin.html",
                title="Sign in",
                app_name=app_name,
                action=path,
                hidden=[("user_code", user_code), ("step", "signin")],
                username=form.get("username"),
                error=error,
            )

        if form.get("step") != "signin":
            return signin()
        if form.get("action") == "cancel":
            await device_code.decide(iss, grant, None)
            return message_page(request, "Sign-in declined", f"You declined to sign in to {app_name}.")
        try:
            user = await authenticate(iss.db, form.get("username"), form.get("password"))
        except SignInError as e:
            return signin(str(e))
        if not await device_code.decide(iss, grant, user):
            return code_page(request, "", "That code is not valid or has expired. Check it and try again.")
        log.info("user %s approved a device sign-in for client %s", user.oid, grant.client_id)
        return message_page(
            request,
            "You're signed in",
            f"You have signed in to {app_name} on your device as {user.upn}. You may now close this window.",
        )

    return router
