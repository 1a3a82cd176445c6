"""Body conversion policies (xml-to-json, json-to-xml, find-and-replace, redirect-content-urls,
jsonp): the conversions themselves, then the policies against a hand-built request and a fake
backend (no server)."""

from __future__ import annotations

import gzip
from typing import Any

import pytest

from portico.arm.errors import ArmError
from portico.gateway.context import Context
from portico.gateway.policies import bodies, validate_policy_document
from portico.gateway.policies.base import run_list
from portico.gateway.policies.xmljson import ConversionError, XmlOptions, json_to_xml, xml_to_json
from tests.gateway.unit.harness import FakeBackend, pipeline, rejected, request, run, service

SOAP = b"""<?xml version="1.0"?>
<soap:Envelope xmlns="http://fyicenter.com/" xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
    <soap:Body>
        <GetOrders>
            <Customer>1234567</Customer>
        </GetOrders>
    </soap:Body>
</soap:Envelope>"""

ORDERS = b"""<orders count="2"><order id="1"><item>pen</item><item>ink</item></order>
<order id="2"><item>pad</item><note><![CDATA[a<b]]></note><gift/></order></orders>"""


# --- XML → JSON ----------------------------------------------------------------------------------
def test_direct_reflects_declaration_namespaces_and_attributes() -> None:
    assert xml_to_json(SOAP, friendly=False) == {
        "version": "1.0",
        "soap$Envelope": {
            "@xmlns": "http://fyicenter.com/",
            "@xmlns$soap": "http://schemas.xmlsoap.org/soap/envelope/",
            "soap$Body": {"GetOrders": {"Customer": "1234567"}},
        },
    }


def test_javascript_friendly_drops_declarations_and_attribute_marks() -> None:
    assert xml_to_json(SOAP, friendly=True) == {
        "soap$Envelope": {"soap$Body": {"GetOrders": {"Customer": "1234567"}}}
    }
    assert xml_to_json(ORDERS, friendly=True) == {
        "orders": {
            "count": "2",
            "order": [
                {"id": "1", "item": ["pen", "ink"]},
                {"id": "2", "item": "pad", "note": "a<b", "gift": None},
            ],
        }
    }


def test_repeated_elements_arrays_text_and_always_array() -> None:
    direct = xml_to_json(ORDERS, friendly=False)["orders"]
    assert direct["@count"] == "2" and direct["order"][0] == {"@id": "1", "item": ["pen", "ink"]}
    assert xml_to_json(b'<p lang="en">Hello <b>you</b></p>', friendly=False) == {
        "p": {"@lang": "en", "#text": "Hello ", "b": "you"}
    }
    assert xml_to_json(b'<?xml version="1.0" encoding="utf-8"?><a><b>1</b><c/></a>', friendly=False) == {
        "version": "1.0",
        "encoding": "utf-8",
        "a": {"b": "1", "c": None},
    }
    assert xml_to_json(b"<a><b>1</b><c><d>x</d></c></a>", friendly=True, always_array=True) == {
        "a": {"b": ["1"], "c": [{"d": ["x"]}]}
    }


@pytest.mark.parametrize(
    "body",
    [
        b'{"not": "xml"}',
        b"<a><b></a>",
        b'<!DOCTYPE a [<!ENTITY x "xxxxxxxx"><!ENTITY y "&x;&x;&x;&x;">]><a>&y;</a>',
        b'<!DOCTYPE a SYSTEM "file:///etc/passwd"><a/>',
        b"<a>" * 300 + b"</a>" * 300,
    ],
)
def test_what_is_not_plain_xml_is_refused(body: bytes) -> None:
    with pytest.raises(ConversionError):
        xml_to_json(body, friendly=False)


# --- JSON → XML ----------------------------------------------------------------------------------
DOCS_JSON = b"""{
  "soapenv:Envelope": {
    "xmlns:soapenv": "http://schemas.xmlsoap.org/soap/envelope/",
    "xmlns:v1": "http://localdomain.com/core/v1",
    "soapenv:Header": {},
    "soapenv:Body": {
      "v1:QueryList": {
        "#attrs": {"queryName": "test"},
        "v1:QueryItem": {"name": "dummy text"}
      }
    }
  }
}"""


