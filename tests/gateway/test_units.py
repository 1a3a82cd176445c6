"""Fast unit tests (no servers): expressions, policy validation messages, URL templates, composition."""

from __future__ import annotations

from typing import Any

import pytest

from portico.arm.errors import ArmError
from portico.gateway.config.model import named_values
from portico.gateway.expressions import ExpressionError, compile_expression
from portico.gateway.policies import validate_policy_document
from portico.gateway.policies.base import BASE, CompileContext
from portico.gateway.policies.pipeline import compile_document, compose
from portico.gateway.policies.xmltree import substitute_named_values
from portico.gateway.routing import compile_operation


class _Ctx:
    def expr_member(self, name: str) -> Any:
        if name == "Variables":
            from portico.gateway.context import Variables

            return Variables({"n": 5, "s": "text"})
        raise ExpressionError(name)


@pytest.mark.parametrize(
    ("src", "value"),
    [
        ("@(1 + 2 * 3)", 7),
        ("@(7 / 2)", 3),
        ("@(7.0 / 2)", 3.5),
        ('@("a" + 1 + true + null)', "a1True"),
        ('@("Hello".ToUpper().Substring(1, 3).Replace("L", "l"))', "Ell"),
        ("@(\"a,b,c\".Split(',')[1])", "b"),
        ('@(3 > 2 && !(1 == 2) ? "yes" : "no")', "yes"),
        ('@(null ?? "fallback")', "fallback"),
        ('@(string.IsNullOrEmpty("") && String.IsNullOrWhiteSpace("  "))', True),
        ('@(string.Format("{0}-{1}", "a", 2))', "a-2"),
        ("@(Math.Max(3, Math.Min(10, 7)))", 7),
        ('@((int)context.Variables["n"] * 2)', 10),
        ('@(context.Variables.GetValueOrDefault<string>("missing", "d"))', "d"),
        (
            '@{ var x = (string)context.Variables["s"]; if (x.Length > 3) { return x.ToUpper(); } else { return "short"; } }',
            "TEXT",
        ),
        ('@("abc".StartsWith("AB", StringComparison.OrdinalIgnoreCase))', True),
        ('@(int.Parse("42") + Convert.ToInt32("8"))', 50),
    ],
)
def test_expressions(src: str, value: Any) -> None:
    assert compile_expression(src).evaluate(_Ctx()) == value


