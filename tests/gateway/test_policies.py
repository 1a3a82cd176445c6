"""Every policy kind the gateway implements, stored through the SDK and exercised through sockets."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from tests.gateway.conftest import OIDC, RG, GatewayEnv, eventually, unique

pytestmark = pytest.mark.slow


def doc(
    inbound: str = "<base />",
    backend: str = "<base />",
    outbound: str = "<base />",
    on_error: str = "<base />",
) -> str:
    return f"<policies><inbound>{inbound}</inbound><backend>{backend}</backend><outbound>{outbound}</outbound><on-error>{on_error}</on-error></policies>"


@pytest.fixture(scope="module")
def key(gw: GatewayEnv) -> str:
    return gw.subscription("policy-all", "/apis")


@pytest.fixture
def api(gw: GatewayEnv, backend: str) -> str:
    name = unique("p")
    gw.api(
        name,
        name,
        backend + "/svc",
        ops=[("get", "GET", "/items/{id}"), ("post", "POST", "/items"), ("rest", "GET", "/*")],
    )
    return name


def ok(r: Any) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def until(gw: GatewayEnv, path: str, key: str, check: Any, **kw: Any) -> Any:
    """Call until the change is live (≤ 1 s after the management write), then return the response."""
    method = kw.pop("method", "GET")

    def probe() -> Any:
        r = gw.call(method, path, key=key, **kw)
        try:
            good = check(r)
        except (KeyError, ValueError):
            good = False
        assert good, f"{r.status_code} {r.headers} {r.text[:300]}"
        return r

    return eventually(probe, timeout=1.5)


def test_set_header_query_method_and_outbound_status(gw: GatewayEnv, api: str, key: str) -> None:
    gw.policy(
        doc(
            inbound='<base /><set-header name="X-Sub" exists-action="override"><value>@(context.Subscription.Id + "/" + context.Request.Method)</value></set-header>'
            '<set-header name="X-Remove" exists-action="delete" /><set-header name="X-Multi" exists-action="append"><value>b</value></set-header>'
            '<set-query-parameter name="added" exists-action="override"><value>@(context.Api.Id)</value></set-query-parameter>'
            '<set-query-parameter name="gone" exists-action="delete" /><set-method>PUT</set-method>',
            outbound='<base /><set-header name="X-Out" exists-action="override"><value>@(context.Response.StatusCode.ToString())</value></set-header>'
            '<set-status code="201" reason="Made" />',
        ),
        api=api,
    )
    r = until(
        gw,
        f"/{api}/items/1?gone=1&keep=2",
        key,
        lambda r: r.status_code == 201,
        headers={"X-Remove": "x", "X-Multi": "a"},
    )
    body = r.json()
    assert body["headers"]["x-sub"] == "policy-all/GET"
    assert "x-remove" not in body["headers"] and body["headers"]["x-multi"] == "a, b"
    assert body["query"] == {"keep": "2", "added": api}
    assert body["method"] == "PUT"
    assert r.headers["x-out"] == "200"


def test_rewrite_uri_and_set_backend_service(gw: GatewayEnv, api: str, key: str, backend: str) -> None:
    gw.policy(
        doc(inbound='<base /><rewrite-uri template="/v2/things/{id}?fixed=1" />'), api=api, operation="get"
    )
    body = ok(until(gw, f"/{api}/items/7?extra=x", key, lambda r: r.json().get("path") == "/svc/v2/things/7"))
    assert body["query"] == {"fixed": "1", "extra": "x"}
    gw.policy(
        doc(inbound='<base /><rewrite-uri template="/only" copy-unmatched-params="false" />'),
        api=api,
        operation="get",
    )
    body = ok(until(gw, f"/{api}/items/7?extra=x", key, lambda r: r.json().get("path") == "/svc/only"))
    assert body["query"] == {}
    # base-url, then a backend entity with credentials
    gw.policy(doc(inbound=f'<base /><set-backend-service base-url="{backend}/elsewhere" />'), api=api)
    ok(until(gw, f"/{api}/x", key, lambda r: r.json().get("path") == "/elsewhere/x"))
    gw.client.backend.create_or_update(
        RG,
        gw.service,
        "be1",
        {
            "properties": {
                "url": backend + "/be1",
                "protocol": "http",
                "credentials": {"header": {"x-backend-key": ["s3cret"]}},
            }
        },
    )
    gw.policy(doc(inbound='<base /><set-backend-service backend-id="be1" />'), api=api)
    body = ok(until(gw, f"/{api}/x", key, lambda r: r.json().get("path") == "/be1/x"))
    assert body["headers"]["x-backend-key"] == "s3cret"


def test_return_response_mock_response_and_choose(gw: GatewayEnv, api: str, key: str) -> None:
    gw.policy(
        doc(
            inbound='<base /><choose><when condition="@(context.Request.Headers.GetValueOrDefault(&quot;x-mode&quot;, &quot;&quot;) == &quot;teapot&quot;)">'
            '<return-response><set-status code="418" reason="Teapot" /><set-header name="X-R" exists-action="override"><value>r</value></set-header>'
            '<set-body>@("short and stout: " + context.Variables.GetValueOrDefault&lt;string&gt;("who", "nobody"))</set-body></return-response></when>'
            '<otherwise><set-variable name="who" value="tea" /></otherwise></choose>'
        ),
        api=api,
    )
    r = until(gw, f"/{api}/x", key, lambda r: r.status_code == 418, headers={"x-mode": "teapot"})
    assert r.text == "short and stout: nobody" and r.headers["x-r"] == "r"
    assert gw.get(f"/{api}/x", key=key).status_code == 200
    # mock-response answers from the operation's response examples, without the backend
    gw.client.api_operation.create_or_update(
        RG,
        gw.service,
        api,
        "mocked",
        {
            "properties": {
                "displayName": "mocked",
                "method": "GET",
                "urlTemplate": "/mocked",
                "responses": [
                    {
                        "statusCode": 200,
                        "representations": [
                            {
                                "contentType": "application/json",
                                "examples": {"default": {"value": {"mock": True}}},
                            }
                        ],
                    }
                ],
            }
        },
    )
    gw.policy(
        doc(inbound='<base /><mock-response status-code="200" content-type="application/json" />'),
        api=api,
        operation="mocked",
    )
    r = until(gw, f"/{api}/mocked", key, lambda r: r.status_code == 200 and r.json() == {"mock": True})
    assert r.headers["content-type"] == "application/json"


def test_rate_limit_quota_and_by_key(gw: GatewayEnv, api: str, key: str, backend: str) -> None:
    other = gw.subscription(unique("rl"), f"/apis/{api}")
    gw.policy(
        doc(
            inbound='<base /><rate-limit calls="2" renewal-period="60" remaining-calls-header-name="x-remaining" />'
        ),
        api=api,
        operation="get",
    )
    first = until(gw, f"/{api}/items/1", key, lambda r: "x-remaining" in r.headers)
    assert first.headers["x-remaining"] == "1"
    assert gw.get(f"/{api}/items/1", key=key).status_code == 200
    r = gw.get(f"/{api}/items/1", key=key)
    assert r.status_code == 429 and r.json()["message"].startswith("Rate limit is exceeded. Try again in ")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert gw.get(f"/{api}/items/1", key=other).status_code == 200  # per subscription
    gw.policy(doc(inbound='<base /><quota calls="1" renewal-period="3600" />'), api=api, operation="post")
    r = until(
        gw, f"/{api}/items", key, lambda r: r.status_code == 403, method="POST"
    )  # the 2nd call once it is live
    assert r.json()["message"].startswith("Out of call volume quota. Quota will be replenished in ")
    gw.policy(
        doc(
            inbound='<base /><rate-limit-by-key calls="1" renewal-period="60" counter-key="@(context.Request.Headers.GetValueOrDefault(&quot;x-client&quot;, &quot;none&quot;))" />'
        ),
        api=api,
    )
    until(gw, f"/{api}/any", key, lambda r: r.status_code == 429, headers={"x-client": "a"})
    assert gw.get(f"/{api}/any", key=key, headers={"x-client": "b"}).status_code == 200


def test_quota_by_key(gw: GatewayEnv, api: str, key: str) -> None:
    client = "context.Request.Headers.GetValueOrDefault(&quot;x-client&quot;, &quot;none&quot;)"
    live = '<set-header name="X-Live" exists-action="override"><value>{}</value></set-header>'
    # the same counter key twice on one request counts once (one counter per key value)
    quota = f'<quota-by-key calls="2" renewal-period="3600" counter-key="@({client})" />'
    gw.policy(doc(inbound="<base />" + quota + quota + live.format("1")), api=api)
    until(
        gw, f"/{api}/any", key, lambda r: r.json()["headers"].get("x-live") == "1", headers={"x-client": "a"}
    )
    assert gw.get(f"/{api}/any", key=key, headers={"x-client": "a"}).status_code == 200
    r = gw.get(f"/{api}/any", key=key, headers={"x-client": "a"})
    assert r.status_code == 403
    assert r.json()["message"].startswith("Out of call volume quota. Quota will be replenished in ")
    assert 1 <= int(r.headers["retry-after"]) <= 3600
    assert gw.get(f"/{api}/any", key=key, headers={"x-client": "b"}).status_code == 200  # per key
    # increment-condition false: nothing counts; an expression is judged once the response is known
    gw.policy(
        doc(
            inbound=f'<base /><quota-by-key calls="1" renewal-period="3600" counter-key="@(&quot;n&quot; + {client})" increment-condition="false" />'
            f'<quota-by-key calls="1" renewal-period="3600" counter-key="@(&quot;c&quot; + {client})"'
            ' increment-condition="@(context.Response.StatusCode == 200)" />' + live.format("2")
        ),
        api=api,
    )
    until(
        gw, f"/{api}/any", key, lambda r: r.json()["headers"].get("x-live") == "2", headers={"x-client": "y"}
    )
    for _ in range(3):  # the first quota never counts; the second counts only 200s
        assert gw.get(f"/{api}/status/404", key=key, headers={"x-client": "z"}).status_code == 404
    assert gw.get(f"/{api}/any", key=key, headers={"x-client": "z"}).status_code == 200
    assert gw.get(f"/{api}/any", key=key, headers={"x-client": "z"}).status_code == 403


def test_cache_values_and_authentication_basic(gw: GatewayEnv, api: str, key: str) -> None:
    secret = unique("basicpw")
    gw.client.named_value.begin_create_or_update(
        RG, gw.service, secret, {"properties": {"displayName": secret, "value": "pa:ss word", "secret": True}}
    ).result()
    who = "@(&quot;greeting-&quot; + context.Request.Headers.GetValueOrDefault(&quot;x-who&quot;, &quot;anon&quot;))"
    gw.policy(
        doc(
            inbound="<base />"
            '<choose><when condition="@(context.Request.Headers.ContainsKey(&quot;x-set&quot;))">'
            f'<cache-store-value key="{who}" value="@(context.Request.Headers.GetValueOrDefault(&quot;x-set&quot;, &quot;&quot;))" duration="60" />'
            '</when><when condition="@(context.Request.Headers.ContainsKey(&quot;x-del&quot;))">'
            f'<cache-remove-value key="{who}" caching-type="internal" /></when></choose>'
            f'<cache-lookup-value key="{who}" variable-name="greeting" default-value="none" />'
            '<set-header name="X-Greeting" exists-action="override"><value>@((string)context.Variables[&quot;greeting&quot;])</value></set-header>'
            f'<authentication-basic username="svc-user" password="{{{{{secret}}}}}" />'
        ),
        api=api,
    )
    body = ok(until(gw, f"/{api}/any", key, lambda r: r.json()["headers"].get("x-greeting") == "none"))
    expected = "Basic " + base64.b64encode(b"svc-user:pa:ss word").decode()
    assert body["headers"]["authorization"] == expected
    # the caller's own Authorization header is replaced, not passed on
    body = ok(gw.get(f"/{api}/any", key=key, headers={"Authorization": "Bearer caller"}))
    assert body["headers"]["authorization"] == expected
    # a value stored by one request is found by the next ones, per key, until removed
    assert (
        ok(gw.get(f"/{api}/any", key=key, headers={"x-who": "ann", "x-set": "hi ann"}))["headers"][
            "x-greeting"
        ]
        == "hi ann"
    )
    assert ok(gw.get(f"/{api}/any", key=key, headers={"x-who": "ann"}))["headers"]["x-greeting"] == "hi ann"
    assert ok(gw.get(f"/{api}/any", key=key, headers={"x-who": "bob"}))["headers"]["x-greeting"] == "none"
    ok(gw.get(f"/{api}/any", key=key, headers={"x-who": "ann", "x-del": "1"}))
    assert ok(gw.get(f"/{api}/any", key=key, headers={"x-who": "ann"}))["headers"]["x-greeting"] == "none"
    # the password is a secret: the stored policy shows the reference, never the value
    stored = gw.client.api_policy.get(RG, gw.service, api, "policy", format="rawxml").value
    assert f"{{{{{secret}}}}}" in stored and "pa:ss word" not in stored


def test_response_cache(gw: GatewayEnv, api: str, key: str) -> None:
    nonce = '<set-header name="{}" exists-action="override"><value>@(context.Request.Headers.GetValueOrDefault(&quot;x-nonce&quot;, &quot;&quot;))</value></set-header>'
    gw.policy(
        doc(
            inbound='<base /><cache-lookup vary-by-developer="false" vary-by-developer-groups="false" downstream-caching-type="public">'
            "<vary-by-header>Accept</vary-by-header><vary-by-query-parameter>v;w</vary-by-query-parameter></cache-lookup>",
            outbound="<base />"
            + nonce.format("X-Before")
            + '<cache-store duration="60" />'
            + nonce.format("X-After"),
        ),
        api=api,
    )

    def get(path: str, n: str, **headers: str) -> Any:
        r = gw.get(f"/{api}{path}", key=key, headers={"x-nonce": n, **headers})
        assert r.status_code == 200, r.text
        return r

    def seen(r: Any) -> str:  # the nonce of the request the backend answered
        return str(r.json()["headers"]["x-nonce"])

    until(gw, f"/{api}/items/0", key, lambda r: "cache-control" in r.headers)
    miss = get("/items/1?v=1", "a")
    assert seen(miss) == "a" and miss.headers["cache-control"] == "public, max-age=60, must-revalidate"
    hit = get("/items/1?v=1&other=z", "b")  # 'other' is not part of the key
    assert hit.content == miss.content and seen(hit) == "a"
    # outbound policies before cache-store are in the cached response; those after it run again
    assert (hit.headers["x-before"], hit.headers["x-after"]) == ("a", "b")
    assert (
        hit.headers["cache-control"].startswith("public, max-age=")
        and "must-revalidate" in hit.headers["cache-control"]
    )
    assert seen(get("/items/1?v=2", "c")) == "c"  # another value of a vary-by parameter
    assert seen(get("/items/1?v=1&w=x", "d")) == "d"  # the second of 'v;w'
    assert seen(get("/items/1?v=1", "e", Accept="text/plain")) == "e"  # a vary-by header
    assert seen(get("/items/2?v=1", "f")) == "f"  # another path
    assert seen(get("/items/1?v=1", "g", Authorization="Bearer t")) == "g"  # private: not cached
    assert seen(get("/items/1?v=1", "h")) == "a"  # still cached
    # only GET is cached
    for n in ("i", "j"):
        r = gw.call("POST", f"/{api}/items", key=key, headers={"x-nonce": n}, content=b"x")
        assert r.status_code == 200 and seen(r) == n


def test_ip_filter_check_header_and_on_error(gw: GatewayEnv, api: str, key: str) -> None:
    gw.policy(
        doc(
            inbound='<base /><ip-filter action="allow"><address>10.1.2.3</address><address-range from="192.168.0.0" to="192.168.0.255" /></ip-filter>',
            on_error='<base /><set-header name="X-Why" exists-action="override"><value>@(context.LastError.Reason)</value></set-header>',
        ),
        api=api,
    )
    r = until(gw, f"/{api}/x", key, lambda r: r.status_code == 403)
    assert (
        r.json() == {"statusCode": 403, "message": "Forbidden"} and r.headers["x-why"] == "CallerIpNotAllowed"
    )
    gw.policy(
        doc(
            inbound='<base /><ip-filter action="forbid"><address-range from="127.0.0.0" to="127.255.255.255" /></ip-filter>'
        ),
        api=api,
    )
    until(gw, f"/{api}/x", key, lambda r: r.status_code == 403 and "x-why" not in r.headers)
    gw.policy(
        doc(
            inbound='<base /><check-header name="X-Tenant" failed-check-httpcode="401" failed-check-error-message="Tenant required" ignore-case="true">'
            "<value>Contoso</value><value>Fabrikam</value></check-header>"
        ),
        api=api,
    )
    r = until(gw, f"/{api}/x", key, lambda r: r.status_code == 401)
    assert r.json() == {"statusCode": 401, "message": "Tenant required"}
    assert gw.get(f"/{api}/x", key=key, headers={"X-Tenant": "other"}).status_code == 401
    assert gw.get(f"/{api}/x", key=key, headers={"X-Tenant": "contoso"}).status_code == 200
    # an expression failing at run time goes through on-error with a 500
    gw.policy(
        doc(
            inbound='<base /><set-header name="X-Boom" exists-action="override"><value>@(context.Variables["missing"].ToString())</value></set-header>',
            on_error='<base /><set-status code="500" reason="Policy failed" /><set-header name="X-Err" exists-action="override"><value>@(context.LastError.Reason)</value></set-header>',
        ),
        api=api,
    )
    r = until(gw, f"/{api}/x", key, lambda r: r.status_code == 500)
    assert r.headers["x-err"] == "ExpressionValueEvaluationFailure" and r.json()["statusCode"] == 500


def test_cors(gw: GatewayEnv, api: str, key: str) -> None:
    gw.policy(
        doc(
            inbound='<cors allow-credentials="true"><allowed-origins><origin>https://app.example</origin></allowed-origins>'
            '<allowed-methods preflight-result-max-age="300"><method>GET</method><method>POST</method></allowed-methods>'
            "<allowed-headers><header>content-type</header><header>ocp-apim-subscription-key</header></allowed-headers>"
            "<expose-headers><header>x-backend</header></expose-headers></cors><base />"
        ),
        api=api,
    )
    pre = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    r = eventually(lambda: _preflight(gw, api, pre))
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert (
        r.headers["access-control-allow-credentials"] == "true"
        and r.headers["access-control-max-age"] == "300"
    )
    r = gw.get(f"/{api}/items/1", key=key, headers={"Origin": "https://app.example"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
    assert r.headers["access-control-expose-headers"] == "x-backend"
    r = gw.call("OPTIONS", f"/{api}/items", headers={**pre, "Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def _preflight(gw: GatewayEnv, api: str, headers: dict[str, str]) -> Any:
    r = gw.call("OPTIONS", f"/{api}/items", headers=headers)
    assert r.status_code == 200 and "access-control-allow-origin" in r.headers, r.text
    return r


def test_validate_jwt_inline_and_openid(gw: GatewayEnv, api: str, key: str, backend: str) -> None:
    secret = b"0123456789abcdef0123456789abcdef"
    hs = OctKey.import_key(secret)
    gw.policy(
        doc(
            inbound='<base /><validate-jwt header-name="Authorization" failed-validation-httpcode="401" require-scheme="Bearer">'
            f"<issuer-signing-keys><key>{base64.b64encode(secret).decode()}</key></issuer-signing-keys>"
            "<audiences><audience>api://portico</audience></audiences><issuers><issuer>https://issuer.example</issuer></issuers>"
            '<required-claims><claim name="roles" match="any"><value>reader</value></claim></required-claims></validate-jwt>'
        ),
        api=api,
    )
    now = int(time.time())
    good = jwt.encode(
        {"alg": "HS256"},
        {"aud": "api://portico", "iss": "https://issuer.example", "exp": now + 60, "roles": ["reader"]},
        hs,
    )
    r = until(gw, f"/{api}/x", key, lambda r: r.status_code == 401)
    assert r.json() == {"statusCode": 401, "message": "JWT not present."}
    assert gw.get(f"/{api}/x", key=key, headers={"Authorization": f"Bearer {good}"}).status_code == 200
    expired = jwt.encode(
        {"alg": "HS256"},
        {"aud": "api://portico", "iss": "https://issuer.example", "exp": now - 60, "roles": ["reader"]},
        hs,
    )
    assert (
        gw.get(f"/{api}/x", key=key, headers={"Authorization": f"Bearer {expired}"}).json()["message"]
        == "JWT has expired."
    )
    wrong_aud = jwt.encode(
        {"alg": "HS256"},
        {"aud": "other", "iss": "https://issuer.example", "exp": now + 60, "roles": ["reader"]},
        hs,
    )
    assert gw.get(f"/{api}/x", key=key, headers={"Authorization": f"Bearer {wrong_aud}"}).status_code == 401
    forged = jwt.encode(
        {"alg": "HS256"},
        {"aud": "api://portico", "iss": "https://issuer.example", "exp": now + 60, "roles": ["reader"]},
        OctKey.import_key(b"x" * 32),
    )
    assert (
        gw.get(f"/{api}/x", key=key, headers={"Authorization": f"Bearer {forged}"}).json()["message"]
        == "JWT signature is invalid."
    )
    # keys found through an OpenID configuration URL
    rsa = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    OIDC["/oidc/.well-known/openid-configuration"] = {
        "issuer": "https://oidc.example",
        "jwks_uri": f"{backend}/oidc/keys",
    }
    OIDC["/oidc/keys"] = {"keys": [rsa.as_dict(private=False)]}
    gw.policy(
        doc(
            inbound=f'<base /><validate-jwt header-name="Authorization" output-token-variable-name="jwt"><openid-config url="{backend}/oidc/.well-known/openid-configuration" />'
            '</validate-jwt><set-header name="X-Sub" exists-action="override"><value>@(((string)context.Variables.GetValueOrDefault&lt;string&gt;("who", "")) + "ok")</value></set-header>'
        ),
        api=api,
    )
    token = jwt.encode(
        {"alg": "RS256", "kid": "k1"}, {"iss": "https://oidc.example", "exp": now + 60, "sub": "u1"}, rsa
    )
    until(
        gw,
        f"/{api}/x",
        key,
        lambda r: r.status_code == 200 and r.json()["headers"].get("x-sub") == "ok",
        headers={"Authorization": f"Bearer {token}"},
    )
    bad_iss = jwt.encode({"alg": "RS256", "kid": "k1"}, {"iss": "https://evil.example", "exp": now + 60}, rsa)
    assert (
        gw.get(f"/{api}/x", key=key, headers={"Authorization": f"Bearer {bad_iss}"}).json()["message"]
        == "JWT issuer is not allowed."
    )


def test_named_values_and_composition(gw: GatewayEnv, api: str, key: str, backend: str) -> None:
    nv = unique("greeting")
    gw.client.named_value.begin_create_or_update(
        RG, gw.service, nv, {"properties": {"displayName": nv, "value": "hello", "secret": True}}
    ).result()
    product = unique("prod")
    gw.client.product.create_or_update(
        RG, gw.service, product, {"properties": {"displayName": product, "state": "published"}}
    )
    gw.client.product_api.create_or_update(RG, gw.service, product, api)
    pkey = gw.subscription(unique("ps"), f"/products/{product}")
    append = '<set-header name="X-Order" exists-action="append"><value>{}</value></set-header>'
    gw.policy(doc(inbound="<base />" + append.format("global")))
    try:
        gw.policy(doc(inbound="<base />" + append.format("product")), product=product)
        gw.policy(
            doc(
                inbound="<base />"
                + append.format("api")
                + f'<set-header name="X-Nv" exists-action="override"><value>{{{{{nv}}}}}</value></set-header>'
            ),
            api=api,
        )
        gw.policy(
            doc(inbound=append.format("op-first") + "<base />" + append.format("op-last")),
            api=api,
            operation="get",
        )
        body = ok(
            until(
                gw,
                f"/{api}/items/1",
                pkey,
                lambda r: r.json()["headers"].get("x-order") == "op-first, global, product, api, op-last",
            )
        )
        assert body["headers"]["x-nv"] == "hello"
        # product policies apply only through the product's subscription (all-APIs keys skip them)
        assert (
            ok(gw.get(f"/{api}/items/1", key=key))["headers"]["x-order"] == "op-first, global, api, op-last"
        )
        # an operation section without <base /> drops the enclosing scopes
        gw.policy(doc(inbound=append.format("alone")), api=api, operation="get")
        until(gw, f"/{api}/items/1", pkey, lambda r: r.json()["headers"].get("x-order") == "alone")
        # changing the named value re-applies the policies that use it, within a second
        gw.client.named_value.begin_create_or_update(
            RG, gw.service, nv, {"properties": {"displayName": nv, "value": "bonjour", "secret": True}}
        ).result()
        until(gw, f"/{api}/other", key, lambda r: r.json()["headers"].get("x-nv") == "bonjour")
    finally:
        gw.delete_policy()


@pytest.mark.parametrize(
    ("xml", "fragment"),
    [
        (doc(inbound="<base /><no-such-policy />"), "Error in element 'no-such-policy' on line 1"),
        (
            doc(inbound='<base /><set-header name="X" exists-action="sometimes" />'),
            "attribute 'exists-action' has invalid value 'sometimes'",
        ),
        (
            doc(inbound='<base /><rate-limit calls="ten" renewal-period="60" />'),
            "attribute 'calls' must be an integer",
        ),
        (
            doc(inbound='<base /><set-header name="X"><value>@(context.Requst.Method)</value></set-header>'),
            "'context' does not contain a definition for 'Requst'",
        ),
        (
            doc(
                inbound='<base /><set-header name="X"><value>@(System.IO.File.ReadAllText("/etc/passwd"))</value></set-header>'
            ),
            "unknown name 'System'",
        ),
        (
            doc(outbound='<base /><rate-limit calls="1" renewal-period="1" />'),
            "not allowed in section 'outbound'",
        ),
        (doc(inbound='<base /><set-header name="X" colour="red" />'), "attribute 'colour' is not allowed"),
        (
            doc(inbound='<base /><quota-by-key renewal-period="60" counter-key="k" />'),
            "at least one of 'calls' and 'bandwidth' is required",
        ),
        (
            doc(
                inbound='<base /><quota-by-key calls="1" renewal-period="60" counter-key="k" first-period-start="soon" />'
            ),
            "attribute 'first-period-start' must be an ISO 8601 date-time",
        ),
        (
            doc(inbound='<base /><cache-store-value key="k" value="v" duration="0" />'),
            "attribute 'duration' must be at least 1",
        ),
        (
            doc(inbound='<base /><cache-lookup-value key="k" variable-name="v" caching-type="remote" />'),
            "attribute 'caching-type' has invalid value 'remote'",
        ),
        (doc(inbound='<base /><authentication-basic username="u" />'), "attribute 'password' is required"),
        (
            doc(inbound='<base /><cache-lookup vary-by-developer="false" />'),
            "attribute 'vary-by-developer-groups' is required",
        ),
        (
            doc(
                outbound='<base /><cache-lookup vary-by-developer="false" vary-by-developer-groups="false" />'
            ),
            "not allowed in section 'outbound'",
        ),
        (
            doc(outbound='<base /><cache-store duration="10" /><cache-store duration="20" />'),
            "<cache-store> may appear only once per section",
        ),
        (doc(outbound="<base /><cache-store />"), "attribute 'duration' is required"),
        (
            doc(outbound='<base /><authentication-basic username="u" password="p" />'),
            "not allowed in section 'outbound'",
        ),
    ],
)
def test_control_plane_rejects_invalid_policies(gw: GatewayEnv, xml: str, fragment: str) -> None:
    with pytest.raises(HttpResponseError) as err:
        gw.policy(xml)
    assert err.value.status_code == 400
    assert err.value.error is not None and err.value.error.code == "ValidationError"
    assert fragment in err.value.error.message


def test_rawxml_policy_round_trips_and_runs(gw: GatewayEnv, api: str, key: str) -> None:
    """A policy in the rawxml format (C# expressions not XML-encoded, as APIOps publishes them) is
    accepted, runs in the gateway, and reads back unchanged with `?format=rawxml`."""
    raw = doc(
        inbound='<base /><set-variable name="n" value="@(context.Request.Headers.GetValueOrDefault("X-N", "0"))" />'
        '<choose><when condition="@(context.Variables.GetValueOrDefault<string>("n") == "7")">'
        '<return-response><set-status code="299" reason="Raw" /></return-response></when></choose>'
    )
    client = gw.client
    client.api_policy.create_or_update(
        RG, gw.service, api, "policy", {"properties": {"value": raw, "format": "rawxml"}}
    )
    until(gw, f"/{api}/items/1", key, lambda r: r.status_code == 299, headers={"X-N": "7"})
    assert gw.call("GET", f"/{api}/items/1", key=key, headers={"X-N": "6"}).status_code == 200
    back = client.api_policy.get(RG, gw.service, api, "policy", format="rawxml")
    assert back.format == "rawxml" and back.value == raw
    stored = client.api_policy.get(RG, gw.service, api, "policy").value
    assert "&quot;X-N&quot;" in stored and "GetValueOrDefault&lt;string&gt;" in stored
