"""Policy expressions: a small, safe interpreter for the C#-like `@(...)` and `@{...}` of API Management.

Nothing here uses Python's `eval`/`exec`, attribute introspection or imports: source text is
tokenised, parsed into a tree and compiled into closures that can only reach the members listed
in `MEMBERS` / `METHODS` (_catalog.py) and `STATICS` (_runtime.py). Unknown members are
rejected when the policy is saved (400 pointing at the expression), and evaluation errors at request time fail the request through
the policy's on-error section instead of escaping.

Supported (documented in docs/gateway.md):
- literals: "strings" (C# escapes), @"verbatim", 'c' chars, integers, decimals, true, false, null
- interpolated strings $"text {expression} text" (no format specifiers)
- operators: `?:`, `??`, `||`, `&&`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `+`, `-`, `*`, `/`, `%`,
  unary `!` and `-`, casts `(string)x`, `(int)x`, `(bool)x`, `(long)x`, `(double)x`
- member access and indexers on `context` (Request, Response, Subscription, User, Product, Api,
  Operation, Variables, LastError, Deployment, RequestId, Timestamp, Elapsed; GraphQL in resolver
  policies), string methods,
  `GetValueOrDefault<T>(name[, default])`, `ContainsKey`, and a few statics (`string.IsNullOrEmpty`,
  `string.Join`, `string.Format`, `Math.Min/Max/Abs`, `DateTime.UtcNow`, `Guid.NewGuid()`,
  `int.Parse`, `Convert.ToInt32`, `Convert.ToString`)
- multi-statement blocks `@{ var x = ...; if (...) { ... } else { ... } return ...; }`
- send-request's response: `((IResponse)context.Variables["r"]).StatusCode / .Headers / .Body.As<T>()`
  with T string, JObject, JArray or JToken; JObject `o["k"]`, `Value<T>("k")`, `SelectToken("a.b")`,
  casts `(JObject)x`, `(JArray)x`, named arguments (`preserveContent: true`)
- the message bodies `context.Request.Body` / `context.Response.Body`: `As<T>(preserveContent)` with T
  string, byte[], JObject, JArray, JToken, XNode, XElement, XDocument (read only: _xml.py), and
  `AsFormUrlEncodedContent(preserveContent)`; reading without preserveContent consumes the body.
  Compiled expressions say which bodies they read (`Expression.reads_body`, and `body_reads()` while
  compiling) so that the gateway buffers them first.
- `o["k"] = value;` on a local JObject/JArray in statement blocks, `o.Remove("k")`
Not supported: lambdas, LINQ, `new`, loops, changing XML.

The package: `_lexer` (tokens), `_compiler` (parser and compiler into closures), `_runtime` (what
the closures call), `_json` (bodies and JSON), `_xml` (XML bodies), `_catalog` (what may be touched), `_api` (`Expression`, `Value`). Import from
here only.
"""

from __future__ import annotations

from portico.gateway.expressions._api import (
    MAX_SOURCE,
    Expression,
    Value,
    body_reads,
    compile_expression,
    is_expression,
)
from portico.gateway.expressions._base import ExpressionError
from portico.gateway.expressions._json import JArray, JObject, LiveBody, MessageBody
from portico.gateway.expressions._runtime import to_text, truthy

__all__ = [
    "MAX_SOURCE",
    "Expression",
    "ExpressionError",
    "JArray",
    "JObject",
    "LiveBody",
    "MessageBody",
    "Value",
    "body_reads",
    "compile_expression",
    "is_expression",
    "to_text",
    "truthy",
]
