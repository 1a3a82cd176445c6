"""`<set-body template="liquid">` in API policies: how the body binds (JSON, XML, text), `context`,
the dialect's filters, the content kept as template text, and the refusals."""

from __future__ import annotations

import pytest

from portico.arm.errors import ArmError
from portico.gateway.liquid import compile_template, cs_date_format, render, to_datetime
from portico.gateway.policies import validate_policy_document
from portico.gateway.policies.liquid_body import body_object
from portico.gateway.policies.xmltree import substitute_named_values
from tests.gateway.unit.harness import FakeBackend, pipeline, rejected, request, run, service


def liquid(template: str, data: bytes, content_type: str, **kw: bool) -> str:
    return render(compile_template(template), body=body_object(data, content_type, **kw), context={})


def test_json_and_xml_bodies_bind_as_api_management_binds_them() -> None:
    assert liquid("{{ body.a.b }}", b'{"a": {"b": "x"}}', "application/vnd.x+json") == "x"
    xml = (
        b'<s:Envelope xmlns:s="urn:s" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><s:Body>'
        b'<R xmlns="urn:r"><V>1</V><V>2</V><N xsi:nil="true"/><T unit="kg">5</T><I xsi:type="x:int">7</I></R>'
        b"</s:Body></s:Envelope>"
    )
    template = (
        "{{ body.envelope.body.r.V | Join: ',' }}|{% if body.envelope.body.R.N == nil %}nil{% else %}[{{ body.envelope.body.R.N }}]{% endif %}|"
        '{{ body.envelope.body.R.T.unit }}:{{ body.envelope.body.R.T["#text"] }}|{{ body.envelope.body.R.I }}'
    )
    assert liquid(template, xml, "text/xml; charset=utf-8") == "1,2|[]|kg:5|7"
    assert liquid(template, xml, "application/soap+xml", nil_blank=False).split("|")[1] == "nil"
    # another content type: the body is text
    assert liquid("{{ body }}", b'{"a": 1}', "text/plain") == '{"a": 1}'


def test_dates_and_filters() -> None:
    assert liquid("{{ body.d }}", b'{"d": "2012-03-21T05:40Z"}', "application/json") == "03/21/2012 05:40:00"
    assert liquid("{{ body.d }}", b'{"d": "2012-03-21T05:40Z"}', "application/json", parse_date=False) == (
        "2012-03-21T05:40Z"
    )
    when = to_datetime("/Date(1198908717056)/")
    assert when is not None and cs_date_format(when, "yyyy-MM-ddTHH:mm:ss.fff") == "2007-12-29T06:11:57.056"
    template = (
        '{{ body.s | XmlEscape }}|"{{ body.s | JsonEscape }}"|{{ body.n | Default: "none" }}|'
        "{{ body.s | Upcase }}|{{ 1234.5 | Currency }}|[{% JSONArrayFor x in body.one %}{{ x.k }}{% endJSONArrayFor %}]"
    )
    got = liquid(template, b'{"s": "a<\\"b\\"", "one": {"k": 1}}', "application/json")
    assert got == 'a&lt;&quot;b&quot;|"a<\\"b\\""|none|A<"B"|$1,234.50|[1]'


def test_template_content_is_text_and_not_named_values() -> None:
    xml = (
        '<policies><inbound><set-header name="X"><value>{{nv}}</value></set-header>'
        '<set-body template="liquid"><soap:Envelope xmlns:soap="urn:s"><Add>{{body.a}}</Add></soap:Envelope>'
        "</set-body></inbound></policies>"
    )
    text, missing = substitute_named_values(xml, {"nv": "v&1"})
    assert missing == [] and "<value>v&amp;1</value>" in text and "<Add>{{body.a}}</Add>" in text
    validate_policy_document(text)


@pytest.mark.parametrize(
    ("inbound", "message"),
    [
        ('<set-body template="liquid">{% if %}</set-body>', "invalid Liquid template"),
        ('<set-body template="liquid">{{ body.a | Currency | Nope }}</set-body>', "unknown Liquid filter"),
        ('<set-body template="mustache">x</set-body>', "'template' must be 'liquid'"),
        ('<set-body template="liquid" xsi-nil="zero">x</set-body>', "xsi-nil"),
        ('<return-response><set-body template="liquid">x</set-body></return-response>', "return-response"),
        (
            '<send-request mode="new" response-variable-name="r"><set-url>http://x.test/</set-url>'
            '<set-body template="liquid">x</set-body></send-request>',
            "cannot be used inside <send-request>",
        ),
    ],
)
def test_refused_when_saved(inbound: str, message: str) -> None:
    doc = f"<policies><inbound>{inbound}</inbound><backend /><outbound /><on-error /></policies>"
    with pytest.raises(ArmError, match=message):
        validate_policy_document(doc)


async def test_request_and_response_rendered_around_the_backend() -> None:
    svc = service()
    be = FakeBackend(body=b"<r><Sum>3</Sum></r>", headers={"Content-Type": "application/xml"})
    pipe = pipeline(
        svc,
        inbound='<set-body template="liquid"><q a="{{ context.Request.Method }}">'
        "{{ body.x | Plus: 1 }}/{{ context.Request.MatchedParameters.id }}</q></set-body>",
        outbound='<set-body template="liquid">{"sum": {{ body.r.sum }}, "status": {{ context.Response.StatusCode }}}'
        "</set-body>",
    )
    ctx = request(svc, be, method="POST", body=b'{"x": 1}', headers={"Content-Type": "application/json"})
    answer = await run(pipe, ctx)
    assert be.sent[-1].body == b'<q a="POST">2/7</q>'
    assert answer.json() == {"sum": 3, "status": 200}


async def test_a_body_that_does_not_parse_is_a_400() -> None:
    svc, be = service(), FakeBackend()
    pipe = pipeline(svc, inbound='<set-body template="liquid">{{ body.x }}</set-body>')
    ctx = request(svc, be, method="POST", body=b"{not json", headers={"Content-Type": "application/json"})
    assert (await rejected(pipe, ctx)).status == 400
    ctx = request(
        svc,
        be,
        method="POST",
        body=b"<!DOCTYPE x [<!ENTITY e 'x'>]><x>&e;</x>",
        headers={"Content-Type": "text/xml"},
    )
    assert (await rejected(pipe, ctx)).status == 400
    assert be.sent == []


async def test_a_large_body_renders_off_the_event_loop() -> None:
    svc, be = service(), FakeBackend()
    pipe = pipeline(svc, inbound='<set-body template="liquid">{{ body.s | Size }}</set-body>')
    big = b'{"s": "' + b"x" * 600_000 + b'"}'
    await run(pipe, request(svc, be, method="POST", body=big, headers={"Content-Type": "application/json"}))
    assert be.sent[-1].body == b"600000"
