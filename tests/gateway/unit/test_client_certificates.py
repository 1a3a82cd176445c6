"""`validate-client-certificate` and `context.Request.Certificate` against certificates minted
here (a trusted CA, an untrusted one, an expired certificate), on a hand-built request (no server):
the TLS side is tested end to end in tests/gateway/test_client_certificates.py."""

from __future__ import annotations

import base64
import datetime as dt
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from portico.arm.errors import ArmError
from portico.gateway.config import ServiceConfig
from portico.gateway.context import Context
from portico.gateway.policies import validate_policy_document
from tests.gateway.unit.harness import FakeBackend, pipeline, rejected, request, run, service
from tests.support.certs import CertificateAuthority

TRUSTED = CertificateAuthority("Contoso Clients CA")
UNTRUSTED = CertificateAuthority("Somebody Else CA")


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _with_ca(svc: ServiceConfig) -> ServiceConfig:
    """The service trusts TRUSTED for clients (its `properties.certificates`, as the managed gateway)."""
    encoded = base64.b64encode(_der(TRUSTED.cert)).decode()
    svc.row.properties = {"certificates": [{"storeName": "Root", "encodedCertificate": encoded}]}
    svc._client_trust = None
    return svc


def _ctx(svc: ServiceConfig, be: FakeBackend, cert: x509.Certificate | None) -> Context:
    ctx = request(svc, be)
    ctx.client_certificate = _der(cert) if cert is not None else None
    return ctx


def _expired(ca: CertificateAuthority) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old-client")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=4))  # while the CA is valid (from 5 minutes ago)
        .not_valid_after(now - dt.timedelta(minutes=1))
        .sign(ca.key, hashes.SHA256())
    )


POLICY = '<validate-client-certificate validate-revocation="false" />'


async def test_trusted_client_passes_and_others_get_401() -> None:
    svc, be = _with_ca(service()), FakeBackend()
    pipe = pipeline(svc, inbound=POLICY)
    _key, good = TRUSTED.issue("client-a", client=True)
    assert (await run(pipe, _ctx(svc, be, good))).status == 200
    cases = [
        (None, "ClientCertificateMissing"),
        (UNTRUSTED.issue("client-b", client=True)[1], "ClientCertificateNotTrusted"),
        (_expired(TRUSTED), "ClientCertificateNotValid"),
    ]
    for cert, reason in cases:
        rej = await rejected(pipe, _ctx(svc, be, cert))
        assert (rej.status, rej.reason, rej.source) == (401, reason, "validate-client-certificate"), (
            rej.message
        )
    # the checks are the attributes': without validate-trust an untrusted certificate passes,
    # without validate-not-after an expired one does (its chain judged while it was valid)
    lax = pipeline(
        svc, inbound='<validate-client-certificate validate-revocation="false" validate-trust="false" />'
    )
    assert (await run(lax, _ctx(svc, be, cases[1][0]))).status == 200
    late = pipeline(
        svc, inbound='<validate-client-certificate validate-revocation="false" validate-not-after="false" />'
    )
    assert (await run(late, _ctx(svc, be, cases[2][0]))).status == 200
    # a certificate that names no revocation list: its status is unknown, which fails the check
    strict = pipeline(svc, inbound="<validate-client-certificate />")
    rej = await rejected(strict, _ctx(svc, be, good))
    assert rej.reason == "ClientCertificateRevocationUnknown" and "names no revocation list" in rej.message
    # ignore-error: the request carries on
    ignore = pipeline(
        svc, inbound='<validate-client-certificate validate-revocation="false" ignore-error="true" />'
    )
    assert (await run(ignore, _ctx(svc, be, None))).status == 200


async def test_identities() -> None:
    svc, be = _with_ca(service()), FakeBackend()
    _key, cert = TRUSTED.issue("client-a", client=True)
    thumb = cert.fingerprint(hashes.SHA1()).hex().upper()
    issuer_thumb = TRUSTED.cert.fingerprint(hashes.SHA1()).hex().upper()
    serial = format(cert.serial_number, "X")

    def policy(identities: str) -> str:
        return f'<validate-client-certificate validate-revocation="false"><identities>{identities}</identities></validate-client-certificate>'

    passing = [
        f'<identity thumbprint="{thumb.lower()}" />',
        f'<identity serial-number="{serial}" common-name="CLIENT-A" />',
        '<identity subject="CN=client-a" issuer-subject="CN=Contoso Clients CA" />',
        f'<identity issuer-thumbprint="{issuer_thumb}" />',
        '<identity thumbprint="00" /><identity common-name="client-a" />',  # one identity is enough
    ]
    for ids in passing:
        assert (await run(pipeline(svc, inbound=policy(ids)), _ctx(svc, be, cert))).status == 200, ids
    failing = [
        '<identity thumbprint="00" />',
        '<identity common-name="client-a" issuer-subject="CN=Other" />',  # every claim of one identity
        f'<identity issuer-thumbprint="{thumb}" />',
        '<identity dns-name="client-a.example" />',
    ]
    for ids in failing:
        rej = await rejected(pipeline(svc, inbound=policy(ids)), _ctx(svc, be, cert))
        assert rej.reason == "ClientCertificateIdentityMismatch", ids