def test_json_to_xml_namespaces_and_attribute_block() -> None:
    options = XmlOptions(parse_date=False, separator=":", namespace_prefix="xmlns", attribute_block="#attrs")
    assert json_to_xml(DOCS_JSON, options) == (
        b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        b' xmlns:v1="http://localdomain.com/core/v1"><soapenv:Header /><soapenv:Body>'
        b'<v1:QueryList queryName="test"><v1:QueryItem><name>dummy text</name></v1:QueryItem>'
        b"</v1:QueryList></soapenv:Body></soapenv:Envelope>"
    )
    # the default separator (underscore) qualifies only names whose prefix is declared
    underscored = b'{"a_root": {"xmlns_a": "urn:a", "a_item": 1, "first_name": "x"}}'
    assert json_to_xml(underscored, XmlOptions(namespace_prefix="xmlns")) == (
        b'<a:root xmlns:a="urn:a"><a:item>1</a:item><first_name>x</first_name></a:root>'
    )
    assert json_to_xml(underscored, XmlOptions()) == (
        b"<a_root><xmlns_a>urn:a</xmlns_a><a_item>1</a_item><first_name>x</first_name></a_root>"
    )


def test_json_to_xml_values_arrays_roots_and_names() -> None:
    body = b'{"a": 1.5, "b": [true, null, "x<&"], "1st name": "n", "when": "2024-03-01T10:00:00.1200000Z"}'
    assert json_to_xml(body, XmlOptions()) == (
        b"<Document><a>1.5</a><b>true</b><b /><b>x&lt;&amp;</b><_x0031_st_x0020_name>n</_x0031_st_x0020_name>"
        b"<when>2024-03-01T10:00:00.12Z</when></Document>"
    )
    assert b"<when>2024-03-01T10:00:00.1200000Z</when>" in json_to_xml(body, XmlOptions(parse_date=False))
    assert (
        json_to_xml(b'[1, {"k": 2}]', XmlOptions())
        == b"<Document><Array>1</Array><Array><k>2</k></Array></Document>"
    )
    assert (
        json_to_xml(b'{"items": [1, 2]}', XmlOptions())
        == b"<Document><items>1</items><items>2</items></Document>"
    )
    assert json_to_xml(b'"text"', XmlOptions()) == b"<Document>text</Document>"
    with pytest.raises(ConversionError):
        json_to_xml(b"<a/>", XmlOptions())
    with pytest.raises(ConversionError):
        json_to_xml(b'{"a":' * 300 + b"1" + b"}" * 300, XmlOptions())


# --- the policies --------------------------------------------------------------------------------
XML_BACKEND = {"Content-Type": "text/xml; charset=utf-8"}


async def test_xml_to_json_on_the_response() -> None:
    svc = service()
    policy = '<xml-to-json kind="javascript-friendly" apply="content-type-xml" />'
    be = FakeBackend(body=ORDERS, headers=XML_BACKEND)
    answer = await run(
        pipeline(svc, outbound=policy), request(svc, be, headers={"Accept": "application/json"})
    )
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["orders"]["order"][1]["item"] == "pad"
    assert answer.headers["content-length"] == str(len(answer.body))
    # consider-accept-header (default true): a client that does not ask for JSON gets the XML
    answer = await run(pipeline(svc, outbound=policy), request(svc, be, headers={"Accept": "text/xml"}))
    assert answer.body == ORDERS
    # apply="content-type-xml": a JSON answer is left alone
    be_json = FakeBackend()
    answer = await run(
        pipeline(svc, outbound=policy), request(svc, be_json, headers={"Accept": "application/json"})
    )
    assert answer.json() == {"ok": True}


async def test_content_types_that_are_xml() -> None:
    svc = service()
    policy = '<xml-to-json kind="direct" apply="content-type-xml" consider-accept-header="false" />'
    soap = FakeBackend(body=b"<a>1</a>", headers={"Content-Type": "application/soap+xml; charset=utf-8"})
    assert (await run(pipeline(svc, outbound=policy), request(svc, soap))).json() == {"a": "1"}
    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    office = FakeBackend(body=b"PK\x03\x04", headers={"Content-Type": docx})
    assert (await run(pipeline(svc, outbound=policy), request(svc, office))).body == b"PK\x03\x04"


class _Streamed:
    """A backend body still arriving (the upstream response's surface the gateway uses)."""

    def __init__(self, body: bytes) -> None:
        self.body, self.reads = body, 0

    def ready_body(self) -> bytes:
        self.reads += 1
        return self.body

    def close(self) -> None:
        pass


