"""validate-content, validate-parameters, validate-headers and validate-status-code against a
hand-built operation and API schema (no server)."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest

from portico.arm.errors import ArmError
from portico.gateway.config import ServiceConfig
from portico.gateway.context import Context, HeaderMap, Response
from portico.gateway.diagnostics import Capture
from portico.gateway.outcome import Reject
from portico.gateway.policies import validate_policy_document
from portico.gateway.policies.base import run_list
from portico.gateway.routing import compile_operation
from portico.gateway.schemas import SchemaMissing, SchemaSet
from tests.gateway.unit.harness import FakeBackend, pipeline, rejected, request, run, service

COMPONENTS = {
    "components": {
        "schemas": {
            "Pet": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "maxLength": 20},
                    "age": {"type": "integer", "minimum": 0},
                    "tag": {"$ref": "#/components/schemas/Tag"},
                },
            },
            "Tag": {"type": "string", "nullable": True, "pattern": "^[a-z]+$"},
            "Limit": {"type": "integer", "maximum": 100},
        }
    }
}
GLOBAL = {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}
OPERATION = {
    "displayName": "Op",
    "method": "POST",
    "urlTemplate": "/pets/{id}",
    "templateParameters": [{"name": "id", "type": "integer", "required": True}],
    "request": {
        "queryParameters": [
            {"name": "limit", "type": "integer", "schemaId": "s1", "typeName": "Limit"},
            {"name": "mode", "type": "string", "values": ["fast", "slow"]},
        ],
        "headers": [{"name": "X-Trace", "type": "string", "required": True}],
        "representations": [{"contentType": "application/json", "schemaId": "s1", "typeName": "Pet"}],
    },
    "responses": [
        {
            "statusCode": 200,
            "representations": [{"contentType": "application/json", "schemaId": "s1", "typeName": "Pet"}],
            "headers": [{"name": "X-Count", "type": "integer", "required": False}],
        }
    ],
    "otherResponses": [{"status": "4XX", "representations": []}],
}


def _svc() -> ServiceConfig:
    svc = service()
    schema = orjson.dumps(
        {"contentType": "application/vnd.oai.openapi.components+json", "document": COMPONENTS}
    )
    svc.schemas = SchemaSet(
        {("apis/echo", "s1"): schema}, {"order": {"schemaType": "json", "document": GLOBAL}}
    )
    return svc


def _ctx(
    svc: ServiceConfig,
    be: FakeBackend,
    body: Any = None,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    ctype: str | None = "application/json",
    path: str = "/echo/pets/7",
) -> Context:
    raw = body if isinstance(body, bytes) else (orjson.dumps(body) if body is not None else None)
    h = {"X-Trace": "t"} if headers is None else headers
    if ctype is not None:
        h = {**h, "Content-Type": ctype}
    ctx = request(svc, be, method="POST", path=path, query=query, headers=h, body=raw, template="/pets/{id}")
    ctx.operation = compile_operation("op", OPERATION)
    ctx.params = ctx.operation.match(path[len("/echo") :], None) or {}
    return ctx


CONTENT = (
    '<validate-content unspecified-content-type-action="prevent" max-size="1000" '
    'size-exceeded-action="prevent" errors-variable-name="bodyErrors">'
    '<content-type-map missing-content-type-value="application/json">'
    '<type from="application/hal+json" to="application/json" /></content-type-map>'
    '<content type="application/json" validate-as="json" action="{action}" {extra}/>'
    "</validate-content>"
)


def _content(action: str = "prevent", extra: str = "") -> str:
    return CONTENT.format(action=action, extra=extra)


async def test_conforming_body_reaches_the_backend() -> None:
    svc, be = _svc(), FakeBackend()
    ctx = _ctx(svc, be, {"name": "rex", "age": 3, "tag": None})
    answer = await run(pipeline(svc, inbound=_content()), ctx)
    assert answer.status == 200 and be.sent[0].body == orjson.dumps({"name": "rex", "age": 3, "tag": None})
    assert "bodyErrors" not in ctx.variables  # only errors set it


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"age": 3}, "'name' is a required property"),
        ({"name": "rex", "age": "old"}, "'old' is not of type 'integer' Path: #/age"),
        ({"name": "rex", "age": -1}, "-1 is less than the minimum of 0"),
        ({"name": "rex", "tag": "UPPER"}, "does not match '^[a-z]+$'"),
        (b"{not json", "The body is not valid JSON"),
    ],
)
async def test_nonconforming_body_is_refused_with_the_reason(body: Any, why: str) -> None:
    svc, be = _svc(), FakeBackend()
    ctx = _ctx(svc, be, body)
    rej = await rejected(pipeline(svc, inbound=_content()), ctx)
    assert rej.status == 400 and not be.sent
    assert rej.message.startswith(
        "Body of the request does not conform to the definition Pet, which is associated with the "
        "content type application/json."
    )
    assert why in rej.message and rej.reason == "Bad request"
    (error,) = ctx.variables["bodyErrors"]
    assert error["Type"] == "RequestBody" and error["ValidationRule"] == "IncorrectMessage"
    assert error["Action"] == "prevent" and error["Name"] == "application/json"


async def test_detect_records_and_goes_on() -> None:
    svc, be = _svc(), FakeBackend()
    ctx = _ctx(svc, be, {"age": 3})
    ctx.diag = Capture((), ctx.raw_headers)  # a diagnostic applies: detected errors join its traces
    answer = await run(pipeline(svc, inbound=_content("detect")), ctx)
    assert answer.status == 200 and len(be.sent) == 1
    assert ctx.variables["bodyErrors"][0]["Action"] == "detect"
    ((severity, entry),) = ctx.diag.traces
    assert entry["source"] == "validate-content" and "'name' is a required property" in entry["message"]
    assert entry["metadata"]["ValidationRule"] == "IncorrectMessage" and severity == 1


async def test_overrides_additional_and_case_insensitive_properties() -> None:
    svc, be = _svc(), FakeBackend()
    strict = _content(extra='allow-additional-properties="false"')
    rej = await rejected(pipeline(svc, inbound=strict), _ctx(svc, be, {"name": "a", "extra": 1}))
    assert "Additional properties are not allowed ('extra' was unexpected)" in rej.message
    folded = _content(extra='case-insensitive-property-names="true"')
    assert (await run(pipeline(svc, inbound=folded), _ctx(svc, be, {"NAME": "a"}))).status == 200
    rej = await rejected(pipeline(svc, inbound=_content()), _ctx(svc, be, {"NAME": "a"}))
    assert "'name' is a required property" in rej.message


async def test_content_types_unspecified_mapped_and_missing() -> None:
    svc, be = _svc(), FakeBackend()
    rej = await rejected(pipeline(svc, inbound=_content()), _ctx(svc, be, b"<a/>", ctype="text/xml"))
    assert rej.message == "Unspecified content type text/xml is not allowed."
    # mapped by <type from=...> and by missing-content-type-value: validated as application/json
    rej = await rejected(
        pipeline(svc, inbound=_content()), _ctx(svc, be, {"x": 1}, ctype="application/hal+json")
    )
    assert "definition Pet" in rej.message
    rej = await rejected(pipeline(svc, inbound=_content()), _ctx(svc, be, {"x": 1}, ctype=None))
    assert "definition Pet" in rej.message


async def test_size_limit() -> None:
    svc, be = _svc(), FakeBackend()
    big = {"name": "a" * 2000}
    rej = await rejected(pipeline(svc, inbound=_content()), _ctx(svc, be, big))
    size = len(orjson.dumps(big))
    assert rej.message == f"Request's body is {size} bytes long and it exceeds the limit of 1000 bytes."
    assert rej.detail.endswith("exceeds the configured limit of 1000 bytes.")


async def test_global_schema_by_id_and_ref() -> None:
    svc, be = _svc(), FakeBackend()
    by_id = _content(extra='schema-id="order"')
    assert (await run(pipeline(svc, inbound=by_id), _ctx(svc, be, {"id": 4}))).status == 200
    rej = await rejected(pipeline(svc, inbound=by_id), _ctx(svc, be, {"id": "x"}))
    assert "definition order" in rej.message and "'x' is not of type 'integer'" in rej.message
    svc.schemas = SchemaSet({}, {"lib": {"schemaType": "json", "document": COMPONENTS}})
    by_ref = _content(extra='schema-id="lib" schema-ref="#/components/schemas/Pet"')
    rej = await rejected(pipeline(svc, inbound=by_ref), _ctx(svc, be, {"age": 1}))
    assert "'name' is a required property" in rej.message
    # a schema that does not exist: an internal error for the client, the reason in the details
    missing = _content(extra='schema-id="nosuch"')
    rej = await rejected(pipeline(svc, inbound=missing), _ctx(svc, be, {"id": 4}))
    assert rej.message.startswith("The request could not be processed due to an internal error")
    assert "nosuch" in rej.detail


async def test_response_body_prevent_is_a_502() -> None:
    svc = _svc()
    be = FakeBackend(body=orjson.dumps({"age": "x"}))
    outbound = _content().replace("bodyErrors", "respErrors")
    rej = await rejected(pipeline(svc, outbound=outbound), _ctx(svc, be, {"name": "a"}))
    assert rej.status == 502 and rej.reason == "Response not allowed"
    assert (
        rej.message == "The request could not be processed due to an internal error. Contact the API owner."
    )
    assert "Body of the response does not conform to the definition Pet" in rej.detail
    good = FakeBackend(body=orjson.dumps({"name": "b"}))
    assert (await run(pipeline(svc, outbound=outbound), _ctx(svc, good, {"name": "a"}))).status == 200


PARAMS = (
    '<validate-parameters specified-parameter-action="prevent" unspecified-parameter-action="prevent" '
    'errors-variable-name="paramErrors"><headers specified-parameter-action="prevent" '
    'unspecified-parameter-action="ignore" /><query><parameter name="debug" action="detect" /></query>'
    "</validate-parameters>"
)


async def test_parameters() -> None:
    svc, be = _svc(), FakeBackend()
    ok = _ctx(
        svc, be, {"name": "a"}, query="limit=5&mode=fast&debug=1", headers={"X-Trace": "t", "X-Other": "o"}
    )
    assert (await run(pipeline(svc, inbound=PARAMS), ok)).status == 200
    assert [e["Name"] for e in ok.variables["paramErrors"]] == ["debug"]  # detected, not refused
    cases = [
        (
            {"query": "limit=500"},
            "The value of the query parameter limit does not conform to the definition.",
        ),
        (
            {"query": "limit=x"},
            "Value of the query parameter limit couldn't be parsed according to the definition.",
        ),
        ({"query": "mode=medium"}, "The value must be one of: fast, slow."),
        (
            {"query": "limit=1&limit=2"},
            "Request cannot contain multiple values for the query parameter limit.",
        ),
        ({"query": "other=1"}, "Unspecified query parameter other is not allowed."),
        ({"headers": {}}, "The value of the header X-Trace does not conform to the definition."),
        (
            {"path": "/echo/pets/abc"},
            "Value of the path parameter id couldn't be parsed according to the definition.",
        ),
    ]
    for kw, message in cases:
        rej = await rejected(pipeline(svc, inbound=PARAMS), _ctx(svc, be, {"name": "a"}, **kw))
        assert rej.status == 400 and message in rej.message, (kw, rej.message)


async def test_status_code_and_headers() -> None:
    svc = _svc()
    status = '<validate-status-code unspecified-status-code-action="prevent" errors-variable-name="sc"><status-code code="500" action="detect" /></validate-status-code>'
    for code, expected in ((200, 200), (404, 404), (500, 500)):  # 4XX is defined; 500 only detected
        be = FakeBackend(status=code, body=b"{}")
        assert (await run(pipeline(svc, outbound=status), _ctx(svc, be, {"name": "a"}))).status == expected
    ctx = _ctx(svc, FakeBackend(status=302, body=b""), {"name": "a"})
    rej = await rejected(pipeline(svc, outbound=status), ctx)
    assert rej.status == 502 and rej.detail == "Response status code 302 is not allowed."
    headers = (
        '<validate-headers specified-header-action="prevent" unspecified-header-action="prevent">'
        '<header name="Content-Type" action="ignore" /></validate-headers>'
    )
    be = FakeBackend(body=b'{"name":"a"}', headers={"Content-Type": "application/json", "X-Count": "3"})
    assert (await run(pipeline(svc, outbound=headers), _ctx(svc, be, {"name": "a"}))).status == 200
    be = FakeBackend(body=b'{"name":"a"}', headers={"Content-Type": "application/json", "X-Count": "many"})
    rej = await rejected(pipeline(svc, outbound=headers), _ctx(svc, be, {"name": "a"}))
    assert rej.status == 502 and "Value of the header X-Count cannot be parsed" in rej.detail
    be = FakeBackend(body=b'{"name":"a"}', headers={"Content-Type": "application/json", "X-Secret": "s"})
    rej = await rejected(pipeline(svc, outbound=headers), _ctx(svc, be, {"name": "a"}))
    assert rej.detail == "Unspecified header X-Secret is not allowed."


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (
            '<validate-content max-size="10" size-exceeded-action="prevent" />',
            "'unspecified-content-type-action' is required",
        ),
        (
            '<validate-content unspecified-content-type-action="stop" max-size="10" size-exceeded-action="prevent" />',
            "must be one of ignore, prevent, detect",
        ),
        (
            '<validate-content unspecified-content-type-action="prevent" max-size="5000000" size-exceeded-action="prevent" />',
            "'max-size' must be an integer between 0 and 4194304",
        ),
        (
            '<validate-content unspecified-content-type-action="prevent" max-size="10" size-exceeded-action="prevent">'
            '<content type="application/xml" validate-as="xml" schema-id="x" schema-ref="#/a" action="prevent" />'
            "</validate-content>",
            "attribute 'schema-ref' isn't supported for an XML schema",
        ),
        (
            '<validate-content unspecified-content-type-action="prevent" max-size="10" size-exceeded-action="prevent">'
            '<content validate-as="yaml" action="prevent" /></validate-content>',
            "attribute 'validate-as' must be one of json, xml, soap",
        ),
        (
            '<validate-parameters specified-parameter-action="prevent" />',
            "'unspecified-parameter-action' is required",
        ),
        (
            '<validate-parameters specified-parameter-action="prevent" unspecified-parameter-action="prevent" '
            'errors-variable-name="@(&quot;x&quot;)" />',
            "policy expressions aren't allowed",
        ),
    ],
)
def test_documents_refused_at_save_time(xml: str, message: str) -> None:
    with pytest.raises(ArmError) as err:
        validate_policy_document(f"<policies><inbound>{xml}</inbound></policies>")
    assert err.value.status == 400 and message in err.value.message


def test_sections() -> None:
    once = '<validate-parameters specified-parameter-action="detect" unspecified-parameter-action="ignore" />'
    with pytest.raises(ArmError, match="may appear only once per section"):
        validate_policy_document(f"<policies><inbound>{once}{once}</inbound></policies>")
    with pytest.raises(ArmError, match="not allowed in section 'inbound'"):
        validate_policy_document(
            '<policies><inbound><validate-status-code unspecified-status-code-action="ignore" /></inbound></policies>'
        )
    validate_policy_document(
        "<policies><inbound>"
        '<validate-parameters specified-parameter-action="detect" unspecified-parameter-action="@(&quot;ignore&quot;)" />'
        '</inbound><outbound><validate-headers specified-header-action="ignore" unspecified-header-action="detect" />'
        '<validate-status-code unspecified-status-code-action="detect" /></outbound></policies>'
    )


def test_reject_keeps_details_apart() -> None:
    rej = Reject(400, "public", source="validate-content", reason="Bad request", detail="private")
    assert (rej.message, rej.detail) == ("public", "private")


def test_only_validate_content_leaves_the_fast_path() -> None:
    """validate-content reads the body (asynchronous); the other three keep a pipeline on the fast path."""
    svc = _svc()
    sync = pipeline(
        svc,
        inbound=PARAMS,
        outbound='<validate-status-code unspecified-status-code-action="detect" />'
        '<validate-headers specified-header-action="detect" unspecified-header-action="ignore" />',
    )
    assert sync.fast
    assert not pipeline(svc, inbound=_content()).fast


def test_schema_set_finds_definitions_of_each_kind_of_schema() -> None:
    swagger = {"definitions": {"Item": {"type": "object", "required": ["id"]}}}
    plain = {"type": "object", "properties": {"n": {"type": "integer"}}}
    schemas = SchemaSet(
        {
            ("apis/a", "sw"): orjson.dumps({"contentType": "swagger", "document": swagger}),
            ("apis/a", "js"): orjson.dumps({"contentType": "json", "document": plain}),
            ("apis/b", "only"): orjson.dumps({"document": COMPONENTS}),
            ("apis/c", "text"): orjson.dumps({"document": {"value": orjson.dumps(swagger).decode()}}),
        },
        {"x": {"schemaType": "xml", "value": "<xs:schema/>"}},
    )
    assert schemas.definition("a", "sw", "Item").errors({}) == ["'id' is a required property Path: #/"]
    assert schemas.definition("A", "JS", "anything").errors({"n": "1"}) == [
        "'1' is not of type 'integer' Path: #/n"
    ]
    assert schemas.definition("b", None, "Limit").errors(5) == []  # the API's only schema
    assert schemas.definition("c", "text", "Item").errors({"id": 1}) == []
    with pytest.raises(SchemaMissing, match="does not contain definition Nope") as err:
        schemas.definition("a", "sw", "Nope")
    assert err.value.definition
    with pytest.raises(SchemaMissing, match="API's schema does not exist"):
        schemas.definition("a", None, "Item")  # two schemas: which one is not said
    with pytest.raises(SchemaMissing, match="is not a JSON schema"):
        schemas.global_schema("x", None)
    # compiled once per set of options, then reused
    assert schemas.definition("a", "sw", "Item") is schemas.definition("a", "sw", "Item")


async def test_on_error_prevent_replaces_the_error_answer() -> None:
    svc = _svc()
    on_error = '<validate-status-code unspecified-status-code-action="prevent" errors-variable-name="sc" />'
    ctx = _ctx(svc, FakeBackend(), {"name": "a"})
    answer = await run(
        pipeline(svc, inbound='<return-response><set-status code="302" /></return-response>'), ctx
    )
    assert answer.status == 302  # on-error does not run for a normal answer
    # the on-error section runs after a failure; its prevent answers 502 itself
    pipe = pipeline(svc, on_error=on_error)
    ctx = _ctx(svc, FakeBackend(), {"name": "a"})
    ctx.response = Response(599, HeaderMap(), b"")
    await run_list(pipe.on_error, ctx)
    assert ctx.response.status == 502 and orjson.loads(ctx.response.body)["message"].startswith(
        "The request could not be processed"
    )
    assert ctx.variables["sc"][0]["Details"] == "Response status code 599 is not allowed."


XSD = (
    '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:pets" xmlns="urn:pets" '
    'elementFormDefault="qualified"><xs:element name="pet"><xs:complexType><xs:sequence>'
    '<xs:element name="name" type="xs:string"/><xs:element name="age" type="xs:int" minOccurs="0"/>'
    "</xs:sequence></xs:complexType></xs:element></xs:schema>"
)
XML_CONTENT = (
    '<validate-content unspecified-content-type-action="ignore" max-size="4000" size-exceeded-action="prevent">'
    '<content type="{ctype}" validate-as="{validate_as}" {schema} action="prevent" /></validate-content>'
)
BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
    b'<pet xmlns="urn:pets"><name>&lol2;</name></pet>'
)


@pytest.mark.parametrize("where", ["global", "api"])
async def test_xml_content_against_an_xml_schema(where: str) -> None:
    svc, be = _svc(), FakeBackend()
    xsd_entity = orjson.dumps(
        {"contentType": "application/vnd.ms-azure-apim.xsd+xml", "document": {"value": XSD}}
    )
    svc.schemas = SchemaSet(
        {("apis/echo", "xsd1"): xsd_entity}, {"petxsd": {"schemaType": "xml", "value": XSD}}
    )
    schema = 'schema-id="petxsd"' if where == "global" else ""
    policy = XML_CONTENT.format(ctype="application/xml", validate_as="xml", schema=schema)
    good = b'<pet xmlns="urn:pets"><name>rex</name><age>3</age></pet>'
    ok = await run(pipeline(svc, inbound=policy), _ctx(svc, be, good, ctype="application/xml"))
    assert ok.status == 200 and be.sent[-1].body == good
    for body, why in (
        (b'<pet xmlns="urn:pets"><age>old</age></pet>', "Path: /pet/age"),
        (b"<pet", "not well-formed"),
        (BOMB, "Entities are forbidden"),
        (b'<cat xmlns="urn:pets"/>', "cat"),
    ):
        rej = await rejected(pipeline(svc, inbound=policy), _ctx(svc, be, body, ctype="application/xml"))
        assert rej.status == 400 and "Body of the request does not conform to the definition" in rej.message
        assert why in rej.message, rej.message


async def test_soap_body_against_an_xml_schema() -> None:
    svc, be = _svc(), FakeBackend()
    svc.schemas = SchemaSet({}, {"petxsd": {"schemaType": "xml", "value": XSD}})
    policy = XML_CONTENT.format(ctype="text/xml", validate_as="soap", schema='schema-id="petxsd"')
    envelope = (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>{}</s:Body></s:Envelope>'
    )
    good = envelope.format('<pet xmlns="urn:pets"><name>a</name></pet>').encode()
    assert (await run(pipeline(svc, inbound=policy), _ctx(svc, be, good, ctype="text/xml"))).status == 200
    bad = envelope.format('<pet xmlns="urn:pets"><age>1</age></pet>').encode()
    rej = await rejected(pipeline(svc, inbound=policy), _ctx(svc, be, bad, ctype="text/xml"))
    assert "Tag '{urn:pets}name' expected" in rej.message
    rej = await rejected(pipeline(svc, inbound=policy), _ctx(svc, be, b"<pet/>", ctype="text/xml"))
    assert "The body is not a SOAP envelope." in rej.message


async def test_xml_schema_that_includes_by_location_is_not_fetched() -> None:
    svc, be = _svc(), FakeBackend()
    including = (
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:include schemaLocation="/schemas/other"/>'
        "</xs:schema>"
    )
    svc.schemas = SchemaSet({}, {"inc": {"schemaType": "xml", "value": including}})
    policy = XML_CONTENT.format(ctype="application/xml", validate_as="xml", schema='schema-id="inc"')
    rej = await rejected(pipeline(svc, inbound=policy), _ctx(svc, be, b"<a/>", ctype="application/xml"))
    assert rej.message.startswith("The request could not be processed due to an internal error")
    assert "Schema 'inc' could not be resolved" in rej.detail and not be.sent


async def test_compressed_bodies_are_validated_decompressed() -> None:
    svc = _svc()
    outbound = _content()
    for data, ok in ((orjson.dumps({"name": "b"}), True), (orjson.dumps({"age": 1}), False)):
        zipped = gzip.compress(data)
        be = FakeBackend(
            body=zipped, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )
        ctx = _ctx(svc, be, {"name": "a"})
        if ok:
            answer = await run(pipeline(svc, outbound=outbound), ctx)
            assert answer.status == 200 and answer.body == zipped  # answered as the backend sent it
        else:
            rej = await rejected(pipeline(svc, outbound=outbound), ctx)
            assert "'name' is a required property" in rej.detail
    # the size limit applies to the decompressed body
    plain = orjson.dumps({"name": "x" * 5000})
    big = gzip.compress(plain)
    be = FakeBackend(body=big, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    rej = await rejected(pipeline(svc, outbound=outbound), _ctx(svc, be, {"name": "a"}))
    assert rej.detail == (
        f"Response's body is {len(plain)} bytes long and it exceeds the configured limit of 1000 bytes."
    )
    assert len(big) < 1000  # the compressed body alone would pass
    # an encoding the gateway cannot decode: the body cannot be validated
    be = FakeBackend(body=b"...", headers={"Content-Type": "application/json", "Content-Encoding": "br"})
    rej = await rejected(pipeline(svc, outbound=outbound), _ctx(svc, be, {"name": "a"}))
    assert rej.status == 502 and "The content encoding 'br' is not supported." in rej.detail


async def test_a_body_over_max_size_is_not_validated_under_detect() -> None:
    svc = _svc()
    detect = _content().replace('size-exceeded-action="prevent"', 'size-exceeded-action="detect"')
    body = orjson.dumps({"age": "not even valid", "pad": "x" * 2000})
    be = FakeBackend(
        body=body, headers={"Content-Type": "application/json", "Content-Length": str(len(body))}
    )
    ctx = _ctx(svc, be, {"name": "a"})
    answer = await run(pipeline(svc, outbound=detect), ctx)
    assert answer.status == 200 and answer.body == body
    assert [e["ValidationRule"] for e in ctx.variables["bodyErrors"]] == ["SizeLimit"]
