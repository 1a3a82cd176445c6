"""Pure rules of the catalog's kinds: certificate facts, actions, URL resolution of the new kinds."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from portico.arm.errors import ArmError
from portico.resources import kinds as K
from portico.resources.kind_actions import run_action
from portico.resources.kind_rules import FRAGMENT_REF, certificate_facts
from portico.resources.policy_xml import logger_ids
from tests.support.certs import self_signed_pfx


def test_certificate_facts_and_errors() -> None:
    pfx, _cert = self_signed_pfx("facts.example", "pw")
    facts = certificate_facts(pfx, "pw")
    assert facts["subject"] == "CN=facts.example"
    assert len(facts["thumbprint"]) == 40 and facts["thumbprint"].isupper()
    assert facts["expirationDate"].endswith("Z")
    for data, password, field in (("%%%", "pw", "properties.data"), (pfx, "wrong", "properties.password")):
        with pytest.raises(ArmError) as err:
            certificate_facts(data, password)
        assert err.value.status == 400 and err.value.target == field


def _target(path: str) -> K.Target:
    t = K.resolve(path.split("/"))
    assert t is not None
    return t


def test_gateway_token_is_signed_with_the_chosen_key() -> None:
    data = {"primaryKey": "p" * 10, "secondaryKey": "s" * 10}
    expiry = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    with pytest.raises(ArmError):  # more than 30 days ahead
        run_action(
            _target("gateways/gw/generateToken"),
            data,
            {"keyType": "primary", "expiry": expiry.isoformat()},
            [],
        )
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    body, changed = run_action(
        _target("gateways/gw/generateToken"), data, {"keyType": "secondary", "expiry": soon.isoformat()}, []
    )
    assert changed is None and body is not None
    gid, stamp, sig = body["value"].removeprefix("GatewayKey ").split("&")
    assert gid == "gw" and stamp == soon.strftime("%Y%m%d%H%M")
    wire = soon.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    expected = hmac.new(b"s" * 10, f"gw\n{wire}".encode(), hashlib.sha512).digest()
    assert base64.b64decode(sig) == expected
    body, changed = run_action(_target("gateways/gw/regenerateKey"), data, {"keyType": "primary"}, [])
    assert body is None and changed is not None
    assert changed["primaryKey"] != data["primaryKey"] and changed["secondaryKey"] == data["secondaryKey"]


def test_resolution_of_singletons_and_actions() -> None:
    t = _target("portalsettings/DELEGATION/listSecrets")
    assert (t.kind.kind, t.name, t.action) == ("portalSetting", "delegation", "listsecrets")
    assert _target("apis/echo/wikis/default").kind.kind == "wiki"
    assert _target("notifications/bcc/recipientUsers/bob").parent == "notifications/BCC"
    with pytest.raises(ArmError) as err:
        _target("templates/notATemplate")
    assert err.value.status == 400 and "applicationApprovedNotificationMessage" in err.value.message


def test_fragment_reference_pattern() -> None:
    xml = "<a><include-fragment fragment-id='one' /><include-fragment  fragment-id=\"two\"/></a>"
    assert FRAGMENT_REF.findall(xml) == ["one", "two"]


def test_logger_ids_of_policy_documents_and_fragments() -> None:
    doc = (
        '<policies><inbound><log-to-eventhub logger-id="hub">m</log-to-eventhub>'
        '<!-- <log-to-eventhub logger-id="commented">m</log-to-eventhub> -->'
        '<choose><when condition="@(true)"><log-to-eventhub logger-id="inner">m</log-to-eventhub></when>'
        "</choose></inbound><outbound>"
        '<log-to-eventhub logger-id="@(&quot;x&quot;)">m</log-to-eventhub>'
        '<log-to-eventhub logger-id="{{named}}">m</log-to-eventhub></outbound></policies>'
    )
    assert logger_ids(doc) == ["hub", "inner"]
    assert logger_ids('<fragment><log-to-eventhub logger-id="f">m</log-to-eventhub></fragment>') == ["f"]
    assert logger_ids("<policies><inbound>") == []
