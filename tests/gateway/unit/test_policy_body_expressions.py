"""`context.Request.Body` / `context.Response.Body` in policy expressions (no server): what the
compiler records and refuses, `As<T>` and `AsFormUrlEncodedContent`, the consumption rule of
preserveContent, assignments into a JObject, and the buffering the gateway does first."""

from __future__ import annotations

from xml.sax.saxutils import escape

import pytest

from portico.arm.errors import ArmError
from portico.gateway.context import Context
from portico.gateway.expressions import ExpressionError, body_reads, compile_expression
from portico.gateway.outcome import Reject
from portico.gateway.policies import bodies, validate_policy_document
from tests.gateway.unit.harness import FakeBackend, pipeline, request, run, service


def x(expression: str) -> str:
    """An expression as XML text or attribute value (policy documents are XML)."""
    return escape(expression, {'"': "&quot;"})


ORDER = b'{"id": "o-17", "type": "x", "lines": [{"sku": "a"}, {"sku": "b"}]}'
JSON = {"Content-Type": "application/json"}
ID = '@((string)context.Request.Body.As<JObject>(preserveContent: true)["id"])'
TYPE_IS_X = '@(context.Request.Body.As<JObject>(true)["type"].ToString() == "x")'
EXTRA = '@{ var b = context.Response.Body.As<JObject>(); b["extra"] = 1; return b.ToString(); }'
EDIT = (
    '@{ var b = context.Response.Body.As<JObject>(); b["extra"] = 1; b["lines"][1]["sku"] = "z"; '
    'b.Remove("type"); b["when"] = context.Request.Method; return b.ToString(); }'
)
FIRST_NAME = '@(context.Request.Body.AsFormUrlEncodedContent(true)["name"].First())'
TAGS = '@(string.Join(",", context.Request.Body.AsFormUrlEncodedContent(true)["tag"]))'
RESPONSE_ID = '@(context.Response.Body.As<JObject>(true).Value<string>("id"))'
HAS_EMPTY = '@(context.Request.Body.AsFormUrlEncodedContent(true).ContainsKey("empty"))'


def test_the_compiler_records_which_bodies_an_expression_reads() -> None:
    assert compile_expression('@(context.Request.Body.As<JObject>(true)["id"])').reads_body == {"request"}
    assert compile_expression("@(context.Response.Body.As<string>().Length)").reads_body == {"response"}
    block = compile_expression(
        '@{ var r = context.Request.Body.As<string>(preserveContent: true); return $"{r}'
        '{context.Response.Body.As<string>(true)}"; }'
    )
    assert block.reads_body == {"request", "response"}
    assert compile_expression("@(context.Request.Headers.Count)").reads_body == frozenset()
    with body_reads() as outer:
        compile_expression("@(context.Response.Body.As<byte[]>(true).Length)")
        with body_reads() as inner:
            compile_expression("@(context.Request.Body.AsFormUrlEncodedContent(true).Count)")
    assert outer == {"request", "response"} and inner == {"request"}


@pytest.mark.parametrize(
    ("src", "named"),
    [
        ("@(context.Request.Body.As<XmlDocument>())", "As<XmlDocument>"),
        ("@(context.Response.Body.As<XDocument>(true).Root.ToString())", "'ToString'"),
        ("@(context.Request.Body.Length)", "'Length'"),
        ("@(context.Request.Body.AsJson())", "'AsJson'"),
        ('@(((IResponse)context.Variables["r"]).Body.As<byte[]>())', "As<byte[]>"),
    ],
)
def test_what_is_not_supported_is_refused_when_compiled(src: str, named: str) -> None:
    with pytest.raises(ExpressionError, match=named.replace("[", r"\[").replace("]", r"\]")):
        compile_expression(src)


def test_the_control_plane_accepts_body_expressions_and_names_what_it_refuses() -> None:
    ok = (
        "<policies><inbound>"
        f'<set-variable name="id" value="{x(ID)}" />'
        f"</inbound><outbound><set-body>{x(EXTRA)}</set-body></outbound></policies>"
    )
    validate_policy_document(ok)
    with pytest.raises(ArmError) as refused:
        validate_policy_document(
            '<policies><inbound><set-header name="x"><value>@(context.Request.Body.As&lt;XmlNode&gt;().ToString())'
            "</value></set-header></inbound></policies>"
        )
    assert refused.value.status == 400 and "As<XmlNode>" in refused.value.message


