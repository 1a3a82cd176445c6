"""Key Vault references: reading the secret a certificate or named value names in
`properties.keyVault.secretIdentifier`, with the credential the node is configured with.

Azure API Management reads the secret with the service's managed identity (`identityClientId`
names a user-assigned one). Portico is self-hosted: it reads with one configured credential
(`PORTICO_KEYVAULT_*`, portico/settings.py) through the Key Vault SDK (azure-keyvault-secrets), so
any endpoint speaking Key Vault's REST API serves. Error messages name the cause, never the secret.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import AzureAuthorityHosts, ClientSecretCredential, DefaultAzureCredential
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import NoEncryption, load_pem_private_key, pkcs12

from portico.arm.errors import ArmError, invalid_field
from portico.settings import Settings

PFX_CONTENT_TYPE = "application/x-pkcs12"
PEM_CONTENT_TYPE = "application/x-pem-file"
NAMED_VALUE_MAX = 4096  # the longest value a named value holds (models.NamedValueProps)
_PEM_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S)
_ENTRA_HOSTS = {
    h.rstrip("/").casefold()
    for h in (
        AzureAuthorityHosts.AZURE_PUBLIC_CLOUD,
        AzureAuthorityHosts.AZURE_CHINA,
        AzureAuthorityHosts.AZURE_GOVERNMENT,
    )
}


@dataclass(frozen=True)
class SecretRef:
    vault_url: str
    name: str
    version: str | None  # None: the latest version, read again at each refresh


@dataclass(frozen=True)
class Fetched:
    value: str
    content_type: str | None
    version: str | None


class KeyVaultFailure(Exception):
    """A secret could not be read: `code` is what `keyVault.lastStatus.code` shows, `message` the
    cause in words (no secret text)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def arm_error(self, field: str) -> ArmError:
        return ArmError(
            400,
            "KeyVaultSecretUnavailable",
            f"{field}: the Key Vault secret could not be read: {self.message}",
            target=field,
        )


def now_utc() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def status(code: str = "Success", message: str | None = None) -> dict[str, Any]:
    """A `keyVault.lastStatus` object."""
    out: dict[str, Any] = {"code": code, "timeStampUtc": now_utc()}
    if message:
        out["message"] = message
    return out


def parse_identifier(identifier: Any, field: str = "properties.keyVault.secretIdentifier") -> SecretRef:
    """`https://{vault}/secrets/{name}[/{version}]`; 400 naming `field` otherwise."""
    if not isinstance(identifier, str) or not identifier:
        raise invalid_field(field, "is required: the URL of a Key Vault secret")
    parts = urlsplit(identifier)
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme != "https" or not parts.hostname:
        raise invalid_field(field, "must be an https URL of a Key Vault secret")
    if len(segments) not in (2, 3) or segments[0].casefold() != "secrets" or parts.query or parts.fragment:
        raise invalid_field(
            field, "must be https://{vault}/secrets/{name} or https://{vault}/secrets/{name}/{version}"
        )
    version = segments[2] if len(segments) == 3 else None
    return SecretRef(f"https://{parts.netloc}", segments[1], version)


def certificate_material(fetched: Fetched) -> dict[str, str]:
    """The certificate entity's stored fields for a secret Key Vault holds a certificate in (a PFX
    as base64, or PEM with the private key): `data` (a PFX without password, as the gateway reads
    uploaded ones), subject, thumbprint, expirationDate."""
    text = fetched.value.strip()
    pem = fetched.content_type == PEM_CONTENT_TYPE or (
        fetched.content_type != PFX_CONTENT_TYPE and text.startswith("-----BEGIN")
    )
    if pem:
        return _from_pem(text.encode())
    try:
        raw = base64.b64decode(text, validate=True)
        _key, cert, _chain = pkcs12.load_key_and_certificates(raw, None)
    except (binascii.Error, ValueError):
        raise KeyVaultFailure(
            "InvalidSecret",
            "the secret is not a certificate (expected a PFX without password, content type "
            f"{PFX_CONTENT_TYPE}, or PEM, {PEM_CONTENT_TYPE})",
        ) from None
    if cert is None:
        raise KeyVaultFailure("InvalidSecret", "the PFX in the secret holds no certificate")
    return {"data": text, **_facts(cert)}


