"""OData import: EDMX metadata documents (v4 and v2) read into an `odata` API with its schema, and
hostile or broken documents refused with a 400 naming the cause and line (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from portico.arm.errors import ArmError
from portico.edmx import MAX_EDMX_BYTES, read_model
from portico.resources.api_import import parse_checked, read_request
from portico.resources.importers import ImportFailed, Options, parse
from portico.resources.importers.odata import ODATA_CONTENT_TYPE, service_url_of

FIXTURES = Path(__file__).parent.parent / "fixtures" / "odata"
TRIPPIN = (FIXTURES / "trippin-v4.xml").read_text()
NORTHWIND = (FIXTURES / "northwind-v2.xml").read_text()


def _refused(text: str, *needles: str) -> ImportFailed:
    with pytest.raises(ImportFailed) as err:
        parse_checked("odata", text, Options(), None)
    assert err.value.status == 400
    for needle in needles:
        assert needle in err.value.message, err.value.message
    return err.value


def test_v4_trippin_model_and_import() -> None:
    model = read_model(TRIPPIN)
    assert model.version == "4.0"
    assert model.members["EntitySet"] == ["People", "Airports"]
    assert model.members["Singleton"] == ["Me"]
    assert model.members["FunctionImport"] == ["GetNearestAirport"]
    assert model.members["ActionImport"] == ["ResetDataSource"]
    got = parse(
        "odata-link", TRIPPIN, Options(), link="https://svc.example.org/TripPin/$metadata?sap-client=1"
    )
    assert got.api == {"type": "odata", "serviceUrl": "https://svc.example.org/TripPin"}
    assert got.operations == []  # entity sets are addressed through the schema, not operations
    (name, schema), *more = got.schemas
    assert not more and name == "odata"
    assert schema == {"contentType": ODATA_CONTENT_TYPE, "document": {"value": TRIPPIN}}


def test_v2_northwind_model_and_inline_import() -> None:
    model = read_model(NORTHWIND)
    assert model.version == "2.0"
    assert model.members["EntitySet"] == ["Categories", "Products"]
    assert model.members["FunctionImport"] == ["TopProducts"]
    got = parse_checked("odata", NORTHWIND, Options(), None)
    assert got.api == {"type": "odata"}  # serviceUrl comes from the request (read_request demands it)
    assert got.schemas[0][1]["document"]["value"] == NORTHWIND


def test_service_url_of_link() -> None:
    assert service_url_of("https://h/svc/$metadata") == "https://h/svc"
    assert service_url_of("https://h/svc/$METADATA/") == "https://h/svc"
    assert service_url_of("https://h/svc/") == "https://h/svc"


def test_malformed_refused_with_line() -> None:
    broken = TRIPPIN.replace("</EntityType>", "</EntityTyp>", 1)
    _refused(broken, "not well-formed XML", "line 14")
    _refused("", "not well-formed XML", "line 1")


def test_not_edmx_refused_with_line() -> None:
    _refused(
        '<?xml version="1.0"?>\n<definitions xmlns="http://schemas.xmlsoap.org/wsdl/"/>',
        "'definitions'",
        "line 2",
    )
    _refused("{}", "not well-formed XML")
    no_container = (
        TRIPPIN[: TRIPPIN.index("<EntityContainer")] + TRIPPIN[TRIPPIN.index("</EntityContainer>") + 18 :]
    )
    _refused(no_container, "no EntityContainer")
    nameless = TRIPPIN.replace('<EntitySet Name="Airports"', "<EntitySet", 1)
    _refused(nameless, "EntitySet has no Name", "line 33")
    v3 = NORTHWIND.replace('m:DataServiceVersion="2.0"', 'm:DataServiceVersion="3.0"')
    _refused(v3, "DataServiceVersion '3.0' is not supported", "line 3")
    _refused(TRIPPIN.replace('Version="4.0"', 'Version="5.0"'), "'5.0' is not an OData v4 version", "line 2")
    no_services = '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"/>'
    _refused(no_services, "exactly one edmx:DataServices")


def test_xxe_and_entity_bombs_refused() -> None:
    xxe = (
        '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">&x;</edmx:Edmx>'
    )
    _refused(xxe, "DTDs and entities are not accepted")
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]><edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">&c;</edmx:Edmx>'
    )
    _refused(laughs, "DTDs and entities are not accepted")


def test_size_and_element_bounds() -> None:
    _refused("<a/>" + " " * MAX_EDMX_BYTES, f"larger than {MAX_EDMX_BYTES} bytes")
    many = (
        "<edmx:Edmx xmlns:edmx='http://docs.oasis-open.org/odata/ns/edmx'>"
        + "<x/>" * 600_000
        + "</edmx:Edmx>"
    )
    _refused(many, "more than 500000 elements")


def test_request_checks() -> None:
    with pytest.raises(ArmError) as err:
        read_request({"properties": {"format": "odata", "value": NORTHWIND, "path": "nw"}})
    assert err.value.status == 400 and err.value.target == "properties.serviceUrl"
    with pytest.raises(ArmError) as err:
        read_request(
            {"properties": {"format": "odata-link", "value": "https://h/$metadata", "apiType": "http"}}
        )
    assert "apiType" in (err.value.target or "")
    req = read_request(
        {"properties": {"format": "odata", "value": NORTHWIND, "path": "nw", "serviceUrl": "https://h/nw"}}
    )
    assert req.fmt == "odata" and req.props == {"path": "nw", "serviceUrl": "https://h/nw"}
    assert (
        read_request({"properties": {"format": "odata-link", "value": "https://h/$metadata"}}).fmt
        == "odata-link"
    )