async def test_a_body_of_another_type_is_not_read() -> None:
    """apply="content-type-…" is decided from the head: a binary download streams through."""
    svc = service()
    streamed = _Streamed(b"\x89PNG")

    class Binary(FakeBackend):
        def _answer(self, ctx: Context) -> None:
            super()._answer(ctx)
            assert ctx.response is not None
            ctx.response.upstream = streamed  # type: ignore[assignment]

    be = Binary(body=b"", headers={"Content-Type": "image/png"})
    pipe = pipeline(
        svc, outbound='<xml-to-json kind="direct" apply="content-type-xml" consider-accept-header="false" />'
    )
    ctx = request(svc, be)
    for section in (pipe.inbound, pipe.backend, pipe.outbound):
        await run_list(section, ctx)
    assert ctx.response is not None
    still: object = ctx.response.upstream
    assert still is streamed and streamed.reads == 0


async def test_large_bodies_are_converted_whole() -> None:
    svc = service()
    items = b"".join(b"<item n='%d'>v%d</item>" % (i, i) for i in range(20_000))
    be = FakeBackend(body=b"<list>" + items + b"</list>", headers=XML_BACKEND)
    policy = '<xml-to-json kind="direct" apply="always" consider-accept-header="false" />'
    out = (await run(pipeline(svc, outbound=policy), request(svc, be))).json()
    assert len(out["list"]["item"]) == 20_000 and out["list"]["item"][-1] == {
        "@n": "19999",
        "#text": "v19999",
    }


async def test_xml_to_json_apply_always_and_bodies_it_cannot_convert() -> None:
    svc = service()
    policy = '<xml-to-json kind="direct" apply="always" consider-accept-header="false" />'
    be = FakeBackend(body=SOAP, headers={"Content-Type": "application/octet-stream"})
    answer = await run(pipeline(svc, outbound=policy), request(svc, be))
    assert answer.json()["soap$Envelope"]["soap$Body"] == {"GetOrders": {"Customer": "1234567"}}
    empty = FakeBackend(status=204, body=b"", headers={})
    assert (await run(pipeline(svc, outbound=policy), request(svc, empty))).status == 204
    not_xml = FakeBackend(body=b'{"ok": true}')
    rej = await rejected(pipeline(svc, outbound=policy), request(svc, not_xml))
    assert rej.status == 500 and "not well-formed XML" in rej.message


async def test_xml_to_json_on_the_request_and_gzip_bodies() -> None:
    svc, be = service(), FakeBackend()
    policy = '<xml-to-json kind="direct" apply="content-type-xml" consider-accept-header="false" />'
    ctx = request(
        svc,
        be,
        method="POST",
        headers={"Content-Type": "application/xml", "Content-Encoding": "gzip"},
        body=gzip.compress(b"<a><b>1</b></a>"),
    )
    await run(pipeline(svc, inbound=policy), ctx)
    [sent] = be.sent
    assert sent.body == b'{"a":{"b":"1"}}'
    assert sent.headers["content-type"] == "application/json" and "content-encoding" not in sent.headers
    bad = request(svc, be, method="POST", headers={"Content-Type": "application/xml"}, body=b"<a>")
    rej = await rejected(pipeline(svc, inbound=policy), bad)
    assert rej.status == 400 and rej.source == "xml-to-json"
    gz = FakeBackend(body=gzip.compress(ORDERS), headers={**XML_BACKEND, "Content-Encoding": "gzip"})
    answer = await run(pipeline(svc, outbound=policy), request(svc, gz))
    assert answer.json()["orders"]["@count"] == "2" and "content-encoding" not in answer.headers


async def test_a_streamed_request_body_is_read_whole_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    svc, be = service(), FakeBackend()
    policy = '<find-and-replace from="a" to="b" />'

    def streamed(chunks: list[bytes]) -> Any:
        ctx = request(svc, be, method="POST", headers={"Transfer-Encoding": "chunked"})
        messages = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        ctx.receive = receive
        return ctx

    await run(pipeline(svc, inbound=policy), streamed([b"aa", b"ca"]))
    assert be.sent[-1].body == b"bbcb" and "transfer-encoding" not in be.sent[-1].headers
    monkeypatch.setattr(bodies, "MAX_BODY_BYTES", 3)
    rej = await rejected(pipeline(svc, inbound=policy), streamed([b"aa", b"ca"]))
    assert rej.status == 413 and rej.source == "find-and-replace"