def _from_pem(raw: bytes) -> dict[str, str]:
    try:
        certs = x509.load_pem_x509_certificates(raw)
    except ValueError:
        raise KeyVaultFailure("InvalidSecret", "the PEM secret holds no certificate") from None
    match = _PEM_KEY.search(raw)
    try:
        key = load_pem_private_key(match.group(0), None) if match else None
    except (ValueError, TypeError):
        raise KeyVaultFailure(
            "InvalidSecret", "the PEM secret's private key cannot be read (encrypted or malformed)"
        ) from None
    cert, chain = certs[0], certs[1:]
    pfx = pkcs12.serialize_key_and_certificates(
        b"keyvault",
        key,  # type: ignore[arg-type]
        cert,
        chain or None,
        NoEncryption(),
    )
    return {"data": base64.b64encode(pfx).decode(), **_facts(cert)}


def _facts(cert: x509.Certificate) -> dict[str, str]:
    return {
        "subject": cert.subject.rfc4514_string(),
        "thumbprint": cert.fingerprint(hashes.SHA1()).hex().upper(),
        "expirationDate": cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
    }


def named_value_material(fetched: Fetched) -> dict[str, Any]:
    if len(fetched.value) > NAMED_VALUE_MAX:
        raise KeyVaultFailure(
            "InvalidSecret", f"the secret is longer than the {NAMED_VALUE_MAX} characters a named value holds"
        )
    return {"value": fetched.value, "secret": True}


def material(kind: str, fetched: Fetched) -> dict[str, Any]:
    """The stored fields of an entity of `kind` (certificate or namedValue) that hold `fetched`."""
    return certificate_material(fetched) if kind == "certificate" else named_value_material(fetched)