async def test_expressions_see_the_certificate() -> None:
    svc, be = _with_ca(service()), FakeBackend()
    _key, cert = TRUSTED.issue("client-a", client=True)
    inbound = (
        '<set-header name="X-Thumb" exists-action="override"><value>@(context.Request.Certificate == null ? "none" : context.Request.Certificate.Thumbprint)</value></set-header>'
        '<set-header name="X-Subject" exists-action="override"><value>@(context.Request.Certificate?.Subject ?? "none")</value></set-header>'
        '<set-header name="X-Valid" exists-action="override"><value>@(context.Request.Certificate != null ? context.Request.Certificate.VerifyNoRevocation().ToString() : "none")</value></set-header>'
        '<set-header name="X-Verify" exists-action="override"><value>@(context.Request.Certificate != null ? context.Request.Certificate.Verify().ToString() : "none")</value></set-header>'
        '<set-header name="X-Until" exists-action="override"><value>@(context.Request.Certificate != null ? context.Request.Certificate.NotAfter.Year.ToString() : "none")</value></set-header>'
    )
    pipe = pipeline(svc, inbound=inbound)
    await run(pipe, _ctx(svc, be, cert))
    sent = {k.lower(): v for k, v in be.sent[-1].headers.items()}
    assert sent["x-thumb"] == cert.fingerprint(hashes.SHA1()).hex().upper()
    assert sent["x-subject"] == "CN=client-a"
    assert (sent["x-valid"], sent["x-verify"]) == ("True", "False")  # Verify() checks revocation
    assert sent["x-until"] == str(cert.not_valid_after_utc.year)
    await run(pipe, _ctx(svc, be, UNTRUSTED.issue("x", client=True)[1]))
    assert {k.lower(): v for k, v in be.sent[-1].headers.items()}["x-valid"] == "False"
    await run(pipe, _ctx(svc, be, None))
    sent = {k.lower(): v for k, v in be.sent[-1].headers.items()}
    assert sent["x-thumb"] == "none" and sent["x-subject"] == "none"


@pytest.mark.parametrize(
    ("xml", "says"),
    [
        ('<validate-client-certificate validate-trust="maybe" />', "validate-trust"),
        ('<validate-client-certificate colour="red" />', "colour"),
        (
            "<validate-client-certificate><identities><identity /></identities></validate-client-certificate>",
            "identity",
        ),
        (
            '<validate-client-certificate><identities><identity name="x" /></identities></validate-client-certificate>',
            "name",
        ),
        (
            "<validate-client-certificate><identities>"
            + '<identity thumbprint="a" />' * 11
            + "</identities></validate-client-certificate>",
            "at most 10",
        ),
        ("@(context.Request.Certificate.Colour)", "Colour"),
    ],
)
def test_documents_are_checked_when_saved(xml: str, says: str) -> None:
    if xml.startswith("@"):
        xml = f'<set-header name="x" exists-action="override"><value>{xml}</value></set-header>'
    doc = f"<policies><inbound>{xml}</inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"
    with pytest.raises(ArmError) as err:
        validate_policy_document(doc)
    assert err.value.status == 400 and says in err.value.message, err.value.message


class _Lists(BaseHTTPRequestHandler):
    crl = b""
    fetches = 0

    def do_GET(self) -> None:
        type(self).fetches += 1
        self.send_response(200 if self.path == "/contoso.crl" else 404)
        body = self.crl if self.path == "/contoso.crl" else b""
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def crl_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Lists)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/contoso.crl"
    server.shutdown()
    server.server_close()


def _issue_with_crl(name: str, url: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    point = x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(TRUSTED.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=4))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.CRLDistributionPoints([point]), critical=False)
        .sign(TRUSTED.key, hashes.SHA256())
    )


async def test_revocation_lists(crl_url: str) -> None:
    good, revoked = _issue_with_crl("client-ok", crl_url), _issue_with_crl("client-revoked", crl_url)
    now = dt.datetime.now(dt.UTC)
    entry = x509.RevokedCertificateBuilder().serial_number(revoked.serial_number).revocation_date(now).build()
    _Lists.crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(TRUSTED.cert.subject)
        .last_update(now - dt.timedelta(minutes=1))
        .next_update(now + dt.timedelta(hours=1))
        .add_revoked_certificate(entry)
        .sign(TRUSTED.key, hashes.SHA256())
        .public_bytes(Encoding.DER)
    )
    svc, be = _with_ca(service()), FakeBackend()
    verify = '<set-header name="X-Verify" exists-action="override"><value>@(context.Request.Certificate.Verify().ToString())</value></set-header>'
    pipe = pipeline(svc, inbound="<validate-client-certificate />" + verify)
    assert not pipe.fast  # the policy may wait for a list: served through ASGI
    assert (await run(pipe, _ctx(svc, be, good))).status == 200
    assert {k.lower(): v for k, v in be.sent[-1].headers.items()}[
        "x-verify"
    ] == "True"  # the list is held now
    rej = await rejected(pipe, _ctx(svc, be, revoked))
    assert (rej.status, rej.reason) == (401, "ClientCertificateRevoked") and "client-revoked" in rej.message
    assert _Lists.fetches == 1  # kept until its nextUpdate
    # without the revocation check, the same certificate passes (and the policy runs synchronously)
    lax = pipeline(svc, inbound='<validate-client-certificate validate-revocation="false" />')
    assert lax.fast and (await run(lax, _ctx(svc, be, revoked))).status == 200
