"""Self-hosted gateway tokens as generateToken makes them: signature, gateway name and expiry."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac

import pytest

from portico.gateway.selfhosted import TokenError, verify


def test_token_expiry_is_checked() -> None:
    data = {"primaryKey": "k1", "secondaryKey": "k2"}
    expiry = dt.datetime(2030, 1, 2, 3, 4, 42, tzinfo=dt.UTC)
    signed = expiry.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    sig = base64.b64encode(hmac.new(b"k2", f"gw\n{signed}".encode(), hashlib.sha512).digest()).decode()
    token = f"GatewayKey gw&{expiry.strftime('%Y%m%d%H%M')}&{sig}"
    assert verify("GW", token, data, now=dt.datetime(2029, 1, 1, tzinfo=dt.UTC)) == expiry.timestamp()
    with pytest.raises(TokenError, match="expired"):
        verify("gw", token, data, now=dt.datetime(2031, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(TokenError, match="signature"):
        verify(
            "gw",
            token,
            {"primaryKey": "k1", "secondaryKey": "other"},
            now=dt.datetime(2029, 1, 1, tzinfo=dt.UTC),
        )