class KeyVaultAccess:
    """Reads secrets with the configured credential. The SDK's synchronous client runs in a worker
    thread (its asynchronous transport would need aiohttp, which Portico does not otherwise use)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._credentials: dict[str, TokenCredential] = {}
        self._lock = threading.Lock()

    def _client_secret_configured(self) -> bool:
        s = self._settings
        given = [bool(s.keyvault_tenant_id), bool(s.keyvault_client_id), s.keyvault_client_secret is not None]
        if any(given) and not all(given):
            raise KeyVaultFailure(
                "CredentialNotConfigured",
                "PORTICO_KEYVAULT_TENANT_ID, PORTICO_KEYVAULT_CLIENT_ID and PORTICO_KEYVAULT_CLIENT_SECRET "
                "must be set together",
            )
        return all(given)

    def check_configuration(self) -> None:
        """KeyVaultFailure when the PORTICO_KEYVAULT_* credential settings are incomplete."""
        self._client_secret_configured()

    def _identity_problem(self, identity_client_id: str | None) -> str | None:
        client_secret = self._client_secret_configured()
        configured = self._settings.keyvault_client_id or ""
        if client_secret and identity_client_id and identity_client_id.casefold() != configured.casefold():
            return (
                f"identity '{identity_client_id[:100]}' cannot be used: Portico reads Key Vault as the "
                "client of PORTICO_KEYVAULT_CLIENT_ID; leave identityClientId out or give that client id"
            )
        return None

    def check_identity(self, identity_client_id: str | None, field: str) -> None:
        """400 when `identityClientId` names an identity this node cannot read secrets as. With a
        client-secret credential, the only identity is that client; with DefaultAzureCredential, the
        id selects the user-assigned managed (or workload) identity, as in Azure."""
        try:
            problem = self._identity_problem(identity_client_id)
        except KeyVaultFailure as exc:
            raise exc.arm_error(field) from None
        if problem:
            raise invalid_field(field, problem)

    def _credential(self, identity_client_id: str | None) -> TokenCredential:
        key = (identity_client_id or "").casefold()
        with self._lock:
            cred = self._credentials.get(key)
            if cred is None:
                cred = self._credentials[key] = self._new_credential(identity_client_id)
            return cred

    def _transport_options(self) -> dict[str, Any]:
        s = self._settings
        out: dict[str, Any] = {
            "connection_timeout": s.keyvault_timeout_seconds,
            "read_timeout": s.keyvault_timeout_seconds,
            "retry_total": 1,
        }
        if s.keyvault_ca_bundle is not None:
            out["connection_verify"] = str(s.keyvault_ca_bundle)
        return out

    def _new_credential(self, identity_client_id: str | None) -> TokenCredential:
        s = self._settings
        if self._client_secret_configured():
            assert s.keyvault_tenant_id and s.keyvault_client_id and s.keyvault_client_secret
            authority = (s.keyvault_authority_host or AzureAuthorityHosts.AZURE_PUBLIC_CLOUD).rstrip("/")
            return ClientSecretCredential(
                s.keyvault_tenant_id,
                s.keyvault_client_id,
                s.keyvault_client_secret.get_secret_value(),
                authority=authority,
                # An authority outside Entra's clouds (Portico's own issuer, another compatible
                # one) is not in Entra's instance-discovery list; it is trusted by configuration.
                disable_instance_discovery=authority.casefold() not in _ENTRA_HOSTS,
                **self._transport_options(),
            )
        return DefaultAzureCredential(
            managed_identity_client_id=identity_client_id,
            workload_identity_client_id=identity_client_id,
            exclude_interactive_browser_credential=True,
        )

    def _read(self, ref: SecretRef, identity_client_id: str | None) -> Fetched:
        client = SecretClient(
            ref.vault_url,
            self._credential(identity_client_id),
            # The SDK checks that the vault's challenge names a resource of the vault's own domain
            # (a *.vault.azure.net vault asks for https://vault.azure.net), so a look-alike host
            # cannot obtain a token for real vaults. A self-hosted vault endpoint's domain never
            # matches Key Vault's resource, so the check can be turned off for such deployments.
            verify_challenge_resource=self._settings.keyvault_verify_challenge_resource,
            **self._transport_options(),
        )
        with client:
            secret = client.get_secret(ref.name, ref.version)
        if secret.value is None:
            raise KeyVaultFailure("InvalidSecret", "the secret has no value")
        return Fetched(secret.value, secret.properties.content_type, secret.properties.version)

    async def fetch(
        self,
        identifier: Any,
        identity_client_id: str | None,
        field: str = "properties.keyVault.secretIdentifier",
    ) -> Fetched:
        """The secret `identifier` names (400 naming `field` when it is no secret identifier);
        KeyVaultFailure naming the cause when it cannot be read."""
        ref = parse_identifier(identifier, field)
        try:
            problem = self._identity_problem(identity_client_id)
            if problem:
                raise KeyVaultFailure("IdentityNotAvailable", problem)
            return await asyncio.to_thread(self._read, ref, identity_client_id)
        except KeyVaultFailure:
            raise
        except ResourceNotFoundError:
            raise KeyVaultFailure(
                "SecretNotFound", f"secret '{ref.name}' (version {ref.version or 'latest'}) was not found"
            ) from None
        except ClientAuthenticationError as exc:
            status_code = getattr(exc, "status_code", None)
            if status_code in (401, 403):
                raise KeyVaultFailure(
                    "Forbidden", f"the vault refused Portico's identity (HTTP {status_code})"
                ) from None
            how = (
                "the PORTICO_KEYVAULT_* client credential"
                if self._client_secret_configured()
                else "DefaultAzureCredential (PORTICO_KEYVAULT_* unset)"
            )
            raise KeyVaultFailure(
                "Unauthorized", f"no token for the vault could be obtained with {how}"
            ) from None
        except (ServiceRequestError, ServiceResponseError):
            raise KeyVaultFailure(
                "VaultUnreachable", f"the vault {ref.vault_url} could not be reached"
            ) from None
        except HttpResponseError as exc:
            if exc.status_code == 403:
                raise KeyVaultFailure(
                    "Forbidden",
                    f"the vault refused Portico's identity access to the secret ({_error_code(exc)})",
                ) from None
            raise KeyVaultFailure(
                "VaultError", f"the vault answered HTTP {exc.status_code} ({_error_code(exc)})"
            ) from None
        except ValueError as exc:
            if "challenge" in str(exc):  # it named another resource than the vault's domain
                raise KeyVaultFailure(
                    "InvalidChallenge",
                    "the vault's authentication challenge names a resource outside the vault's domain "
                    "(see PORTICO_KEYVAULT_VERIFY_CHALLENGE_RESOURCE)",
                ) from None
            raise KeyVaultFailure(
                "InvalidConfiguration", "the Key Vault client refused the vault address or the authority"
            ) from None

    def close(self) -> None:
        with self._lock:
            for cred in self._credentials.values():
                close = getattr(cred, "close", None)
                if close is not None:
                    close()
            self._credentials.clear()


def _error_code(exc: HttpResponseError) -> str:
    err = exc.error
    code = getattr(err, "code", None) if err is not None else None
    return str(code)[:100] if code else "no error code"
