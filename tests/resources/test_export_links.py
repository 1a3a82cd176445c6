"""Signed export links: only the exact service, API and format, only until they expire."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest

from portico.arm.errors import ArmError
from portico.resources.export_links import check_link, make_link
from portico.secrets_box import SecretBox

SCOPE = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ApiManagement/service/svc"


def _query(link: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}


def test_link_checks() -> None:
    key = SecretBox(b"k" * 32).mac_key("api-export-link")
    assert key != SecretBox(b"k" * 32).mac_key("other") and key != SecretBox(b"j" * 32).mac_key(
        "api-export-link"
    )
    link = make_link(key, "https://portico.example", SCOPE, "echo", "openapi", "2024-05-01", 300)
    assert link.startswith(f"https://portico.example{SCOPE}/apis/echo/exportDocument?")
    q = _query(link)
    check_link(key, SCOPE, "echo", "openapi", q["se"], q["sig"])
    check_link(key, SCOPE.upper(), "ECHO", "openapi", q["se"], q["sig"])  # ARM paths ignore case
    for scope, api, fmt, se, sig in (
        (SCOPE, "other", "openapi", q["se"], q["sig"]),
        (SCOPE, "echo", "wadl", q["se"], q["sig"]),
        (SCOPE.replace("svc", "svc2"), "echo", "openapi", q["se"], q["sig"]),
        (SCOPE, "echo", "openapi", str(int(q["se"]) + 1), q["sig"]),
        (SCOPE, "echo", "openapi", "soon", q["sig"]),
    ):
        with pytest.raises(ArmError) as err:
            check_link(key, scope, api, fmt, se, sig)
        assert err.value.status == 403
    with pytest.raises(ArmError):
        check_link(
            SecretBox(b"j" * 32).mac_key("api-export-link"), SCOPE, "echo", "openapi", q["se"], q["sig"]
        )
    expired = _query(make_link(key, "https://p", SCOPE, "echo", "openapi", "2024-05-01", -1))
    assert int(expired["se"]) < time.time()
    with pytest.raises(ArmError):
        check_link(key, SCOPE, "echo", "openapi", expired["se"], expired["sig"])
