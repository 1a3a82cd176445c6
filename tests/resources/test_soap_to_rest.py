"""SOAP-to-REST import (WSDL with apiType 'http'): the operations, JSON schemas and translating
policies generated from a WSDL, and what those policies' Liquid templates produce."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import fromstring

import pytest

from portico.gateway.liquid import compile_template, render
from portico.gateway.policies import validate_policy_document
from portico.gateway.policies.liquid_body import body_object
from portico.gateway.policies.xmltree import Node
from portico.gateway.policies.xmltree import parse as parse_policy
from portico.resources.importers import Imported, ImportFailed, Options, parse

CALCULATOR = (Path(__file__).parent.parent / "fixtures" / "wsdl" / "calculator.wsdl").read_text()
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
TEMPURI = "http://tempuri.org/"


def rest(
    text: str = CALCULATOR, service: str | None = "Calculator", port: str | None = "CalculatorSoap"
) -> Imported:
    return parse("wsdl", text, Options(api_type="http", wsdl_service=service, wsdl_endpoint=port))


def _find(node: Node, tag: str) -> list[Node]:
    found = [node] if node.tag == tag else []
    for c in node.children:
        found.extend(_find(c, tag))
    return found


def policy_parts(xml: str) -> dict[str, Any]:
    root = parse_policy(xml)
    sections = {c.tag: c for c in root.children}
    inbound, outbound = sections["inbound"], sections["outbound"]
    headers = {h.attrs["name"]: h.children[0].text for h in _find(inbound, "set-header")}
    out_bodies = _find(outbound, "set-body")
    return {
        "rewrite": _find(inbound, "rewrite-uri")[0].attrs,
        "headers": headers,
        "request": _find(inbound, "set-body")[0].text,
        "success": out_bodies[0].text,
        "fault": out_bodies[1].text,
        "outbound_headers": {h.attrs["name"]: h.children[0].text for h in _find(outbound, "set-header")},
    }


def run(template: str, data: bytes, content_type: str) -> str:
    return render(compile_template(template), body=body_object(data, content_type, True, False), context={})


def test_calculator_soap11_operations_schemas_and_api() -> None:
    out = rest()
    assert out.api == {
        "type": "http",
        "displayName": "Calculator",
        "description": "A calculator.",
        "serviceUrl": "http://calc.example.org",
    }
    ops = dict(out.operations)
    assert set(ops) == {"add", "describe"}
    add = ops["add"]
    assert (add["method"], add["urlTemplate"], add["displayName"]) == ("POST", "/Add", "Add")
    assert add["description"] == "Adds two integers."
    [schema_id, schema] = out.schemas[0]
    assert (
        len(out.schemas) == 1
        and schema["contentType"] == "application/vnd.ms-azure-apim.swagger.definitions+json"
    )
    req = add["request"]["representations"][0]
    resp = add["responses"][0]["representations"][0]
    assert req == {"contentType": "application/json", "typeName": "AddRequest", "schemaId": schema_id}
    assert resp["typeName"] == "AddResponseBody" and add["responses"][0]["statusCode"] == 200
    defs = schema["document"]["definitions"]
    assert defs["AddRequest"] == {"type": "object", "properties": {"add": {"$ref": "#/definitions/Add"}}}
    assert defs["Add"]["properties"] == {"intA": {"type": "integer"}, "intB": {"type": "integer"}}
    assert defs["Add"]["required"] == ["intA", "intB"]
    assert defs["AddResponseBody"]["properties"] == {"addResponse": {"$ref": "#/definitions/AddResponse"}}
    describe = defs["Describe"]["properties"]
    assert describe["value"] == {"type": "array", "items": {"type": "integer"}}
    assert describe["options"]["properties"]["note"] == {"type": "string", "x-nullable": True}
    assert defs["DescribeResponse"]["properties"]["item"]["items"]["properties"]["amount"] == {
        "type": "number"
    }


def test_soap11_policy_builds_the_envelope_and_reads_the_answer() -> None:
    out = rest()
    policies = dict(out.policies)
    assert set(policies) == {"add", "describe"}
    for xml in policies.values():
        validate_policy_document(xml)
    add = policy_parts(policies["add"])
    assert add["rewrite"] == {"template": "/calculator.asmx", "copy-unmatched-params": "false"}
    assert add["headers"] == {
        "SOAPAction": '"http://tempuri.org/Add"',
        "Content-Type": "text/xml; charset=utf-8",
    }
    assert add["outbound_headers"] == {"Content-Type": "application/json"}
    envelope = fromstring(run(add["request"], b'{"add": {"intA": 2, "intB": 40}}', "application/json"))
    assert envelope.tag == f"{{{SOAP11}}}Envelope"
    call = envelope.find(f"{{{SOAP11}}}Body/{{{TEMPURI}}}Add")
    assert call is not None
    assert [(c.tag, c.text) for c in call] == [(f"{{{TEMPURI}}}intA", "2"), (f"{{{TEMPURI}}}intB", "40")]
    answer = (
        f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><AddResponse xmlns="{TEMPURI}">'
        "<AddResult>42</AddResult></AddResponse></soap:Body></soap:Envelope>"
    )
    assert json.loads(run(add["success"], answer.encode(), "text/xml; charset=utf-8")) == {
        "addResponse": {"addResult": 42}
    }
    fault = (
        f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><soap:Fault><faultcode>soap:Client</faultcode>'
        '<faultstring>Bad "input"</faultstring></soap:Fault></soap:Body></soap:Envelope>'
    )
    assert json.loads(run(add["fault"], fault.encode(), "text/xml")) == {
        "error": {"code": "soap:Client", "message": 'Bad "input"'}
    }
    assert json.loads(run(add["fault"], b"oops", "text/plain"))["error"]["code"] == "InvalidErrorResponseBody"


def test_nested_repeated_optional_and_nillable_fields() -> None:
    describe = policy_parts(dict(rest().policies)["describe"])
    request = {"describe": {"label": "a<b & c", "value": [1, 2], "options": {"verbose": False}}}
    envelope = fromstring(run(describe["request"], json.dumps(request).encode(), "application/json"))
    call = envelope.find(f"{{{SOAP11}}}Body/{{{TEMPURI}}}Describe")
    assert call is not None
    got = [(c.tag.split("}")[1], c.text) for c in call]
    assert got == [("Label", "a<b & c"), ("Value", "1"), ("Value", "2"), ("Options", None)]
    options = call.find(f"{{{TEMPURI}}}Options")
    assert options is not None
    verbose, note = list(options)
    assert verbose.text == "false"  # false is a value, not a missing field
    assert note.get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true"
    # an optional field left out is omitted; a required one is sent empty
    envelope = fromstring(run(describe["request"], b'{"describe": {}}', "application/json"))
    call = envelope.find(f"{{{SOAP11}}}Body/{{{TEMPURI}}}Describe")
    assert call is not None and [c.tag.split("}")[1] for c in call] == ["Options"]

    one = (
        f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><DescribeResponse xmlns="{TEMPURI}"><Text>x "y"\n</Text>'
        "<Item><Key>k1</Key><Amount>1.5</Amount></Item><Ok>1</Ok></DescribeResponse></s:Body></s:Envelope>"
    )
    assert json.loads(run(describe["success"], one.encode(), "text/xml")) == {
        "describeResponse": {"text": 'x "y"\n', "item": [{"key": "k1", "amount": 1.5}], "ok": True}
    }
    two = one.replace("<Ok>1</Ok>", "<Item><Key>k2</Key><Amount>2</Amount></Item><Ok>false</Ok>")
    result = json.loads(run(describe["success"], two.encode(), "text/xml"))["describeResponse"]
    assert (
        result["item"] == [{"key": "k1", "amount": 1.5}, {"key": "k2", "amount": 2}] and result["ok"] is False
    )
    empty = (
        f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><DescribeResponse xmlns="{TEMPURI}"/></s:Body></s:Envelope>'
    )
    assert json.loads(run(describe["success"], empty.encode(), "text/xml")) == {
        "describeResponse": {"text": None, "item": [], "ok": None}
    }


def test_soap12_endpoint() -> None:
    out = rest(port="CalculatorSoap12")
    add = policy_parts(dict(out.policies)["add"])
    assert "SOAPAction" not in add["headers"]
    assert (
        add["headers"]["Content-Type"]
        == 'application/soap+xml; charset=utf-8; action="http://tempuri.org/Add"'
    )
    envelope = fromstring(run(add["request"], b'{"add": {"intA": 1, "intB": 2}}', "application/json"))
    assert envelope.tag == f"{{{SOAP12}}}Envelope"
    fault = (
        f'<env:Envelope xmlns:env="{SOAP12}"><env:Body><env:Fault><env:Code><env:Value>env:Sender</env:Value>'
        '</env:Code><env:Reason><env:Text xml:lang="en">Not a number</env:Text></env:Reason></env:Fault>'
        "</env:Body></env:Envelope>"
    )
    assert json.loads(run(add["fault"], fault.encode(), "application/soap+xml")) == {
        "error": {"code": "env:Sender", "message": "Not a number"}
    }


def test_wsdl_selector_picks_the_service_and_port() -> None:
    with pytest.raises(ImportFailed, match="several services"):
        rest(service=None, port=None)
    with pytest.raises(ImportFailed, match="several SOAP ports"):
        rest(port=None)
    with pytest.raises(ImportFailed, match="'Nope' is not in the WSDL"):
        rest(service="Nope")
    mirror = rest(service="CalculatorMirror", port=None)
    assert mirror.api["serviceUrl"] == "https://mirror.example.org:8443"
    assert policy_parts(dict(mirror.policies)["add"])["rewrite"]["template"] == "/calc/service.asmx?v=2"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('style="document"', 'style="rpc"'), "rpc style"),
        (('element="tns:Add"', 'type="tns:Options"'), "exactly one part with an element"),
        (('<s:element name="Add">', '<s:element name="Plus">'), "element 'Add' of a message is not defined"),
        (
            ('location="http://calc.example.org/calculator.asmx"', 'location="urn:calc"'),
            r"no http\(s\) address",
        ),
        (('<wsdl:input message="tns:AddSoapIn" />', ""), "has no input message"),
        (
            (
                '<wsdl:operation name="Describe">\n      <soap:operation',
                '<wsdl:operation name="Add">\n      <soap:operation',
            ),
            "appears twice",
        ),
    ],
)
def test_definitions_it_cannot_translate_are_refused(change: tuple[str, str], message: str) -> None:
    text = CALCULATOR.replace(*change)
    with pytest.raises(ImportFailed, match=message):
        rest(text)


def test_soap_pass_through_is_unchanged() -> None:
    out = parse(
        "wsdl",
        CALCULATOR,
        Options(api_type="soap", wsdl_service="Calculator", wsdl_endpoint="CalculatorSoap"),
    )
    assert out.api["type"] == "soap" and not out.policies
    assert dict(out.operations)["add"]["urlTemplate"] == "/?soapAction=http://tempuri.org/Add"
