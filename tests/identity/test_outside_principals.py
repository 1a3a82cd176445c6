"""End to end: a token of a trusted outside issuer whose oid copies a local app's client id gets
none of that app's roles; `portico role assign --issuer` gives it its own."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.server import PorticoServer

from .outside_issuer import OutsideIssuer, outside_issuer

pytestmark = pytest.mark.slow

SUB = "00000000-0000-0000-0000-000000000001"


@pytest.fixture(scope="module")
def idp() -> Iterator[OutsideIssuer]:
    with outside_issuer() as issuer:
        yield issuer


@pytest.fixture(scope="module")
def server(idp: OutsideIssuer, server_factory: Callable[..., PorticoServer]) -> PorticoServer:
    return server_factory(env={"PORTICO_TRUSTED_ISSUERS": idp.trusted_issuers})


def put_group(server: PorticoServer, token: str, name: str) -> httpx.Response:
    return httpx.put(
        f"{server.url}/subscriptions/{SUB}/resourcegroups/{name}?api-version=2022-09-01",
        json={"location": "westeurope"},
        headers={"Authorization": f"Bearer {token}"},
        verify=server.ssl_context(),
    )


def test_outside_token_cannot_borrow_local_app_roles(server: PorticoServer, idp: OutsideIssuer) -> None:
    admin_id = server.admin()["client_id"]  # Owner at "/" through the local issuer
    borrowed = idp.token(admin_id)
    r = put_group(server, borrowed, "borrowed")
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "AuthorizationFailed"
    assert put_group(server, server.token(), "local-admin").status_code in (200, 201)

    # Named with its issuer, the outside principal gets its own assignment, and only it.
    out = server.cli(
        "role",
        "assign",
        "--principal",
        admin_id,
        "--issuer",
        idp.issuer,
        "--role",
        "Contributor",
        "--scope",
        f"/subscriptions/{SUB}",
        "--json",
    )
    assigned = json.loads(out.stdout)
    assert (assigned["principal_id"], assigned["issuer"]) == (admin_id, idp.issuer)
    assert "not in PORTICO_TRUSTED_ISSUERS" not in out.stderr
    deadline = time.monotonic() + 5  # the server caches grants for a moment
    while (r := put_group(server, borrowed, "outside")).status_code == 403 and time.monotonic() < deadline:
        time.sleep(0.25)
    assert r.status_code == 201, r.text
    # Another principal of that issuer still has nothing.
    assert put_group(server, idp.token("someone-else"), "other").status_code == 403

    listed = json.loads(server.cli("role", "list", "--json").stdout)
    assert {(a["principal_id"], a["issuer"], a["role"]) for a in listed} == {
        (admin_id, "local", "Owner"),
        (admin_id, idp.issuer, "Contributor"),
    }
    table = server.cli("role", "list", "--issuer", idp.issuer).stdout
    assert "Issuer" in table and "Contributor" in table and "Owner" not in table