async def test_json_to_xml_both_ways() -> None:
    svc = service()
    policy = (
        '<json-to-xml apply="content-type-json" consider-accept-header="false" parse-date="false"'
        ' namespace-separator=":" namespace-prefix="xmlns" attribute-block-name="#attrs" />'
    )
    be = FakeBackend(body=DOCS_JSON)
    answer = await run(pipeline(svc, outbound=policy), request(svc, be))
    assert answer.headers["content-type"] == "application/xml"
    assert answer.body.startswith(
        b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
    )
    # consider-accept-header="true": converted only for a client that asks for XML
    asks = '<json-to-xml apply="always" />'
    assert (await run(pipeline(svc, outbound=asks), request(svc, be))).body == DOCS_JSON
    converted = await run(
        pipeline(svc, outbound=asks), request(svc, be, headers={"Accept": "application/xml"})
    )
    # without namespace-prefix, "soapenv:Envelope" is no qualified name: its ':' is encoded
    assert converted.body.startswith(b"<soapenv_x003A_Envelope><xmlns_x003A_soapenv>http")
    # on the request: the backend receives XML
    be2 = FakeBackend()
    ctx = request(
        svc, be2, method="POST", headers={"Content-Type": "application/json"}, body=b'{"q": {"n": 1}}'
    )
    await run(pipeline(svc, inbound='<json-to-xml apply="always" consider-accept-header="false" />'), ctx)
    assert be2.sent[0].body == b"<q><n>1</n></q>" and be2.sent[0].headers["content-type"] == "application/xml"
    bad = request(svc, be2, method="POST", body=b"{nope")
    rej = await rejected(
        pipeline(svc, inbound='<json-to-xml apply="always" consider-accept-header="false" />'), bad
    )
    assert rej.status == 400 and "not valid JSON" in rej.message


async def test_attribute_expressions_are_evaluated_per_request() -> None:
    svc = service()
    policy = (
        '<xml-to-json kind="@(context.Request.Headers.GetValueOrDefault(&quot;X-Kind&quot;, &quot;direct&quot;))"'
        ' apply="always" consider-accept-header="false" />'
    )
    be = FakeBackend(body=b'<a x="1"/>', headers=XML_BACKEND)
    assert (await run(pipeline(svc, outbound=policy), request(svc, be))).json() == {"a": {"@x": "1"}}
    friendly = request(svc, be, headers={"X-Kind": "javascript-friendly"})
    assert (await run(pipeline(svc, outbound=policy), friendly)).json() == {"a": {"x": "1"}}


async def test_find_and_replace_on_request_and_response() -> None:
    svc = service()
    be = FakeBackend(body=b"a notebook and another notebook", headers={"Content-Type": "text/plain"})
    ctx = request(svc, be, method="POST", body=b"buy a notebook")
    answer = await run(
        pipeline(
            svc,
            inbound='<find-and-replace from="notebook" to="laptop" />',
            outbound='<find-and-replace from="notebook" to="laptop" /><find-and-replace from=" and" to="" />',
        ),
        ctx,
    )
    assert be.sent[0].body == b"buy a laptop"
    assert answer.body == b"a laptop another laptop"
    assert answer.headers["content-length"] == str(len(answer.body))
    # the body is worked on as UTF-8 bytes; what is not found leaves the body untouched
    be2 = FakeBackend(body="café ☕".encode(), headers={"Content-Type": "text/plain"})
    answer = await run(pipeline(svc, outbound='<find-and-replace from="☕" to="tea" />'), request(svc, be2))
    assert answer.body == "café tea".encode()


async def test_redirect_content_urls_both_ways() -> None:
    svc = service()
    be = FakeBackend(
        body=b'{"self": "http://backend.test/svc/items/7", "other": "http://elsewhere.test/x"}',
    )
    ctx = request(svc, be, method="POST", body=b'{"link": "https://contoso.gateway.test/echo/items/1"}')
    answer = await run(
        pipeline(svc, inbound="<redirect-content-urls />", outbound="<redirect-content-urls />"), ctx
    )
    assert be.sent[0].body == b'{"link": "http://backend.test/svc/items/1"}'
    assert answer.json() == {
        "self": "https://contoso.gateway.test/echo/items/7",
        "other": "http://elsewhere.test/x",
    }


