"""Message bodies in policy expressions end to end: policies stored through the Azure SDK (in the
portal's rawxml format, expressions written as plain C#), served by the Portico gateway in front of
the echo backend (tests/gateway/conftest.py), with bodies sent whole (the fast path) and chunked
(the ASGI path)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from azure.core.exceptions import HttpResponseError

from tests.gateway.conftest import RG, GatewayEnv, eventually, unique

pytestmark = pytest.mark.slow

ORDERS = """<policies><inbound><base />
<set-variable name="id" value="@((string)context.Request.Body.As<JObject>(preserveContent: true)["id"])" />
<set-header name="X-Order-Id" exists-action="override"><value>@((string)context.Variables["id"])</value></set-header>
<choose>
  <when condition="@(context.Request.Body.As<JObject>(true)["type"].ToString() == "x")">
    <set-header name="X-Kind" exists-action="override"><value>x</value></set-header>
  </when>
  <otherwise><set-header name="X-Kind" exists-action="override"><value>other</value></set-header></otherwise>
</choose>
</inbound><backend><base /></backend><outbound><base />
<set-header name="X-Len" exists-action="override">
  <value>@(context.Response.Body.As<string>(preserveContent: true).Length.ToString())</value>
</set-header>
<set-body>@{ var b = context.Response.Body.As<JObject>(); b["extra"] = 1; return b.ToString(); }</set-body>
</outbound><on-error><base />
<set-header name="X-Error" exists-action="override"><value>@(context.LastError.Message)</value></set-header>
</on-error></policies>"""

CONSUMED = """<policies><inbound><base />
<set-variable name="text" value="@(context.Request.Body.As<string>())" />
<set-header name="X-Seen" exists-action="override"><value>@(((string)context.Variables["text"]).Length.ToString())</value></set-header>
</inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"""

FORM = """<policies><inbound><base />
<set-header name="X-Name" exists-action="override">
  <value>@(context.Request.Body.AsFormUrlEncodedContent(preserveContent: true)["name"].First())</value>
</set-header>
<set-header name="X-Tags" exists-action="override">
  <value>@(string.Join("|", context.Request.Body.AsFormUrlEncodedContent(true)["tag"]))</value>
</set-header>
</inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"""

XML = """<policies><inbound><base />
<set-header name="X-Hotel" exists-action="override">
  <value>@((string)context.Request.Body.As<XDocument>(preserveContent: true).Descendants("{http://tempuri.org/}ID").First())</value>
</set-header>
</inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"""


def _raw_policy(gw: GatewayEnv, api: str, operation: str, xml: str) -> None:
    body = {"properties": {"value": xml, "format": "rawxml"}}
    gw.client.api_operation_policy.create_or_update(RG, gw.service, api, operation, "policy", body)


def _chunks(data: bytes, size: int = 7) -> Iterator[bytes]:
    """No Content-Length: httpx sends the body chunked, which the gateway serves on its ASGI path."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _answer(r: Any) -> tuple[int, dict[str, str], Any]:
    return r.status_code, {k: v for k, v in r.headers.items() if k.startswith("x-")}, r.json()


