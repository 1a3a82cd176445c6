"""SOAP-to-REST: a WSDL imported with `apiType: http` becomes a REST API, as Azure API Management
makes it. Each operation of the selected port's binding is `POST /{Operation}` taking and answering
JSON (`{"add": {"intA": 1, ...}}`: the message element, then its children, named with a lower-case
first letter); the JSON schemas derived from the XSD message elements are the API's schema; and
each operation's policy translates: inbound, a Liquid set-body builds the SOAP envelope from the
JSON request (SOAPAction header for SOAP 1.1, `application/soap+xml; action=...` for SOAP 1.2) and
rewrite-uri sends it to the port's address path; outbound, a Liquid set-body turns the SOAP
response (`body.envelope.body...`) into JSON, or a SOAP fault into `{"error": {"code", "message"}}`.
Where this differs from Azure's generated text, docs/api-import.md says why."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape, quoteattr

import orjson

from portico.resources.importers.model import Imported, ImportFailed, clip
from portico.resources.importers.xml_util import child, children, local, qname_local
from portico.resources.importers.xsd_fields import Field, Schemas, camel, json_schema

SWAGGER_SCHEMAS = "application/vnd.ms-azure-apim.swagger.definitions+json"
SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


class _Names:
    """Liquid loop variables, unique within one template."""

    def __init__(self) -> None:
        self.n = 0

    def next(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"


def soap_to_rest(
    root: Element,
    service: Element,
    port: Element,
    binding: Element,
    port_type: Element | None,
    soap12: bool,
) -> Imported:
    out = Imported()
    out.api["type"] = "http"
    out.api["displayName"] = clip(service.get("name"), 300) or "SOAP API"
    doc = child(service, "documentation")
    if doc is not None and (desc := clip("".join(doc.itertext()).strip(), 100_000)):
        out.api["description"] = desc
    address = next((c for c in port if local(c.tag) == "address"), None)
    location = address.get("location", "") if address is not None else ""
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ImportFailed(f"port '{port.get('name')}' has no http(s) address (soap:address location)")
    out.api["serviceUrl"] = f"{parts.scheme}://{parts.netloc}"
    endpoint = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    schemas = Schemas(child(root, "types"))
    messages = {m.get("name"): m for m in children(root, "message")}
    if any(local(c.tag) == "binding" and c.get("style") == "rpc" for c in binding):
        raise ImportFailed(
            f"binding '{binding.get('name')}' uses the rpc style; SOAP-to-REST import supports document/literal"
        )
    if port_type is None:
        raise ImportFailed(f"binding '{binding.get('name')}' refers to a portType that is not defined")
    definitions: dict[str, Any] = {}
    operations: list[tuple[str, dict[str, Any], str]] = []
    for op in children(binding, "operation"):
        name = op.get("name") or ""
        if not name:
            raise ImportFailed(f"an operation of binding '{binding.get('name')}' has no name")
        if any(o[1]["urlTemplate"] == f"/{name}" for o in operations):
            raise ImportFailed(
                f"operation '{name}' appears twice in binding '{binding.get('name')}' (overloading)"
            )
        soap_op = next((c for c in op if local(c.tag) == "operation"), None)
        if soap_op is not None and soap_op.get("style") == "rpc":
            raise ImportFailed(
                f"operation '{name}' uses the rpc style; SOAP-to-REST supports document/literal"
            )
        for direction in ("input", "output"):
            io = child(op, direction)
            if io is not None and any(local(c.tag) == "header" for c in io):
                raise ImportFailed(
                    f"operation '{name}' has SOAP headers in its {direction}, which SOAP-to-REST import does not map"
                )
        abstract = next((o for o in children(port_type, "operation") if o.get("name") == name), None)
        if abstract is None:
            raise ImportFailed(f"operation '{name}' of the binding is not in its portType")
        request = _message_field(abstract, "input", messages, schemas, name)
        assert request is not None  # an operation without input is refused by _message_field
        response = _message_field(abstract, "output", messages, schemas, name)
        action = (soap_op.get("soapAction") if soap_op is not None else None) or ""
        req_type = _add_body(definitions, request, f"{name}Request")
        props: dict[str, Any] = {
            "displayName": name[:300],
            "method": "POST",
            "urlTemplate": f"/{name}",
            "templateParameters": [],
            "request": {
                "queryParameters": [],
                "headers": [],
                "representations": [{"contentType": "application/json", "typeName": req_type}],
            },
            "responses": [],
        }
        if response is not None:
            resp_type = _add_body(definitions, response, f"{name}Response")
            props["responses"] = [
                {
                    "statusCode": 200,
                    "representations": [{"contentType": "application/json", "typeName": resp_type}],
                    "headers": [],
                }
            ]
        desc_el = child(abstract, "documentation")
        if desc_el is not None and (d := clip("".join(desc_el.itertext()).strip(), 1000)):
            props["description"] = d
        policy = operation_policy(
            request, response, schemas.target_of(request.name), action, endpoint, soap12
        )
        operations.append((name, props, policy))
    if not operations:
        raise ImportFailed(f"binding '{binding.get('name')}' defines no operations")
    schema_id = hashlib.sha256(orjson.dumps(definitions, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]
    for name, props, policy in operations:
        for rep in [
            *props["request"]["representations"],
            *(r for x in props["responses"] for r in x["representations"]),
        ]:
            rep["schemaId"] = schema_id
        op_name = out.add_operation(name, props)
        out.policies.append((op_name, policy))
    out.schemas.append(
        (schema_id, {"contentType": SWAGGER_SCHEMAS, "document": {"definitions": definitions}})
    )
    return out


def _message_field(
    abstract: Element, direction: str, messages: dict[str | None, Element], schemas: Schemas, op: str
) -> Field | None:
    io = child(abstract, direction)
    if io is None:
        if direction == "input":
            raise ImportFailed(f"operation '{op}' has no input message")
        return None
    msg = messages.get(qname_local(io.get("message")))
    if msg is None:
        raise ImportFailed(f"the {direction} message of operation '{op}' is not defined")
    parts = list(children(msg, "part"))
    if len(parts) != 1 or not parts[0].get("element"):
        raise ImportFailed(
            f"message '{msg.get('name')}' of operation '{op}' must have exactly one part with an element "
            "(document/literal) for SOAP-to-REST import"
        )
    return schemas.message_element(qname_local(parts[0].get("element")))


def _unique(definitions: dict[str, Any], wanted: str) -> str:
    name, n = wanted, 1
    while name in definitions:
        n += 1
        name = f"{wanted}{n}"
    return name


def _add_body(definitions: dict[str, Any], f: Field, wanted: str) -> str:
    """Defines the JSON body (one property, the message element, whose schema is a definition of
    its own, shared by the operations using the element) and returns its definition's name."""
    inner = f.name
    if definitions.get(inner) != json_schema(f):
        inner = _unique(definitions, f.name)
        definitions[inner] = json_schema(f)
    name = _unique(definitions, wanted + "Body" if wanted in definitions else wanted)
    definitions[name] = {"type": "object", "properties": {camel(f.name): {"$ref": f"#/definitions/{inner}"}}}
    return name


