"""The backup/restore request body and the storage access it grants, per api-version.

The access key lives only in memory for the duration of the operation: it is never stored,
logged, or copied into an operation record (`BackupRequest.public()` is what gets recorded).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from portico.arm.errors import ArmError
from portico.arm.versions import requires_access_key
from portico.dr.promotion import RestoreOptions, parse_options
from portico.dr.storage.base import InvalidName, validate_blob_name
from portico.settings import Settings

ACCESS_TYPES = ("AccessKey", "SystemAssignedManagedIdentity", "UserAssignedManagedIdentity")
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")


def _invalid(param: str, message: str) -> ArmError:
    return ArmError(
        400, "InvalidParameters", f"Invalid parameter: {message}\r\nParameter name: {param}", target=param
    )


@dataclass(frozen=True)
class BackupRequest:
    storage_account: str
    container: str
    backup_name: str
    access_type: str
    access_key: str | None
    client_id: str | None
    encryption_key: bytes | None
    options: RestoreOptions = field(default_factory=RestoreOptions)

    def public(self) -> dict[str, Any]:
        return {
            "storageAccount": self.storage_account,
            "containerName": self.container,
            "backupName": self.backup_name,
            "accessType": self.access_type,
            "clientId": self.client_id,
            "encrypted": self.encryption_key is not None,
            **({"restoreOptions": self.options.public()} if self.options != RestoreOptions() else {}),
        }

    def __repr__(self) -> str:  # keys must not leak through logs or tracebacks
        return f"BackupRequest({self.public()!r})"


def check_backup_name(name: str) -> None:
    """A backup is one blob: its name must come back unchanged from every backend, so names the
    blob layer would refuse, and empty, '.' or '..' path segments (which file systems and URL
    normalisation fold away), are refused before any work starts."""
    try:
        validate_blob_name(name)
        if "" in name.split("/"):
            shown = repr(name if len(name) <= 80 else name[:80] + "...")
            raise InvalidName(f"invalid blob name {shown}: it contains an empty path segment")
    except InvalidName as exc:
        raise _invalid(
            "backupName",
            f"backupName: {exc}. A backup name is 1-1024 characters without control characters or "
            "'\\', in '/'-separated segments that are neither empty, '.' nor '..'.",
        ) from None


def parse_encryption_key(text: str, param: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(param, "The encryption key must be base64.") from None
    if len(key) != 32:
        raise _invalid(param, "The encryption key must be 32 bytes (AES-256), base64-encoded.")
    return key


def parse_request(
    body: Any, api_version: str, settings: Settings, *, need_name: bool = True
) -> BackupRequest:
    if not isinstance(body, dict):
        raise ArmError(
            400,
            "InvalidRequestContent",
            "The request body must be a JSON object with storageAccount, containerName and backupName.",
        )

    def text(field: str, required: bool) -> str | None:
        v = body.get(field)
        if v is None or v == "":
            if required:
                raise _invalid(field, f"'{field}' is required.")
            return None
        if not isinstance(v, str):
            raise _invalid(field, f"'{field}' must be a string.")
        return v

    account = text("storageAccount", True)
    container = text("containerName", True)
    name = text("backupName", need_name) or ""
    assert account and container
    if not _ACCOUNT.match(account):
        raise _invalid(
            "storageAccount",
            f"Storage account name '{account[:64]}' is invalid: 3-24 lowercase letters and digits.",
        )
    if not _CONTAINER.match(container):
        raise _invalid(
            "containerName",
            "The specified resource name contains invalid characters (3-63 lowercase letters, digits and single hyphens).",
        )
    if name:
        check_backup_name(name)
    access_type = "AccessKey"
    client_id = None
    if requires_access_key(api_version):
        key = text("accessKey", True)
    else:
        raw_type = text("accessType", False) or "AccessKey"
        match = next((t for t in ACCESS_TYPES if t.lower() == raw_type.lower()), None)
        if match is None:
            raise _invalid("accessType", f"'{raw_type[:40]}' is not one of {', '.join(ACCESS_TYPES)}.")
        access_type = match
        key = text("accessKey", access_type == "AccessKey")
        if access_type != "AccessKey" and key is not None:
            raise _invalid(
                "accessKey",
                f"accessKey must not be sent with accessType {access_type}: the service uses its own identity.",
            )
        client_id = text("clientId", access_type == "UserAssignedManagedIdentity")
    enc_text = text("encryptionKey", False)  # Portico extension; otherwise the server's key, if any
    if enc_text is not None:
        encryption_key: bytes | None = parse_encryption_key(enc_text, "encryptionKey")
    elif settings.backup_encryption_key is not None:
        encryption_key = parse_encryption_key(
            settings.backup_encryption_key.get_secret_value(), "PORTICO_BACKUP_ENCRYPTION_KEY"
        )
    else:
        encryption_key = None
    options = parse_options(body)
    return BackupRequest(account, container, name, access_type, key, client_id, encryption_key, options)


def check_identity(req: BackupRequest, identity: dict[str, Any] | None, service_name: str) -> None:
    """Managed-identity access needs the service to have that identity."""
    if req.access_type == "AccessKey":
        return
    kind = (identity or {}).get("type", "None")
    if req.access_type == "SystemAssignedManagedIdentity" and "SystemAssigned" not in kind:
        raise _invalid(
            "accessType",
            f"Service '{service_name}' has no system-assigned managed identity; set identity.type to SystemAssigned first.",
        )
    if req.access_type == "UserAssignedManagedIdentity":
        ids = [v.get("clientId") for v in ((identity or {}).get("userAssignedIdentities") or {}).values()]
        if req.client_id not in ids:
            raise _invalid(
                "clientId",
                f"No user-assigned identity with client id '{req.client_id}' is assigned to service '{service_name}'.",
            )


def managed_identity_credential(settings: Settings, account: str) -> tuple[str, str] | None:
    """The operator-configured credential for `account`: ("key"|"sas"|"default"|"trusted", value)."""
    raw = settings.managed_identity_credentials.get_secret_value()
    for part in raw.split(";"):
        if "=" not in part:
            continue
        name, cred = part.split("=", 1)
        if name.strip() != account:
            continue
        cred = cred.strip()
        if cred == "default":
            return ("default", "")
        if cred == "trusted":
            return ("trusted", "")
        kind, _, value = cred.partition(":")
        if kind in ("key", "sas") and value:
            return (kind, value)
    return None
