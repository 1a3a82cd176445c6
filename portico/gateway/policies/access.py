"""Access policies: ip-filter, check-header, cors, validate-jwt and authentication-basic."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import time
from typing import TYPE_CHECKING, Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from portico.gateway.context import HeaderMap, Response, Variables
from portico.gateway.expressions import to_text
from portico.gateway.outcome import STOP, Reject
from portico.gateway.policies.base import CompileContext, Policy, policy
from portico.gateway.policies.xmltree import NAMED_VALUE, Node, PolicyDocumentError

if TYPE_CHECKING:
    from portico.gateway.context import Context
    from portico.gateway.jwks import JwksCache

INBOUND = frozenset({"inbound"})


@policy
class IpFilter(Policy):
    tag = "ip-filter"
    sections = INBOUND

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"action"})
        self.allow = node.choice("action", ("allow", "forbid"), None) == "allow"
        if node.get("action") is None:
            raise PolicyDocumentError("attribute 'action' is required (allow or forbid).", node)
        node.check_children({"address", "address-range"})
        self.ranges: list[tuple[int, int, int]] = []  # (version, low, high)
        for child in node.children:
            if child.tag == "address":
                child.check_attrs(frozenset())
                a = _ip(child.text.strip(), child)
                if a is not None:
                    self.ranges.append((a.version, int(a), int(a)))
            else:
                child.check_attrs({"from", "to"})
                lo, hi = _ip(child.require("from"), child), _ip(child.require("to"), child)
                if lo is None or hi is None:
                    continue
                if lo.version != hi.version or int(lo) > int(hi):
                    raise PolicyDocumentError(
                        "'from' and 'to' must be addresses of the same family with from <= to.", child
                    )
                self.ranges.append((lo.version, int(lo), int(hi)))

    def run(self, ctx: Context) -> Any:
        try:
            ip = ipaddress.ip_address(ctx.client_ip)
        except ValueError:
            inside = False
        else:
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            n, v = int(ip), ip.version
            inside = any(ver == v and lo <= n <= hi for ver, lo, hi in self.ranges)
        if inside != self.allow:
            raise Reject(403, "Forbidden", source="ip-filter", reason="CallerIpNotAllowed")
        return None


def _ip(text: str, node: Node) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if NAMED_VALUE.search(text):
        return None
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise PolicyDocumentError(f"'{text[:60]}' is not an IP address.", node) from None


@policy
class CheckHeader(Policy):
    tag = "check-header"
    sections = INBOUND

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"name", "failed-check-httpcode", "failed-check-error-message", "ignore-case"})
        node.check_children({"value"})
        name = node.header_name("name", required=True)
        assert name is not None
        self.name = name
        code = node.integer("failed-check-httpcode", required=True, minimum=100)
        assert code is not None
        if code > 599:
            raise PolicyDocumentError("attribute 'failed-check-httpcode' must be between 100 and 599.", node)
        self.code = code
        self.message = node.require("failed-check-error-message")
        if node.get("ignore-case") is None:
            raise PolicyDocumentError("attribute 'ignore-case' is required.", node)
        self.ignore_case = node.boolean("ignore-case", False)
        self.values = [c.text_value() for c in node.children]

    def run(self, ctx: Context) -> Any:
        present = ctx.headers.get_all(self.name)
        if not present:
            raise Reject(self.code, self.message, source="check-header", reason="HeaderNotFound")
        if self.values:
            wanted = [v.text(ctx) for v in self.values]
            got = [p.strip() for value in present for p in value.split(",")] + present
            if self.ignore_case:
                wanted = [w.lower() for w in wanted]
                got = [g.lower() for g in got]
            if not any(g in wanted for g in got):
                raise Reject(self.code, self.message, source="check-header", reason="HeaderValueNotAllowed")
        return None


@policy
class Cors(Policy):
    tag = "cors"
    sections = INBOUND

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"allow-credentials", "terminate-unmatched-request"})
        node.check_children({"allowed-origins", "allowed-methods", "allowed-headers", "expose-headers"})
        self.credentials = node.boolean("allow-credentials", False)
        self.terminate = node.boolean("terminate-unmatched-request", True)
        self.origins: list[str] = []
        self.methods: list[str] = []
        self.headers: list[str] = []
        self.expose: list[str] = []
        self.max_age: int | None = None
        have_origins = False
        for child in node.children:
            inner = {
                "allowed-origins": "origin",
                "allowed-methods": "method",
                "allowed-headers": "header",
                "expose-headers": "header",
            }[child.tag]
            child.check_attrs({"preflight-result-max-age"} if child.tag == "allowed-methods" else frozenset())
            child.check_children({inner})
            values = []
            for c in child.children:
                c.check_attrs(frozenset())
                text = c.text.strip()
                if inner == "header" and text != "*":
                    c.check_header_name(text, "the element text")
                values.append(text)
            if child.tag == "allowed-origins":
                have_origins = True
                self.origins = [o.rstrip("/").lower() for o in values]
                if self.credentials and "*" in self.origins:
                    raise PolicyDocumentError(
                        "the wildcard origin '*' cannot be combined with allow-credentials='true'.", child
                    )
            elif child.tag == "allowed-methods":
                self.methods = [m.upper() for m in values]
                self.max_age = child.integer("preflight-result-max-age", minimum=0)
            elif child.tag == "allowed-headers":
                self.headers = [h.lower() for h in values]
            else:
                self.expose = values
        if not have_origins or not self.origins:
            raise PolicyDocumentError("<allowed-origins> with at least one <origin> is required.", node)

    def _origin_ok(self, origin: str) -> bool:
        return "*" in self.origins or origin.rstrip("/").lower() in self.origins

    def _allow_origin(self, origin: str) -> str:
        return "*" if "*" in self.origins and not self.credentials else origin

    def run(self, ctx: Context) -> Any:
        origin = ctx.headers.get("origin")
        if origin is None:
            return None
        request_method = ctx.headers.get("access-control-request-method")
        if ctx.method == "OPTIONS" and request_method is not None:
            wanted_headers = [
                h.strip().lower()
                for h in (ctx.headers.get("access-control-request-headers") or "").split(",")
                if h.strip()
            ]
            methods_ok = not self.methods or "*" in self.methods or request_method.upper() in self.methods
            headers_ok = "*" in self.headers or all(h in self.headers for h in wanted_headers)
            h = HeaderMap()
            if self._origin_ok(origin) and methods_ok and headers_ok:
                h.set("Access-Control-Allow-Origin", [self._allow_origin(origin)])
                h.set(
                    "Access-Control-Allow-Methods",
                    [
                        request_method.upper()
                        if "*" in self.methods or not self.methods
                        else ",".join(self.methods)
                    ],
                )
                if wanted_headers:
                    h.set("Access-Control-Allow-Headers", [",".join(wanted_headers)])
                if self.credentials:
                    h.set("Access-Control-Allow-Credentials", ["true"])
                if self.max_age is not None:
                    h.set("Access-Control-Max-Age", [str(self.max_age)])
                if "*" not in self.origins or self.credentials:
                    h.set("Vary", ["Origin"])
            elif not self.terminate:
                return None
            ctx.response = Response(200, h)
            ctx.stopped_by = self.tag
            return STOP
        if not self._origin_ok(origin):
            if self.terminate:
                ctx.response = Response(200, HeaderMap())
                ctx.stopped_by = self.tag
                return STOP
            return None
        ctx.extra_headers.append(("Access-Control-Allow-Origin", self._allow_origin(origin)))
        if self.credentials:
            ctx.extra_headers.append(("Access-Control-Allow-Credentials", "true"))
        if self.expose:
            ctx.extra_headers.append(("Access-Control-Expose-Headers", ",".join(self.expose)))
        if "*" not in self.origins or self.credentials:
            ctx.extra_headers.append(("Vary", "Origin"))
        return None


_JWT_ALGS = [
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "HS256",
    "HS384",
    "HS512",
]


def _b64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


@policy
class ValidateJwt(Policy):
    tag = "validate-jwt"
    sections = INBOUND
    is_async = True

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(
            {
                "header-name",
                "query-parameter-name",
                "token-value",
                "failed-validation-httpcode",
                "failed-validation-error-message",
                "require-expiration-time",
                "require-scheme",
                "require-signed-tokens",
                "clock-skew",
                "output-token-variable-name",
            }
        )
        node.check_children(
            {
                "openid-config",
                "issuer-signing-keys",
                "decryption-keys",
                "audiences",
                "issuers",
                "required-claims",
            }
        )
        sources = [a for a in ("header-name", "query-parameter-name", "token-value") if node.get(a)]
        if len(sources) != 1:
            raise PolicyDocumentError(
                "exactly one of 'header-name', 'query-parameter-name' and 'token-value' is required.", node
            )
        self.header = node.header_name("header-name")
        self.query = node.get("query-parameter-name")
        self.token_value = node.value("token-value")
        code = node.integer("failed-validation-httpcode", default=401, minimum=100)
        self.code = code or 401
        self.message = node.get("failed-validation-error-message")
        self.require_exp = node.boolean("require-expiration-time", True)
        self.scheme = node.get("require-scheme")
        self.require_signed = node.boolean("require-signed-tokens", True)
        self.skew = node.integer("clock-skew", default=0, minimum=0) or 0
        self.output = node.get("output-token-variable-name")
        self.openid_urls: list[str] = []
        self.keys: list[Any] = []
        self.audiences: list[str] = []
        self.issuers: list[str] = []
        self.claims: list[tuple[str, str, str | None, list[str]]] = []
        for child in node.children:
            if child.tag == "openid-config":
                child.check_attrs({"url"})
                url = child.require("url")
                if not url.lower().startswith(("https://", "http://")) and not NAMED_VALUE.search(url):
                    raise PolicyDocumentError("attribute 'url' must be an absolute URL.", child)
                self.openid_urls.append(url)
            elif child.tag == "issuer-signing-keys":
                child.check_attrs(frozenset())
                child.check_children({"key"})
                for k in child.children:
                    self.keys.append(_inline_key(k))
            elif child.tag == "decryption-keys":
                raise PolicyDocumentError(
                    "encrypted tokens (decryption-keys) are not supported by this gateway.", child
                )
            elif child.tag in ("audiences", "issuers"):
                child.check_attrs(frozenset())
                inner = child.tag[:-1]
                child.check_children({inner})
                values = [c.text.strip() for c in child.children]
                (self.audiences if child.tag == "audiences" else self.issuers).extend(values)
            else:
                child.check_attrs(frozenset())
                child.check_children({"claim"})
                for c in child.children:
                    c.check_attrs({"name", "match", "separator"})
                    c.check_children({"value"})
                    match = c.choice("match", ("all", "any"), "all") or "all"
                    self.claims.append(
                        (c.require("name"), match, c.get("separator"), [v.text.strip() for v in c.children])
                    )
        if not self.keys and not self.openid_urls and self.require_signed:
            raise PolicyDocumentError(
                "signing keys are required: add <openid-config url=...> or <issuer-signing-keys>.", node
            )
        self.jwks: JwksCache | None = cc.jwks
        if self.jwks is not None:
            for url in self.openid_urls:
                self.jwks.prefetch(url)

    def _fail(self, reason: str, default: str) -> Reject:
        return Reject(self.code, self.message or default, source="validate-jwt", reason=reason)

    def _token(self, ctx: Context) -> str | None:
        if self.token_value is not None:
            raw = self.token_value.text(ctx)
        elif self.query is not None:
            raw = ctx.query_map().get(self.query) or ""
        else:
            assert self.header is not None
            raw = ctx.headers.get(self.header) or ""
        raw = raw.strip()
        if not raw:
            return None
        scheme, _, rest = raw.partition(" ")
        if self.scheme:
            if scheme.lower() != self.scheme.lower() or not rest.strip():
                raise self._fail("TokenSchemeNotAllowed", f"JWT scheme '{self.scheme}' is required.")
            return rest.strip()
        if rest and scheme.lower() == "bearer":
            return rest.strip()
        return raw

    async def run(self, ctx: Context) -> Any:
        token = self._token(ctx)
        if token is None:
            raise self._fail("TokenNotPresent", "JWT not present.")
        if len(token) > 16384 or token.count(".") != 2:
            raise self._fail("TokenInvalid", "JWT is malformed.")
        try:
            header = json.loads(_b64(token.split(".", 1)[0]))
        except (ValueError, binascii.Error):
            raise self._fail("TokenInvalid", "JWT is malformed.") from None
        if not isinstance(header, dict):
            raise self._fail("TokenInvalid", "JWT is malformed.")
        alg = header.get("alg")
        if alg == "none" or alg is None:
            if self.require_signed:
                raise self._fail("TokenSignatureInvalid", "JWT is not signed.")
            try:
                claims = json.loads(_b64(token.split(".")[1]))
            except (ValueError, binascii.Error):
                raise self._fail("TokenInvalid", "JWT is malformed.") from None
            issuers_from_config: list[str] = []
        else:
            keys = list(self.keys)
            issuers_from_config = []
            for url in self.openid_urls:
                if self.jwks is None:
                    raise self._fail("TokenSignatureInvalid", "JWT signing keys are unavailable.")
                try:
                    doc_keys, issuer = await self.jwks.get(url)
                except Exception:
                    raise self._fail("TokenSignatureInvalid", "JWT signing keys are unavailable.") from None
                keys.extend(doc_keys)
                if issuer:
                    issuers_from_config.append(issuer)
            if not keys:
                raise self._fail("TokenSignatureInvalid", "JWT signature is invalid.")
            try:
                sig = jws.deserialize_compact(token, KeySet(keys), algorithms=_JWT_ALGS)
                claims = json.loads(sig.payload)
            except (JoseError, ValueError, TypeError, KeyError):
                raise self._fail("TokenSignatureInvalid", "JWT signature is invalid.") from None
        if not isinstance(claims, dict):
            raise self._fail("TokenInvalid", "JWT is malformed.")
        now = time.time()
        exp = claims.get("exp")
        if exp is None:
            if self.require_exp:
                raise self._fail("TokenExpirationTimeMissing", "JWT has no expiration time.")
        elif not isinstance(exp, int | float) or now > exp + self.skew:
            raise self._fail("TokenExpired", "JWT has expired.")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and now + self.skew < nbf:
            raise self._fail("TokenNotYetValid", "JWT is not yet valid.")
        if self.audiences:
            aud = claims.get("aud")
            auds = aud if isinstance(aud, list) else [aud]
            if not any(a in self.audiences for a in auds if isinstance(a, str)):
                raise self._fail("TokenAudienceNotAllowed", "JWT audience is not allowed.")
        allowed_issuers = self.issuers + issuers_from_config
        if allowed_issuers and claims.get("iss") not in allowed_issuers:
            raise self._fail("TokenIssuerNotAllowed", "JWT issuer is not allowed.")
        for name, match, sep, values in self.claims:
            if name not in claims:
                raise self._fail("TokenClaimNotFound", f"JWT claim '{name}' is missing.")
            got = claims[name]
            present = [to_text(x) for x in got] if isinstance(got, list) else [to_text(got)]
            if sep:
                present = [p for item in present for p in item.split(sep)]
            if values:
                hits = [v in present for v in values]
                if (match == "all" and not all(hits)) or (match == "any" and not any(hits)):
                    raise self._fail(
                        "TokenClaimValueNotAllowed", f"JWT claim '{name}' has a value that is not allowed."
                    )
        if self.output:
            ctx.variables[self.output] = Variables(
                {
                    k: v if isinstance(v, str | int | float | bool) else json.dumps(v)
                    for k, v in claims.items()
                }
            )
        return None


def _inline_key(node: Node) -> Any:
    node.check_attrs({"id", "n", "e", "certificate-id"})
    if node.get("certificate-id"):
        raise PolicyDocumentError(
            "certificate-id keys are not supported; give n/e (RSA) or a base64 symmetric key.", node
        )
    kid = node.get("id")
    if node.get("n") or node.get("e"):
        try:
            return RSAKey.import_key(
                {
                    "kty": "RSA",
                    "n": node.require("n"),
                    "e": node.require("e"),
                    **({"kid": kid} if kid else {}),
                }
            )
        except (JoseError, ValueError, TypeError):
            raise PolicyDocumentError(
                "attributes 'n' and 'e' are not a valid RSA public key.", node
            ) from None
    text = node.text.strip()
    if not text:
        raise PolicyDocumentError("a <key> needs a base64 symmetric key as text, or 'n' and 'e'.", node)
    if NAMED_VALUE.search(text):
        return OctKey.import_key(b"\x00" * 32)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PolicyDocumentError("the <key> text must be base64.", node) from None
    if len(raw) < 16:
        raise PolicyDocumentError("symmetric keys must be at least 128 bits.", node)
    return OctKey.import_key(raw, {"kid": kid} if kid else None)


__all__ = ["ECKey"]


@policy
class AuthenticationBasic(Policy):
    """Basic credentials for the backend: sets the request's Authorization header (replacing the
    caller's). The password is usually a secret named value; it is never logged or echoed."""

    tag = "authentication-basic"
    sections = INBOUND

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"username", "password"})
        node.check_children(frozenset())
        node.require("username")
        node.require("password")
        username, password = node.value("username"), node.value("password")
        assert username is not None and password is not None
        if username.constant and ":" in username.literal:
            raise PolicyDocumentError("attribute 'username' must not contain ':'.", node)
        self.username = username
        self.password = password

    def run(self, ctx: Context) -> Any:
        user = self.username.text(ctx)
        if ":" in user:
            raise Reject(
                500,
                "username of authentication-basic contains ':'.",
                source="authentication-basic",
                reason="ExpressionValueEvaluationFailure",
            )
        token = base64.b64encode(f"{user}:{self.password.text(ctx)}".encode()).decode("ascii")
        ctx.headers.set("Authorization", [f"Basic {token}"])
        return None
