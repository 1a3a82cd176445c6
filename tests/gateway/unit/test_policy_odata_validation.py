"""validate-odata-request against a hand-built OData API (no server): versions, payload size,
system query options and resource paths checked against the API's OData schema."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from portico.arm.errors import ArmError
from portico.gateway.config import ServiceConfig
from portico.gateway.context import Context
from portico.gateway.odata import ODataSchemas
from portico.gateway.policies import validate_policy_document
from portico.gateway.routing import build_api
from tests.gateway.unit.harness import API, FakeBackend, pipeline, rejected, request, run, service

TRIPPIN = (Path(__file__).parents[2] / "fixtures" / "odata" / "trippin-v4.xml").read_text()
SCHEMA = orjson.dumps(
    {"contentType": "application/vnd.ms-azure-apim.odata.schema", "document": {"value": TRIPPIN}}
)
POLICY = '<validate-odata-request error-variable-name="odataErrors" min-odata-version="4.0" max-odata-version="4.01" />'


def _svc() -> ServiceConfig:
    svc = service()
    svc.odata = ODataSchemas({"echo": SCHEMA})
    return svc


def _ctx(
    svc: ServiceConfig, be: FakeBackend, path: str, query: str = "", api_type: str = "odata", **kw: object
) -> Context:
    ctx = request(svc, be, path=path, query=query, template="/*", **kw)  # type: ignore[arg-type]
    ctx.api = build_api("echo", {**API, "type": api_type})
    ctx.operation = None
    return ctx


@pytest.mark.parametrize(
    ("path", "query", "headers"),
    [
        ("/echo/People", "$filter=FirstName eq 'Scott'&$top=2&$count=true&subscription-key=k", {}),
        ("/echo/People('russell')", "$select=UserName", {"OData-Version": "4.0"}),
        ("/echo/People('russell')/Friends", "", {"OData-Version": "4.01"}),
        ("/echo/$metadata", "", {}),
        ("/echo/", "", {}),
        ("/echo/GetNearestAirport(lat=33,lon=-118)", "", {}),
        ("/echo/Me", "$expand=Friends", {}),
        ("/echo/$batch", "", {}),
    ],
)
async def test_valid_requests_pass(path: str, query: str, headers: dict[str, str]) -> None:
    svc, be = _svc(), FakeBackend()
    answer = await run(pipeline(svc, inbound=POLICY), _ctx(svc, be, path, query, headers=headers))
    assert answer.status == 200 and len(be.sent) == 1
    assert be.sent[0].url.startswith("http://backend.test/svc" + path[len("/echo") :])


@pytest.mark.parametrize(
    ("path", "query", "headers", "message"),
    [
        ("/echo/People", "", {"OData-Version": "3.0"}, "below the minimum version 4.0"),
        ("/echo/People", "", {"OData-Version": "5.0"}, "above the maximum version 4.01"),
        ("/echo/People", "", {"OData-Version": "four"}, "is not an OData version"),
        ("/echo/People", "", {"DataServiceVersion": "2.0;NetFx"}, "below the minimum"),
        ("/echo/People", "$frobnicate=1", {}, "'$frobnicate' is not an OData 4.0 system query option"),
        ("/echo/People", "$top=2&$top=3", {}, "more than once"),
        ("/echo/People", "$top=-1", {}, "non-negative integer"),
        ("/echo/People", "$count=maybe", {}, "true or false"),
        ("/echo/Nobody('x')", "", {}, "'Nobody' is not an entity set"),
    ],
)
async def test_invalid_requests_refused(path: str, query: str, headers: dict[str, str], message: str) -> None:
    svc, be = _svc(), FakeBackend()
    ctx = _ctx(svc, be, path, query, headers=headers)
    rej = await rejected(pipeline(svc, inbound=POLICY), ctx)
    assert rej.status == 400 and message in rej.message, rej.message
    assert rej.source == "validate-odata-request" and not be.sent
    assert message in ctx.variables["odataErrors"][0]


async def test_default_version_and_v2_options() -> None:
    svc, be = _svc(), FakeBackend()
    v2 = '<validate-odata-request default-odata-version="2.0" />'
    ok = await run(pipeline(svc, inbound=v2), _ctx(svc, be, "/echo/People", "$inlinecount=allpages"))
    assert ok.status == 200
    rej = await rejected(pipeline(svc, inbound=v2), _ctx(svc, be, "/echo/People", "$count=true"))
    assert "'$count' is not an OData 2.0 system query option" in rej.message
    rej = await rejected(pipeline(svc, inbound=v2), _ctx(svc, be, "/echo/People", "$inlinecount=some"))
    assert "allpages or none" in rej.message


async def test_max_size() -> None:
    svc, be = _svc(), FakeBackend()
    policy = '<validate-odata-request max-size="10" />'
    small = _ctx(svc, be, "/echo/People", method="POST", body=b'{"a":1}')
    assert (await run(pipeline(svc, inbound=policy), small)).status == 200
    big = _ctx(svc, be, "/echo/People", method="POST", body=b'{"UserName":"someone"}')
    rej = await rejected(pipeline(svc, inbound=policy), big)
    assert "exceeds the maximum size of 10 bytes" in rej.message


async def test_other_apis_pass_and_unknown_schema_skips_path_check() -> None:
    svc, be = _svc(), FakeBackend()
    ctx = _ctx(svc, be, "/echo/Nobody", "$frobnicate=1", api_type="http")
    assert (await run(pipeline(svc, inbound=POLICY), ctx)).status == 200
    svc.odata = ODataSchemas()  # an OData API created without a schema: paths are not checked
    assert (await run(pipeline(svc, inbound=POLICY), _ctx(svc, be, "/echo/Nobody"))).status == 200


@pytest.mark.parametrize(
    ("xml", "scope", "message"),
    [
        ('<validate-odata-request max-size="x" />', "apis/a", "max-size"),
        ('<validate-odata-request min-odata-version="four" />', "apis/a", "must be an OData version"),
        ('<validate-odata-request min-odata-version="4.01" max-odata-version="4.0" />', "", "greater than"),
        ('<validate-odata-request nope="1" />', "", "'nope' is not allowed"),
        ("<validate-odata-request /><validate-odata-request />", "", "only once per section"),
        ("<validate-odata-request />", "apis/a/operations/o", "not allowed at operation scope"),
    ],
)
def test_control_plane_refusals(xml: str, scope: str, message: str) -> None:
    with pytest.raises(ArmError) as err:
        validate_policy_document(f"<policies><inbound>{xml}</inbound></policies>", scope)
    assert err.value.status == 400 and message in err.value.message, err.value.message
    with pytest.raises(ArmError) as err:
        validate_policy_document("<policies><outbound><validate-odata-request /></outbound></policies>")
    assert "not allowed in section 'outbound'" in err.value.message
    validate_policy_document("<policies><inbound><validate-odata-request /></inbound></policies>", "apis/a")
    named = '<validate-odata-request min-odata-version="{{odata-min}}" />'
    validate_policy_document(f"<policies><inbound>{named}</inbound></policies>", "apis/a")