async def test_request_fields_in_a_header_and_a_choose_with_the_body_preserved() -> None:
    svc = service()
    be = FakeBackend()
    pipe = pipeline(
        svc,
        inbound=(
            f'<set-header name="X-Order" exists-action="override"><value>{x(ID)}</value></set-header>'
            f'<choose><when condition="{x(TYPE_IS_X)}">'
            '<set-header name="X-Kind" exists-action="override"><value>x</value></set-header></when>'
            '<otherwise><set-header name="X-Kind" exists-action="override"><value>other</value></set-header>'
            "</otherwise></choose>"
        ),
    )
    assert pipe.buffers_request and pipe.fast  # the request's body is buffered; nothing awaits
    await run(pipe, request(svc, be, method="POST", body=ORDER, headers=JSON))
    sent = be.sent[-1]
    assert sent.headers["x-order"] == "o-17" and sent.headers["x-kind"] == "x"
    assert sent.body == ORDER  # preserved: forwarded as it came


async def test_reading_without_preserve_content_consumes_the_request_body() -> None:
    svc = service()
    be = FakeBackend()
    pipe = pipeline(
        svc,
        inbound=(
            f'<set-variable name="len" value="{x("@(context.Request.Body.As<string>().Length)")}" />'
            '<set-header name="X-Again" exists-action="override"><value>'
            f"{x('@(context.Request.Body.As<string>(true).Length.ToString())')}</value></set-header>"
        ),
    )
    ctx = request(svc, be, method="POST", body=ORDER, headers={**JSON, "Content-Length": str(len(ORDER))})
    await run(pipe, ctx)
    assert ctx.variables["len"] == len(ORDER)
    assert be.sent[-1].body == b"" and be.sent[-1].headers["x-again"] == "0"
    assert "content-length" not in be.sent[-1].headers or be.sent[-1].headers["content-length"] == "0"


async def test_set_body_changes_the_response_json() -> None:
    svc = service()
    be = FakeBackend(body=ORDER)
    pipe = pipeline(
        svc,
        outbound=f"<set-body>{x(EDIT)}</set-body>",
    )
    out = (await run(pipe, request(svc, be))).json()
    assert out == {"id": "o-17", "lines": [{"sku": "a"}, {"sku": "z"}], "extra": 1, "when": "GET"}


async def test_a_consumed_response_body_is_answered_empty_and_a_preserved_one_whole() -> None:
    svc = service()
    consumed = pipeline(
        svc,
        outbound='<set-header name="X-Len" exists-action="override"><value>'
        f"{x('@(context.Response.Body.As<string>().Length.ToString())')}</value></set-header>",
    )
    answer = await run(consumed, request(svc, FakeBackend(body=ORDER)))
    assert answer.headers["x-len"] == str(len(ORDER)) and answer.body == b""
    kept = pipeline(
        svc,
        outbound='<set-header name="X-Len" exists-action="override"><value>'
        f"{x('@(context.Response.Body.As<byte[]>(preserveContent: true).Length.ToString())')}</value></set-header>",
    )
    answer = await run(kept, request(svc, FakeBackend(body=ORDER)))
    assert answer.headers["x-len"] == str(len(ORDER)) and answer.body == ORDER


