"""Opening the caller's storage container for a backup request, with the access it grants."""

from __future__ import annotations

from typing import Any

from portico.dr.access import BackupRequest, managed_identity_credential
from portico.dr.storage import (
    AccountKey,
    BlobContainer,
    LocalTrusted,
    SasToken,
    TokenCredentialAuth,
    open_container,
)
from portico.jobs.runner import OperationFailed
from portico.settings import Settings


def open_request_container(settings: Settings, req: BackupRequest, failed_code: str) -> BlobContainer:
    credential: Any
    if req.access_type == "AccessKey":
        assert req.access_key is not None
        credential = AccountKey(req.storage_account, req.access_key)
    else:
        configured = managed_identity_credential(settings, req.storage_account)
        if configured is None:
            raise OperationFailed(
                failed_code,
                f"The service identity has no access to storage account '{req.storage_account}': the operator has not "
                "configured a credential for it (PORTICO_MANAGED_IDENTITY_CREDENTIALS).",
            )
        kind, value = configured
        if kind == "key":
            credential = AccountKey(req.storage_account, value)
        elif kind == "sas":
            credential = SasToken(req.storage_account, value)
        elif kind == "trusted":
            credential = LocalTrusted(req.storage_account)
        else:
            # Imported on first use: azure-identity adds about 0.15 s to every process start.
            from azure.identity.aio import DefaultAzureCredential

            credential = TokenCredentialAuth(req.storage_account, DefaultAzureCredential())
    return open_container(
        settings.storage_backend,
        account=req.storage_account,
        container=req.container,
        credential=credential,
        endpoint_template=settings.blob_endpoint_template,
        local_root=settings.data_dir / "storage",
    )
