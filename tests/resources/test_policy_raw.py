"""Policy documents in the rawxml format (portico/resources/policy_raw.py), without a server."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from portico.arm.errors import ArmError
from portico.resources.policy_raw import decode, encode

RAW = (
    "<policies><inbound><base />"
    '<set-variable name="v" value="@(context.Request.Headers.GetValueOrDefault("a", "<b>"))" />'
    '<set-header name="x" exists-action="override"><value>@{ var s = "a)b"; return s + \'"\'; }</value></set-header>'
    '<choose><when condition="@(context.Variables.GetValueOrDefault<int>("n") > 1 && true)">'
    '<return-response><set-status code="200" /></return-response></when></choose>'
    "</inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"
)


def test_raw_expressions_become_well_formed_xml_with_the_same_text() -> None:
    root = ET.fromstring(encode(RAW))
    assert (
        root.find(".//set-variable").get("value")
        == '@(context.Request.Headers.GetValueOrDefault("a", "<b>"))'
    )
    assert root.find(".//set-header/value").text == '@{ var s = "a)b"; return s + \'"\'; }'
    condition = root.find(".//when").get("condition")
    assert condition == '@(context.Variables.GetValueOrDefault<int>("n") > 1 && true)'


def test_decode_gives_back_the_raw_document() -> None:
    assert decode(encode(RAW)) == RAW
    # a document without expressions, or already encoded, passes through unchanged
    plain = (
        '<policies><inbound><set-header name="a"><value>b &amp; c</value></set-header></inbound></policies>'
    )
    assert encode(plain) == plain and decode(plain) == plain
    encoded = '<policies><inbound><set-variable name="v" value="@(&quot;x&quot;)" /></inbound></policies>'
    assert encode(encoded) == encoded
    assert (
        decode(encoded) == '<policies><inbound><set-variable name="v" value="@("x")" /></inbound></policies>'
    )


def test_verbatim_strings_comments_and_text_around_at_signs() -> None:
    raw = (
        '<policies><inbound><set-body>@{ /* ) */ var p = @"c:\\a""b)"; // }\n return p; }</set-body>'
        '<set-header name="m"><value>ops@(contoso).example</value></set-header></inbound></policies>'
    )
    root = ET.fromstring(encode(raw))
    assert root.find(".//set-body").text == '@{ /* ) */ var p = @"c:\\a""b)"; // }\n return p; }'
    assert root.find(".//value").text == "ops@(contoso).example"  # not an expression: left alone


def test_unclosed_expression_is_a_400_with_its_line() -> None:
    with pytest.raises(ArmError) as err:
        encode('<policies>\n<inbound><set-variable name="v" value="@(context.Variables["a"]" />')
    assert err.value.status == 400 and "line 2" in err.value.message