@pytest.mark.parametrize(
    ("src", "fragment"),
    [
        ("@(context.Nope)", "does not contain a definition for 'Nope'"),
        ('@(__import__("os"))', "unknown name '__import__'"),
        ("@(x => x)", "lambda"),
        ("@(new Object())", "'new' is not supported"),
        ('@("a".GetType())', "does not contain a method 'GetType'"),
        ("@(1 +)", "unexpected end"),
        ("@{ while (true) { } }", "'while' is not supported"),
        ("@{ var a = 1; }", None),
    ],
)
def test_expression_errors(src: str, fragment: str | None) -> None:
    if fragment is None:  # compiles, fails when run (no return)
        with pytest.raises(ExpressionError, match="without a return"):
            compile_expression(src).evaluate(_Ctx())
        return
    with pytest.raises(ExpressionError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        compile_expression(src)


def test_runtime_errors_are_expression_errors() -> None:
    with pytest.raises(ExpressionError, match="not present"):
        compile_expression('@(context.Variables["missing"])').evaluate(_Ctx())
    with pytest.raises(ExpressionError, match="divide by zero"):
        compile_expression("@(1 / 0)").evaluate(_Ctx())
    with pytest.raises(ExpressionError, match="null"):
        compile_expression('@(context.Variables.GetValueOrDefault("missing").ToString())').evaluate(_Ctx())


def test_validation_points_at_element_line_and_column() -> None:
    xml = '<policies>\n  <inbound>\n    <base />\n    <rate-limit calls="5" />\n  </inbound>\n</policies>'
    with pytest.raises(ArmError) as err:
        validate_policy_document(xml)
    assert err.value.status == 400 and err.value.code == "ValidationError"
    assert (
        err.value.message
        == "Error in element 'rate-limit' on line 4, column 5: attribute 'renewal-period' is required."
    )
    validate_policy_document(
        '<policies><inbound><rate-limit calls="{{limit}}" renewal-period="60" /></inbound></policies>'
    )  # named values later


LONG = "X" * 100_000
# (policy with NAME where a header name goes, element and attribute the error must name)
HEADER_NAME_PLACES = [
    (
        '<set-header name="NAME" exists-action="override"><value>v</value></set-header>',
        "set-header",
        "'name'",
    ),
    ('<set-header name="NAME" exists-action="delete" />', "set-header", "'name'"),
    (
        '<check-header name="NAME" failed-check-httpcode="401" failed-check-error-message="no"'
        ' ignore-case="true" />',
        "check-header",
        "'name'",
    ),
    (
        '<cache-lookup vary-by-developer="false" vary-by-developer-groups="false">'
        "<vary-by-header>Accept;NAME</vary-by-header></cache-lookup>",
        "vary-by-header",
        "element text",
    ),
    (
        "<cors><allowed-origins><origin>*</origin></allowed-origins>"
        "<allowed-headers><header>NAME</header></allowed-headers></cors>",
        "header",
        "element text",
    ),
    (
        "<cors><allowed-origins><origin>*</origin></allowed-origins>"
        "<expose-headers><header>NAME</header></expose-headers></cors>",
        "header",
        "element text",
    ),
    (
        '<validate-jwt header-name="NAME"><openid-config url="https://login.example/.well-known/openid-configuration" />'
        "</validate-jwt>",
        "validate-jwt",
        "'header-name'",
    ),
    (
        '<rate-limit calls="5" renewal-period="60" remaining-calls-header-name="NAME" />',
        "rate-limit",
        "'remaining-calls-header-name'",
    ),
    (
        '<rate-limit-by-key calls="5" renewal-period="60" counter-key="k" retry-after-header-name="NAME" />',
        "rate-limit-by-key",
        "'retry-after-header-name'",
    ),
    (
        '<rate-limit calls="5" renewal-period="60" total-calls-header-name="NAME" />',
        "rate-limit",
        "'total-calls-header-name'",
    ),
]


@pytest.mark.parametrize("policy,element,attribute", HEADER_NAME_PLACES)
@pytest.mark.parametrize(
    "bad", [LONG, "X Y", "X:Y", "Ärger", "X&#13;&#10;Y", "@(context.Api.Name)", "{{nv}} Y"]
)
def test_header_names_are_bounded_tokens(policy: str, element: str, attribute: str, bad: str) -> None:
    """Wherever a policy takes a header name, it must be an HTTP token of at most 256 characters:
    400 naming the element and the attribute (or its text) otherwise."""
    doc = "<policies><inbound>{}</inbound></policies>"
    for good in ("X-Good_1.~!", "{{nv}}", "X-{{nv}}", "X" * 256):
        validate_policy_document(doc.format(policy.replace("NAME", good)))
    with pytest.raises(ArmError) as err:
        validate_policy_document(doc.format(policy.replace("NAME", bad)))
    message = err.value.message
    assert err.value.status == 400 and f"element '{element}'" in message and attribute in message, message
    assert "header name" in message and len(message) < 400, message


def test_named_value_substitution_escapes_xml() -> None:
    text, missing = substitute_named_values(
        '<v a="{{One}}">{{two}} {{three}}</v>', {"one": 'x"<y', "two": "a&b"}
    )
    assert text == '<v a="x&quot;&lt;y">a&amp;b {{three}}</v>' and missing == ["three"]


def test_named_values_match_by_the_name_fold() -> None:
    """Named values are found ignoring case by the same rule as the store's (Unicode case folding:
    'STRASSE' names 'Straße', as the management API resolves it)."""
    raw: dict[str, dict[tuple[str, str], Any]] = {
        "namedValue": {("", "Straße"): {"value": "v1", "displayName": "Plain"}}
    }
    text, missing = substitute_named_values("{{STRASSE}} {{pLAIN}}", named_values(raw))
    assert text == "v1 v1" and missing == []


def test_composition_order_through_base() -> None:
    def d(inbound: str) -> Any:
        return compile_document(f"<policies><inbound>{inbound}</inbound></policies>", CompileContext())

    hdr = '<set-header name="x" exists-action="append"><value>{}</value></set-header>'
    glob, api, op = (
        d(hdr.format("g") + "<base />"),
        d("<base />" + hdr.format("a")),
        d(hdr.format("o1") + "<base />" + hdr.format("o2")),
    )
    p = compose([glob, None, api, op])
    assert [x.values[0].literal for x in p.inbound] == ["o1", "g", "a", "o2"]
    assert [type(x).__name__ for x in p.backend] == ["ForwardRequest"]  # platform default
    assert BASE not in p.inbound
    no_base = compose([glob, None, api, d(hdr.format("alone"))])
    assert [x.values[0].literal for x in no_base.inbound] == ["alone"]
    empty_backend = compose([compile_document("<policies><backend /></policies>", CompileContext())])
    assert empty_backend.backend == []  # no forward-request: the backend is not called


@pytest.mark.parametrize(
    ("template", "path", "params"),
    [
        ("/items/{id}", "/items/5", {"id": "5"}),
        ("/items/{id}", "/items/5/", {"id": "5"}),
        ("/items/{id}", "/items", None),
        ("/files/{*rest}", "/files/a/b", {"rest": "a/b"}),
        ("/misc/*", "/misc", {}),
        ("/misc/*", "/misc/x/y", {}),
        ("/{a}.{b}", "/f.txt", {"a": "f", "b": "txt"}),
        ("/", "/", {}),
        ("/", "/x", None),
    ],
)
def test_url_templates(template: str, path: str, params: dict[str, str] | None) -> None:
    op = compile_operation("o", {"method": "GET", "urlTemplate": template})
    assert op.match(path, None) == params


def test_value_cache_expires_evicts_and_bounds_values() -> None:
    from portico.gateway.policies.cache import MAX_VALUE_CHARS, ValueCache

    cache = ValueCache(max_entries=2)
    cache.put((1, "a"), "A", 10, now=100.0)
    assert cache.get((1, "a"), 109.9) == (True, "A")
    assert cache.get((2, "a"), 105.0) == (False, None)  # another service's key
    assert cache.get((1, "a"), 110.0) == (False, None) and len(cache) == 0  # expired, dropped
    cache.put((1, "a"), "A", 10, now=0.0)
    cache.put((1, "b"), "B", 10, now=0.0)
    cache.get((1, "a"), 1.0)  # a is now the most recently used
    cache.put((1, "c"), "C", 10, now=1.0)
    assert cache.get((1, "b"), 2.0) == (False, None)  # least recently used went first
    assert cache.get((1, "a"), 2.0) == (True, "A") and cache.get((1, "c"), 2.0) == (True, "C")
    cache.put((1, "a"), "x" * (MAX_VALUE_CHARS + 1), 10, now=2.0)
    assert cache.get((1, "a"), 3.0) == (False, None)  # too big to keep; the old value is gone too


def test_quota_by_key_periods_follow_first_period_start() -> None:
    from datetime import UTC, datetime

    from portico.gateway.policies.limits import QuotaByKey
    from portico.gateway.policies.xmltree import parse

    def quota(attrs: str) -> QuotaByKey:
        return QuotaByKey(
            parse(f'<quota-by-key calls="1" counter-key="k" {attrs} />'), "inbound", CompileContext()
        )

    day = quota('renewal-period="86400" first-period-start="2026-01-01T06:00:00Z"')
    at = datetime(2026, 3, 10, 5, 0, tzinfo=UTC).timestamp()  # one hour before that day's period ends
    p = day.period(at)
    assert p.end is not None and p.end - p.start == 86400 and p.end - at == 3600
    assert p.key == f"{p.index}_P1D" and p.index == 67  # 1 January 06:00 → 10 March 05:00: 67 full days
    assert day.period(at + 3600).index == p.index + 1  # the next period starts on the hour
    never = quota('renewal-period="0"')
    assert never.period(at) == never.period(at + 10 * 366 * 86400)  # one period, forever
    assert never.period(at).key == "0_PT0S" and never.period(at).end is None


def test_response_cache_is_bounded_in_bytes() -> None:
    from portico.gateway.policies.cache import TtlCache

    cache = TtlCache(max_entries=10, max_bytes=100)
    cache.put("a", "A", 10, now=0.0, size=60)
    cache.put("b", "B", 10, now=0.0, size=60)  # over 100 bytes in all: the oldest goes
    assert cache.get("a", 1.0) == (False, None) and cache.get("b", 1.0) == (True, "B")
    cache.put("c", "C", 10, now=0.0, size=200)  # larger than the whole cache: not kept
    assert cache.get("c", 1.0) == (False, None) and cache.bytes == 60
    cache.put("b", "B2", 10, now=0.0, size=30)  # replacing an entry counts its new size only
    assert cache.bytes == 30 and cache.expires("b") == 10.0
    cache.remove("b")
    assert cache.bytes == 0 and len(cache) == 0


def test_inline_fragments_nested_unknown_and_cyclic() -> None:
    from portico.gateway.policies.xmltree import inline_fragments

    frags = {
        "a": '<fragment><set-header name="a" exists-action="override"><value>1</value></set-header></fragment>',
        "b": "<fragment><include-fragment fragment-id='A' /><cors /></fragment>",
        "empty": "<fragment/>",
        "loop": '<fragment><include-fragment fragment-id="loop" /></fragment>',
    }
    assert inline_fragments('<x><include-fragment fragment-id="b" /></x>', frags) == (
        '<x><set-header name="a" exists-action="override"><value>1</value></set-header><cors /></x>'
    )
    assert inline_fragments('<include-fragment fragment-id="empty"/>', frags) == ""
    missing = '<include-fragment fragment-id="none" />'
    assert inline_fragments(missing, frags) == missing
    assert "include-fragment" in inline_fragments('<include-fragment fragment-id="loop" />', frags)
