"""WSDL 1.1 import as a SOAP pass-through API (`apiType: soap`), as Azure API Management does it:
one operation per operation of the selected port's binding, `POST /?soapAction=...`, the port's
address as serviceUrl, the XML schemas of `types` kept as the API's schemas and the WSDL itself
kept for export. With `apiType: http` the selected port becomes a REST API instead (soap_rest.py)."""

from __future__ import annotations

from xml.etree.ElementTree import Element, tostring

from portico.resources.importers.model import Imported, ImportFailed, Options, clip
from portico.resources.importers.soap_rest import soap_to_rest
from portico.resources.importers.xml_util import child, children, local, ns_of, qname_local

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
SOAP11_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
SOAP12_NS = "http://schemas.xmlsoap.org/wsdl/soap12/"
XSD_CONTENT_TYPE = "application/vnd.ms-azure-apim.xsd+xml"
WSDL_CONTENT_TYPE = "application/vnd.ms-azure-apim.wsdl+xml"
WSDL_SCHEMA_ID = "wsdl"


def import_wsdl(root: Element, text: str, opts: Options) -> Imported:
    if local(root.tag) != "definitions":
        if local(root.tag) == "description":
            raise ImportFailed("WSDL 2.0 documents are not supported (WSDL 1.1 is)")
        raise ImportFailed(f"the root element is '{local(root.tag)[:80]}', not a WSDL 'definitions'")
    if opts.api_type not in ("soap", "http"):
        raise ImportFailed(
            "WSDL import creates a SOAP pass-through API (properties.apiType 'soap') "
            "or a REST API translating to SOAP (apiType 'http')"
        )
    service, port = _select_port(root, opts)
    binding_name = qname_local(port.get("binding"))
    binding = next((b for b in children(root, "binding") if b.get("name") == binding_name), None)
    if binding is None:
        raise ImportFailed(
            f"port '{port.get('name')}' refers to binding '{binding_name}', which is not defined"
        )
    soap12 = any(ns_of(c.tag) == SOAP12_NS for c in binding)
    port_type = next(
        (p for p in children(root, "portType") if p.get("name") == qname_local(binding.get("type"))), None
    )
    if opts.api_type == "http":
        return soap_to_rest(root, service, port, binding, port_type, soap12)
    content_type = "application/soap+xml" if soap12 else "text/xml"
    out = Imported()
    out.api["type"] = "soap"
    out.api["displayName"] = clip(service.get("name"), 300) or "SOAP API"
    doc = child(service, "documentation")
    if doc is not None and (desc := clip("".join(doc.itertext()).strip(), 100_000)):
        out.api["description"] = desc
    address = next((c for c in port if local(c.tag) == "address"), None)
    if address is not None and address.get("location"):
        out.api["serviceUrl"] = address.get("location", "").rstrip("/")
    messages = {m.get("name"): m for m in children(root, "message")}
    for op in children(binding, "operation"):
        name = op.get("name") or ""
        if not name:
            raise ImportFailed(f"an operation of binding '{binding_name}' has no name")
        soap_op = next((c for c in op if local(c.tag) == "operation"), None)
        action = (soap_op.get("soapAction") if soap_op is not None else None) or name
        abstract = (
            next((o for o in children(port_type, "operation") if o.get("name") == name), None)
            if port_type is not None
            else None
        )
        request: dict[str, object] = {"queryParameters": [], "headers": [], "representations": []}
        responses: list[dict[str, object]] = []
        if abstract is not None:
            in_el = _element_of(abstract, "input", messages)
            request["representations"] = [_rep(content_type, in_el)]
            if child(abstract, "output") is not None:
                responses.append(
                    {
                        "statusCode": 200,
                        "representations": [_rep(content_type, _element_of(abstract, "output", messages))],
                    }
                )
        desc_el = child(abstract, "documentation") if abstract is not None else None
        props: dict[str, object] = {
            "displayName": name[:300],
            "method": "POST",
            "urlTemplate": f"/?soapAction={action}",
            "templateParameters": [],
            "request": request,
            "responses": responses,
        }
        if desc_el is not None and (d := clip("".join(desc_el.itertext()).strip(), 1000)):
            props["description"] = d
        out.add_operation(name, props)
    if not out.operations:
        raise ImportFailed(f"binding '{binding_name}' defines no operations")
    types = child(root, "types")
    if types is not None:
        for i, schema in enumerate(s for s in types if local(s.tag) == "schema"):
            out.schemas.append(
                (
                    f"xsd{i + 1}",
                    {
                        "contentType": XSD_CONTENT_TYPE,
                        "document": {"value": tostring(schema, encoding="unicode")},
                    },
                )
            )
    out.schemas.append((WSDL_SCHEMA_ID, {"contentType": WSDL_CONTENT_TYPE, "document": {"value": text}}))
    return out


def _select_port(root: Element, opts: Options) -> tuple[Element, Element]:
    services = list(children(root, "service"))
    if not services:
        raise ImportFailed("the WSDL defines no service")
    if opts.wsdl_service:
        chosen = [s for s in services if s.get("name") == opts.wsdl_service]
        if not chosen:
            names = ", ".join(str(s.get("name")) for s in services)
            raise ImportFailed(
                f"wsdlSelector.wsdlServiceName '{opts.wsdl_service[:100]}' is not in the WSDL (it has: {names[:300]})"
            )
        service = chosen[0]
    elif len(services) == 1:
        service = services[0]
    else:
        names = ", ".join(str(s.get("name")) for s in services)
        raise ImportFailed(
            f"the WSDL has several services ({names[:300]}); choose one with properties.wsdlSelector.wsdlServiceName"
        )
    ports = [
        p
        for p in children(service, "port")
        if any(local(c.tag) == "address" and ns_of(c.tag) in (SOAP11_NS, SOAP12_NS) for c in p)
    ]
    if opts.wsdl_endpoint:
        chosen = [p for p in ports if p.get("name") == opts.wsdl_endpoint]
        if not chosen:
            names = ", ".join(str(p.get("name")) for p in ports)
            raise ImportFailed(
                f"wsdlSelector.wsdlEndpointName '{opts.wsdl_endpoint[:100]}' is not a SOAP port of service '{service.get('name')}' (it has: {names[:300]})"
            )
        return service, chosen[0]
    if len(ports) == 1:
        return service, ports[0]
    if not ports:
        raise ImportFailed(f"service '{service.get('name')}' has no SOAP port")
    names = ", ".join(str(p.get("name")) for p in ports)
    raise ImportFailed(
        f"service '{service.get('name')}' has several SOAP ports ({names[:300]}); choose one with properties.wsdlSelector.wsdlEndpointName"
    )


def _element_of(abstract: Element, direction: str, messages: dict[str | None, Element]) -> str | None:
    io = child(abstract, direction)
    if io is None:
        return None
    msg = messages.get(qname_local(io.get("message")))
    if msg is None:
        return None
    part = child(msg, "part")
    if part is None:
        return None
    return qname_local(part.get("element") or part.get("type")) or None


def _rep(content_type: str, element: str | None) -> dict[str, object]:
    rep: dict[str, object] = {"contentType": content_type}
    if element:
        rep["typeName"] = element
    return rep