# --- the policy ---------------------------------------------------------------------------------


def operation_policy(
    request: Field, response: Field | None, namespace: str, action: str, endpoint: str, soap12: bool
) -> str:
    env = SOAP12_ENV if soap12 else SOAP11_ENV
    names = _Names()
    body = _request_element(request, f"body.{camel(request.name)}", namespace, namespace, names, True)
    envelope = (
        f"<soap:Envelope xmlns:soap={quoteattr(env)} xmlns={quoteattr(namespace)}"
        f" xmlns:xsi={quoteattr(XSI)}><soap:Body>{body}</soap:Body></soap:Envelope>"
    )
    if soap12:
        ctype = "application/soap+xml; charset=utf-8" + (f'; action="{action}"' if action else "")
        action_header = ""
    else:
        ctype = "text/xml; charset=utf-8"
        action_header = (
            '<set-header name="SOAPAction" exists-action="override">'
            f"<value>{escape(chr(34) + action + chr(34))}</value></set-header>"
        )
    inbound = (
        f'<base /><rewrite-uri template={quoteattr(endpoint)} copy-unmatched-params="false" />'
        f"{action_header}"
        f'<set-body template="liquid" parse-date="false">{envelope}</set-body>'
        f'<set-header name="Content-Type" exists-action="override"><value>{escape(ctype)}</value></set-header>'
    )
    if response is not None:
        path = f"body.envelope.body.{response.name}"
        success = "{" + f'"{camel(response.name)}": ' + _response_value(response, path, _Names()) + "}"
    else:
        success = "{}"
    outbound = (
        '<base /><choose><when condition="@(context.Response.StatusCode &lt; 400)">'
        f'<set-body template="liquid" parse-date="false">{escape(success)}</set-body></when>'
        f'<otherwise><set-body template="liquid" parse-date="false">{escape(FAULT_TEMPLATE)}</set-body>'
        "</otherwise></choose>"
        '<set-header name="Content-Type" exists-action="override"><value>application/json</value></set-header>'
    )
    return (
        f"<policies><inbound>{inbound}</inbound><backend><base /></backend>"
        f"<outbound>{outbound}</outbound><on-error><base /></on-error></policies>"
    )