async def test_jsonp_wraps_the_answer_when_the_callback_is_named() -> None:
    svc, be = service(), FakeBackend(body=b'{"ok":true}')
    policy = '<jsonp callback-parameter-name="cb" />'
    answer = await run(pipeline(svc, outbound=policy), request(svc, be, query="cb=app.handle"))
    assert answer.body == b'app.handle({"ok":true});'
    assert answer.headers["content-type"].startswith("application/javascript")
    assert answer.headers["x-content-type-options"] == "nosniff"
    plain = await run(pipeline(svc, outbound=policy), request(svc, be, query="other=1"))
    assert plain.body == b'{"ok":true}' and plain.headers["content-type"] == "application/json"
    rej = await rejected(pipeline(svc, outbound=policy), request(svc, be, query="cb=alert(1)//"))
    assert rej.status == 400 and rej.source == "jsonp"


def test_conversion_pipelines_take_the_awaited_path() -> None:
    """The conversions read whole bodies (they await), so the fast path hands such pipelines to
    the awaited one: one behaviour whichever path a request arrives on."""
    svc = service()
    assert pipeline(
        svc, outbound='<set-header name="A" exists-action="override"><value>1</value></set-header>'
    ).fast
    for policy in (
        '<xml-to-json kind="direct" apply="always" />',
        '<json-to-xml apply="always" />',
        '<find-and-replace from="a" to="b" />',
        "<redirect-content-urls />",
        '<jsonp callback-parameter-name="cb" />',
    ):
        assert not pipeline(svc, outbound=policy).fast, policy


@pytest.mark.parametrize(
    ("section", "policy", "named"),
    [
        ("outbound", '<xml-to-json apply="always" />', "'kind' is required"),
        ("outbound", '<xml-to-json kind="direct" />', "'apply' is required"),
        ("outbound", '<xml-to-json kind="pretty" apply="always" />', "kind"),
        ("outbound", '<xml-to-json kind="direct" apply="content-type-json" />', "apply"),
        (
            "outbound",
            '<xml-to-json kind="direct" apply="always" consider-accept-header="maybe" />',
            "consider",
        ),
        ("outbound", '<xml-to-json kind="direct" apply="always" parse-date="false" />', "parse-date"),
        ("backend", '<xml-to-json kind="direct" apply="always" />', "not allowed in section 'backend'"),
        ("outbound", '<json-to-xml apply="content-type-xml" />', "apply"),
        ("outbound", '<json-to-xml apply="always" parse-date="@(true)" />', "parse-date"),
        ("outbound", '<json-to-xml apply="always" namespace-separator="::" />', "namespace-separator"),
        ("outbound", '<json-to-xml apply="always" kind="direct" />', "kind"),
        ("outbound", '<find-and-replace from="a" />', "'to' is required"),
        ("outbound", '<find-and-replace to="a" />', "'from' is required"),
        ("inbound", '<jsonp callback-parameter-name="cb" />', "not allowed in section 'inbound'"),
        ("outbound", "<jsonp />", "callback-parameter-name"),
        (
            "outbound",
            '<jsonp callback-parameter-name="a" /><jsonp callback-parameter-name="b" />',
            "only once",
        ),
        ("backend", "<redirect-content-urls />", "not allowed in section 'backend'"),
        ("outbound", "<redirect-content-urls /><redirect-content-urls />", "only once"),
        ("outbound", "<xsl-transform><xsl:stylesheet /></xsl-transform>", "xsl-transform"),
    ],
)
def test_invalid_documents_get_a_400_naming_the_problem(section: str, policy: str, named: str) -> None:
    xml = f"<policies><{section}>{policy}</{section}></policies>"
    with pytest.raises(ArmError) as exc:
        validate_policy_document(xml.replace("<xsl:stylesheet />", "<stylesheet />"))
    assert exc.value.status == 400 and named in exc.value.message, exc.value.message


def test_valid_documents_are_accepted() -> None:
    validate_policy_document(
        "<policies><inbound><json-to-xml apply='always' consider-accept-header='false' parse-date='false'"
        " namespace-separator=':' namespace-prefix='xmlns' attribute-block-name='#attrs' />"
        "<find-and-replace from='a' to='' /><redirect-content-urls /></inbound>"
        "<backend><find-and-replace from='@(&quot;x&quot;)' to='y' /><forward-request /></backend>"
        "<outbound><xml-to-json kind='{{kind}}' apply='always' always-array-child-elements='true' />"
        "<jsonp callback-parameter-name='cb' /><redirect-content-urls /></outbound>"
        "<on-error><xml-to-json kind='direct' apply='content-type-xml' /></on-error></policies>"
    )
