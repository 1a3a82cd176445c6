"""What a request to a backend is made of: the headers the gateway passes on (hop-by-hop ones and
the subscription key dropped, X-Forwarded-* added) and the URL forward-request calls. Used by the
proxy (portico/gateway/proxy.py) and by send-request's mode="copy"."""

from __future__ import annotations

from typing import TYPE_CHECKING

from portico.gateway.outcome import Reject
from portico.gateway.upstream import split_url

if TYPE_CHECKING:
    from portico.gateway.context import Context

# RFC 9110 §7.6.1 connection-specific headers, plus what the gateway sets itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"expect",
    }
)
_url_cache: dict[str, tuple[str, str, int, str, str]] = {}


def _split(base: str) -> tuple[str, str, int, str, str]:
    hit = _url_cache.get(base)
    if hit is None:
        try:
            scheme, host, port, target = split_url(base)
        except ValueError as exc:
            raise Reject(
                500, f"Backend URL is invalid: {exc}.", source="forward-request", reason="BackendUrlInvalid"
            ) from None
        path, _, query = target.partition("?")
        hit = (scheme, host, port, path.rstrip("/"), query)
        if len(_url_cache) > 10000:
            _url_cache.clear()
        _url_cache[base] = hit
    return hit


def request_headers(ctx: Context) -> list[tuple[bytes, bytes]]:
    touched = ctx.headers_touched
    raw = ctx.headers.to_raw() if touched else ctx.raw_headers
    drop_key = ctx.api.key_header if ctx.api is not None else b""
    out: list[tuple[bytes, bytes]] = []
    forwarded_for = b""
    conn_tokens: list[bytes] | None = None
    for name, value in raw:
        n = name.lower() if touched else name
        if n in HOP_BY_HOP or n == drop_key:
            if n == b"connection":  # headers it names are hop-by-hop too (RFC 9110 §7.6.1)
                conn_tokens = [t.strip().lower() for t in value.split(b",")]
            continue
        if n == b"x-forwarded-for":
            forwarded_for = value
            continue
        out.append((n, value))
    if conn_tokens:
        drop = frozenset(conn_tokens)
        out = [h for h in out if h[0] not in drop]
    ip = ctx.client_ip.encode("latin-1")
    out.append((b"x-forwarded-for", forwarded_for + b", " + ip if forwarded_for else ip))
    out.append((b"x-forwarded-proto", ctx.scheme.encode()))
    out.append((b"x-forwarded-host", ctx.host.encode("latin-1")))
    diag = ctx.diag
    if diag is not None and diag.inject:  # the diagnostics' httpCorrelationProtocol
        names = {name for name, _ in diag.inject}
        out = [h for h in out if h[0] not in names]
        out.extend(diag.inject)
    return out


def backend_target(ctx: Context) -> tuple[str, str, int, str]:
    base = ctx.backend_base
    if not base:
        raise Reject(
            500,
            "Backend service URL is not defined for this API.",
            source="forward-request",
            reason="BackendUrlMissing",
        )
    scheme, host, port, base_path, base_query = _split(base)
    path = (base_path + ctx.backend_suffix) or "/"
    query = ctx.current_query()
    if base_query:
        query = base_query + ("&" + query if query else "")
    return scheme, host, port, path + ("?" + query if query else "")


def backend_url(ctx: Context) -> str:
    """The URL forward-request would call now (send-request mode="copy" calls it by default)."""
    scheme, host, port, target = backend_target(ctx)
    default = 443 if scheme == "https" else 80
    authority = f"[{host}]" if ":" in host else host
    return f"{scheme}://{authority}{'' if port == default else f':{port}'}{target}"


__all__ = ["HOP_BY_HOP", "backend_target", "backend_url", "request_headers"]