# A SOAP 1.1 fault (faultcode, faultstring) or SOAP 1.2 fault (Code/Value, Reason/Text) as JSON.
FAULT_TEMPLATE = (
    "{% assign fault = body.envelope.body.fault %}"
    '{"error": {"code": "'
    "{% if fault.faultcode != nil %}{{ fault.faultcode | JsonEscape }}"
    "{% elsif fault.code.value != nil %}{{ fault.code.value | JsonEscape }}"
    "{% else %}InvalidErrorResponseBody{% endif %}"
    '", "message": "'
    "{% if fault.faultstring != nil %}{{ fault.faultstring | JsonEscape }}"
    '{% elsif fault.reason.text["#text"] != nil %}{{ fault.reason.text["#text"] | JsonEscape }}'
    "{% elsif fault.reason.text != nil %}{{ fault.reason.text | JsonEscape }}"
    "{% else %}The error response body was not a valid SOAP error response.{% endif %}"
    '"}}'
)


def _request_element(
    f: Field, path: str, namespace: str, current: str, names: _Names, top: bool = False
) -> str:
    """`<name>content</name>` for the value at Liquid `path`, with `xmlns` where the element's
    namespace differs from the one in scope."""
    ns = namespace if (f.qualified or top) else ""
    decl = f" xmlns={quoteattr(ns)}" if ns != current else ""
    if f.simple is not None:
        content = "{{ " + path + " | XmlEscape }}"
    else:
        content = "".join(
            _request_child(c, f"{path}.{camel(c.name)}", namespace, ns, names) for c in f.children
        )
    return f"<{f.name}{decl}>{content}</{f.name}>"


def _request_child(f: Field, path: str, namespace: str, current: str, names: _Names) -> str:
    if f.repeated:
        items, item = names.next("items"), names.next("item")
        inner = _request_element(f, item, namespace, current, names)
        return (
            f"{{% assign {items} = {path} | jsonarrayfor_items %}}"
            f"{{% for {item} in {items} %}}{inner}{{% endfor %}}"
        )
    present = _request_element(f, path, namespace, current, names)
    ns = namespace if f.qualified else ""
    decl = f" xmlns={quoteattr(ns)}" if ns != current else ""
    if f.nillable:
        missing = f'<{f.name}{decl} xsi:nil="true" />'
    elif f.optional:
        missing = ""
    else:
        missing = f"<{f.name}{decl} />"
    return f"{{% if {path} != nil %}}{present}{{% else %}}{missing}{{% endif %}}"


def _response_value(f: Field, path: str, names: _Names) -> str:
    """The JSON value of the XML element at Liquid `path` (null when it is absent)."""
    if f.simple is None:
        members = ", ".join(
            f'"{camel(c.name)}": {_response_member(c, f"{path}.{c.name}", names)}' for c in f.children
        )
        return f"{{% if {path} != nil %}}{{{members}}}{{% else %}}null{{% endif %}}"
    kind = f.json_kind
    if kind == "boolean":
        return (
            f'{{% if {path} == "true" or {path} == "1" %}}true'
            f'{{% elsif {path} == "false" or {path} == "0" %}}false{{% else %}}null{{% endif %}}'
        )
    if kind in ("integer", "number"):
        return f'{{% if {path} != nil and {path} != "" %}}{{{{ {path} }}}}{{% else %}}null{{% endif %}}'
    return f'{{% if {path} != nil %}}"{{{{ {path} | JsonEscape }}}}"{{% else %}}null{{% endif %}}'


def _response_member(f: Field, path: str, names: _Names) -> str:
    if not f.repeated:
        return _response_value(f, path, names)
    item = names.next("item")
    return f"[{{% JSONArrayFor {item} in {path} %}}{_response_value(f, item, names)}{{% endJSONArrayFor %}}]"


__all__ = ["FAULT_TEMPLATE", "operation_policy", "soap_to_rest"]