def test_request_and_response_bodies_in_expressions(gw: GatewayEnv, backend: str) -> None:
    api = unique("bodyx")
    gw.api(
        api,
        api,
        backend + "/svc",
        ops=[
            ("orders", "POST", "/orders"),
            ("consumed", "POST", "/consumed"),
            ("form", "POST", "/form"),
            ("xml", "POST", "/xml"),
        ],
    )
    key = gw.subscription(unique("bodyxsub"), "/apis")
    _raw_policy(gw, api, "orders", ORDERS)
    _raw_policy(gw, api, "consumed", CONSUMED)
    _raw_policy(gw, api, "form", FORM)
    _raw_policy(gw, api, "xml", XML)
    order = orjson.dumps({"id": "o-17", "type": "x", "lines": [1, 2]})
    json_type = {"Content-Type": "application/json"}

    def ordered() -> tuple[int, dict[str, str], Any]:
        r = gw.call("POST", f"/{api}/orders", key=key, content=order, headers=json_type)
        assert r.status_code == 200 and "x-len" in r.headers, r.text
        return _answer(r)

    _status, headers, echoed = eventually(ordered, timeout=10)
    # the body's fields reached the backend as headers, and the body itself (preserveContent: true)
    assert echoed["headers"]["x-order-id"] == "o-17" and echoed["headers"]["x-kind"] == "x"
    assert echoed["bodyLength"] == len(order) and orjson.loads(echoed["body"]) == orjson.loads(order)
    # the backend's answer was read (its length in X-Len) and rewritten by set-body
    assert echoed["extra"] == 1 and echoed["method"] == "POST"
    assert int(headers["x-len"]) > len(order)
    # chunked, the request takes the ASGI path: the same answer
    chunked = gw.call("POST", f"/{api}/orders", key=key, content=_chunks(order), headers=json_type)
    c_status, _headers, c_echoed = _answer(chunked)
    assert (c_status, c_echoed["headers"]["x-order-id"], c_echoed["headers"]["x-kind"]) == (200, "o-17", "x")
    assert c_echoed["bodyLength"] == len(order) and c_echoed["extra"] == 1
    other = gw.call("POST", f"/{api}/orders", key=key, json={"id": "o-18", "type": "y"})
    assert other.json()["headers"]["x-kind"] == "other"

    # read without preserveContent: consumed, so the backend gets an empty body
    for content in (b"hello body", _chunks(b"hello body")):
        r = gw.call(
            "POST", f"/{api}/consumed", key=key, content=content, headers={"Content-Type": "text/plain"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["headers"]["x-seen"] == "10" and r.json()["bodyLength"] == 0

    # a form body, read twice with preserveContent and forwarded as it came
    form = b"name=Ann+Lee&tag=a&tag=b"
    r = gw.call(
        "POST",
        f"/{api}/form",
        key=key,
        content=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    sent = r.json()
    assert sent["headers"]["x-name"] == "Ann Lee" and sent["headers"]["x-tags"] == "a|b"
    assert sent["body"] == form.decode()

    # an XML body, read with LINQ to XML names ({namespace}local)
    soap = (
        b'<CDHotel xmlns="http://h/"><GetHotel xmlns="http://tempuri.org/"><ID>2022</ID></GetHotel></CDHotel>'
    )

    def hotel() -> Any:  # its policy was written after the one waited for above: a poll later, maybe
        r = gw.call("POST", f"/{api}/xml", key=key, content=soap, headers={"Content-Type": "text/xml"})
        assert r.json()["headers"].get("x-hotel") == "2022", r.text
        return r

    r = eventually(hotel, timeout=10)
    assert r.json()["headers"]["x-hotel"] == "2022" and r.json()["body"] == soap.decode()

    # not JSON where the policy reads JSON: the request fails through on-error
    bad = gw.call("POST", f"/{api}/orders", key=key, content=b"{nope", headers=json_type)
    assert bad.status_code == 500 and "not valid JSON" in bad.headers["x-error"], bad.headers

    # over the gateway's body limit (1 MiB here), sent chunked so that only reading it finds out
    big = gw.call("POST", f"/{api}/consumed", key=key, content=_chunks(b"x" * (1024 * 1024 + 10), 65536))
    assert big.status_code == 413, big.text


def test_body_members_the_gateway_cannot_honour_are_refused_when_saved(gw: GatewayEnv) -> None:
    api = unique("bodyxbad")
    gw.api(api, api, "http://127.0.0.1:9/svc")
    for expression, named in (
        ("@(context.Request.Body.As&lt;XmlDocument&gt;().ToString())", "As<XmlDocument>"),
        ("@(context.Request.Body.As&lt;XElement&gt;().ToString())", "'ToString'"),
        ("@(context.Response.Body.Length.ToString())", "'Length'"),
    ):
        with pytest.raises(HttpResponseError) as exc:
            gw.policy(
                f'<policies><inbound /><outbound><set-header name="x"><value>{expression}</value>'
                "</set-header></outbound></policies>",
                api=api,
            )
        assert exc.value.status_code == 400 and named in str(exc.value.message), exc.value.message
