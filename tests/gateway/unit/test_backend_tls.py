"""Client certificates and TLS checks for backends, without a server: the certificate table built
from `certificates` entities, each backend's TLS profile, `authentication-certificate` and
`set-backend-service` setting the profile a request is forwarded with, and the pool keeping
connections of different profiles apart."""

from __future__ import annotations

from typing import Any

from portico.gateway.config.certificates import backend_tls, certificate_table
from portico.gateway.context import Context
from portico.gateway.upstream import BackendTls, Connection, Upstream
from tests.gateway.unit.harness import FakeBackend, pipeline, rejected, request, run, service
from tests.support.certs import CertificateAuthority

CA = CertificateAuthority()
PFX, THUMB = CA.client_pfx("client-one", "pw")
PFX2, THUMB2 = CA.client_pfx("client-two", "pw2")
ROWS = {("", "one"): {"data": PFX, "password": "pw"}, ("", "two"): {"data": PFX2, "password": "pw2"}}


class RecordingBackend(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.profiles: list[BackendTls | None] = []

    def _answer(self, ctx: Context) -> None:
        self.profiles.append(ctx.backend_tls)
        super()._answer(ctx)


def _service(backends: dict[str, Any] | None = None) -> Any:
    svc = service(backends=backends)
    svc.certificates = certificate_table(ROWS, "contoso")
    svc.backend_tls = {k: backend_tls(b, svc.certificates) for k, b in svc.backends.items()}
    return svc


def test_certificate_table_and_backend_profiles() -> None:
    certs = certificate_table({**ROWS, ("", "bad"): {"data": PFX, "password": "wrong"}}, "contoso")
    assert set(certs.by_id) == {"one", "two"}  # a PFX that cannot be opened is left out (logged)
    one = certs.find(cert_id="/certificates/ONE")
    assert one is not None and one.thumbprint == THUMB and b"PRIVATE KEY" in one.pem
    assert certs.find(thumbprint=THUMB2.lower()) is certs.by_id["two"]
    assert "PRIVATE" not in repr(one)  # the key is never in repr
    assert backend_tls({"url": "https://x"}, certs) is None  # the default profile
    assert backend_tls({"tls": {"validateCertificateName": False}}, certs) == BackendTls(True, False, None)
    p = backend_tls({"credentials": {"certificateIds": ["/certificates/two"]}}, certs)
    assert isinstance(p, BackendTls) and p.client is certs.by_id["two"] and p.verify_chain
    p = backend_tls(
        {"credentials": {"certificate": [THUMB]}, "tls": {"validateCertificateChain": False}}, certs
    )
    assert p == BackendTls(False, True, certs.by_id["one"])
    assert "not found" in str(backend_tls({"credentials": {"certificateIds": ["/certificates/gone"]}}, certs))


async def test_policies_set_the_profile_a_request_is_forwarded_with() -> None:
    svc = _service({"be": {"url": "https://b.example", "tls": {"validateCertificateName": False}}})
    be = RecordingBackend()
    by_id = pipeline(svc, inbound='<authentication-certificate certificate-id="one" />')
    assert (await run(by_id, request(svc, be))).status == 200
    by_thumb = pipeline(svc, inbound=f'<authentication-certificate thumbprint="{THUMB2}" />')
    assert (await run(by_thumb, request(svc, be))).status == 200
    # a backend without a certificate of its own keeps the one the policy set, with its own checks
    both = pipeline(
        svc,
        inbound='<authentication-certificate certificate-id="one" /><set-backend-service backend-id="be" />',
    )
    assert (await run(both, request(svc, be))).status == 200
    plain = pipeline(svc, inbound="")
    assert (await run(plain, request(svc, be))).status == 200
    one, two = svc.certificates.by_id["one"], svc.certificates.by_id["two"]
    assert be.profiles == [BackendTls(client=one), BackendTls(client=two), BackendTls(True, False, one), None]
    missing = pipeline(svc, inbound='<authentication-certificate certificate-id="nope" />')
    rej = await rejected(missing, request(svc, be))
    assert (rej.status, rej.reason) == (500, "CertificateNotFound") and "nope" in rej.message


def test_pool_keeps_profiles_apart() -> None:
    pool = Upstream()
    key = ("https", "b.example", 443)
    client = certificate_table(ROWS, "contoso").by_id["one"]
    for tls in (None, BackendTls(client=client)):
        conn = Connection(key, tls)
        conn.body_done = True
        pool.release(conn)
    mtls = pool._pooled(key, BackendTls(client=client))
    assert mtls is not None and mtls.tls == BackendTls(client=client)
    assert pool._pooled(key, BackendTls(client=client)) is None
    assert pool._pooled(key, BackendTls(False, False, None)) is None  # unchecked ≠ checked
    plain = pool._pooled(key, None)
    assert plain is not None and plain.tls is None
