"""Pure rules of people sign-in: loopback redirect matching, lock durations, user codes, scopes."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from pathlib import Path

import pytest

from portico.identity.flows.authorization_code import s256
from portico.identity.flows.device_code import USER_CODE_LENGTH, new_user_code, normalize_user_code
from portico.identity.issuer import OAuthError
from portico.identity.public_clients import check_redirect_uri, redirect_matches
from portico.identity.user_tokens import resource_scopes
from portico.identity.users import FREE_FAILURES, MAX_LOCK, check_upn, lock_duration

from .util import make_settings


@pytest.mark.parametrize(
    ("registered", "uri", "ok"),
    [
        ("http://localhost", "http://localhost:53210", True),
        ("http://localhost", "http://localhost:53210/", True),
        ("http://localhost/cb", "http://localhost:1/cb", True),
        ("http://localhost/cb", "http://localhost:1/other", False),
        ("http://127.0.0.1", "http://127.0.0.1:8400", True),
        ("http://localhost", "http://127.0.0.1:8400", False),  # host must match, only the port is free
        ("http://localhost", "https://localhost:8400", False),
        ("http://localhost", "http://localhost.evil.test:8400", False),
        ("http://localhost", "http://user@localhost:8400", False),
        ("https://app.contoso.test/cb", "https://app.contoso.test/cb", True),
        ("https://app.contoso.test/cb", "https://app.contoso.test:444/cb", False),
    ],
)
def test_redirect_matching(registered: str, uri: str, ok: bool) -> None:
    assert redirect_matches(registered, uri) is ok


def test_redirect_registration_rules() -> None:
    assert check_redirect_uri(" http://localhost ") == "http://localhost"
    with pytest.raises(ValueError, match="plain http"):
        check_redirect_uri("http://app.contoso.test/cb")
    with pytest.raises(ValueError, match="fragment"):
        check_redirect_uri("https://app.contoso.test/cb#x")


def test_lock_grows_and_is_capped() -> None:
    assert lock_duration(FREE_FAILURES - 1) is None
    assert lock_duration(FREE_FAILURES) == timedelta(seconds=30)
    assert lock_duration(FREE_FAILURES + 1) == timedelta(seconds=60)
    assert lock_duration(FREE_FAILURES + 50) == MAX_LOCK


def test_user_codes() -> None:
    code = new_user_code()
    assert len(code) == USER_CODE_LENGTH and all(c in "BCDFGHJKLMNPQRSTVWXZ23456789" for c in code)
    assert normalize_user_code(" abcd-efgh ") == "ABCDEFGH"


def test_upn_and_pkce() -> None:
    assert check_upn(" Alice@Contoso.test ") == "Alice@Contoso.test"
    with pytest.raises(ValueError, match="email address"):
        check_upn("alice")
    verifier = "v" * 43
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    assert s256(verifier) == digest and len(digest) == 43


def test_scopes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    for scope in ("https://management.azure.com//.default", "https://management.azure.com/.default"):
        assert resource_scopes(settings, f"{scope} openid profile offline_access") == [scope]
    with pytest.raises(OAuthError) as err:
        resource_scopes(settings, "https://graph.microsoft.com/.default openid")
    assert err.value.error == "invalid_scope" and "graph.microsoft.com" in err.value.description