async def test_form_urlencoded_bodies() -> None:
    svc = service()
    be = FakeBackend()
    form = b"name=Ann+Lee&tag=a&tag=b&empty="
    pipe = pipeline(
        svc,
        inbound=(
            '<set-header name="X-Name" exists-action="override"><value>'
            f"{x(FIRST_NAME)}</value></set-header>"
            '<set-header name="X-Tags" exists-action="override"><value>'
            f"{x(TAGS)}"
            "</value></set-header>"
            f'<set-variable name="has" value="{x(HAS_EMPTY)}" />'
        ),
    )
    ctx = request(
        svc, be, method="POST", body=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    await run(pipe, ctx)
    assert be.sent[-1].headers["x-name"] == "Ann Lee" and be.sent[-1].headers["x-tags"] == "a,b"
    assert ctx.variables["has"] is True and be.sent[-1].body == form


async def test_json_that_is_not_what_was_asked_fails_the_request() -> None:
    svc = service()
    pipe = pipeline(
        svc, inbound=f'<set-variable name="v" value="{x("@(context.Request.Body.As<JObject>(true))")}" />'
    )
    for body, message in ((b"[1]", "not a JSON object"), (b"{nope", "not valid JSON")):
        with pytest.raises(ExpressionError, match=message):
            await run(pipe, request(svc, FakeBackend(), method="POST", body=body, headers=JSON))
    empty = request(svc, FakeBackend(), method="POST", body=b"", headers=JSON)
    await run(pipe, empty)
    assert empty.variables["v"] is None  # an empty body reads as null, as Json.NET's


class _Streamed:
    """A backend body still arriving: the upstream response surface bodies.py reads."""

    def __init__(self, body: bytes) -> None:
        self.body, self.reads = body, 0

    def ready_body(self) -> bytes | None:
        return None

    async def read(self, limit: int) -> bytes:
        self.reads += 1
        if len(self.body) > limit:
            raise bodies.UpstreamError("the body is over the limit")
        return self.body

    def close(self) -> None:
        pass


class _StreamingBackend(FakeBackend):
    def _answer(self, ctx: Context) -> None:
        super()._answer(ctx)
        assert ctx.response is not None
        ctx.response.upstream = _Streamed(self.body)  # type: ignore[assignment]


async def test_a_streamed_response_body_is_read_whole_first_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    svc = service()
    pipe = pipeline(
        svc,
        outbound='<set-header name="X-Id" exists-action="override"><value>'
        f"{x(RESPONSE_ID)}</value></set-header>",
    )
    assert not pipe.fast  # reading the backend's body awaits: the fast path hands it over
    answer = await run(pipe, request(svc, _StreamingBackend(body=ORDER)))
    assert answer.headers["x-id"] == "o-17" and answer.body == ORDER
    monkeypatch.setattr(bodies, "MAX_BODY_BYTES", 10)
    with pytest.raises(Reject) as over:
        await run(pipe, request(svc, _StreamingBackend(body=ORDER)))
    assert over.value.status == 502 and "at most 10 bytes" in over.value.message


def test_an_unbuffered_body_is_an_error_not_an_empty_read() -> None:
    svc = service()
    ctx = request(svc, FakeBackend(), method="POST", headers={"Content-Length": "5"})
    ctx.request_body = None
    expr = compile_expression("@(context.Request.Body.As<string>(true))")
    with pytest.raises(ExpressionError, match="not buffered"):
        expr.evaluate(ctx)
    no_body = request(svc, FakeBackend())
    assert expr.evaluate(no_body) == ""
    assert compile_expression("@(context.Response.Body.As<string>())").evaluate(no_body) == ""


HOTEL = (
    b'<?xml version="1.0" encoding="utf-8"?><CDHotel xmlns="http://schemas.xmlsoap.org/soap/cdhotel/">'
    b'<Body><GetHotel xmlns="http://tempuri.org/"><input><ID code="c1">202203081007001</ID>'
    b"<Name>Cheng Du <b>Junyi</b> Hotel</Name></input></GetHotel></Body><Note>n</Note></CDHotel>"
)
T = "{http://tempuri.org/}"


@pytest.mark.parametrize(
    ("src", "value"),
    [
        (
            f'@((string)context.Request.Body.As<XDocument>(true).Descendants("{T}ID").First())',
            "202203081007001",
        ),
        (
            f'@(context.Request.Body.As<XElement>(true).Descendants("{T}Name").First().Value)',
            "Cheng Du Junyi Hotel",
        ),
        ("@(context.Request.Body.As<XDocument>(true).Root.Name.LocalName)", "CDHotel"),
        (
            "@(context.Request.Body.As<XNode>(true).Name.NamespaceName)",
            "http://schemas.xmlsoap.org/soap/cdhotel/",
        ),
        (
            '@(context.Request.Body.As<XElement>(true).Element("Note") == null)',
            True,
        ),  # the name has no namespace
        (
            '@(context.Request.Body.As<XElement>(true).Element("{http://schemas.xmlsoap.org/soap/cdhotel/}Note")'
            ".Value)",
            "n",
        ),
        (
            f'@((string)context.Request.Body.As<XElement>(true).Descendants("{T}ID").First().Attribute("code"))',
            "c1",
        ),
        (
            f'@(context.Request.Body.As<XElement>(true).Descendants("{T}ID").First().Attribute("x") == null)',
            True,
        ),
        ("@(context.Request.Body.As<XElement>(true).Descendants().Count)", 7),
        ('@(context.Request.Body.As<XDocument>(true).Element("CDHotel") == null)', True),
    ],
)
def test_xml_bodies(src: str, value: object) -> None:
    ctx = request(service(), FakeBackend(), method="POST", body=HOTEL)
    assert compile_expression(src).evaluate(ctx) == value
    assert ctx.request_body == HOTEL  # preserved


@pytest.mark.parametrize(
    "body",
    [
        b"<a><b></a>",
        b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>',
        b'<!DOCTYPE a SYSTEM "file:///etc/passwd"><a/>',
    ],
)
def test_xml_that_is_malformed_or_declares_a_dtd_is_refused(body: bytes) -> None:
    ctx = request(service(), FakeBackend(), method="POST", body=body)
    with pytest.raises(ExpressionError, match="not valid XML"):
        compile_expression("@(context.Request.Body.As<XElement>().Value)").evaluate(ctx)
