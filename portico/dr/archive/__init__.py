"""The Portico backup format: one blob per backup, streamed, checksummed, optionally encrypted.

Specified in docs/backup-format.md. Write with `write_backup`; read with `open_backup` (then
``reader.records()``) or `read_manifest`; check with `verify_backup`; list with `catalog_entry`
over blob metadata set from `catalog_metadata`.
"""

from portico.dr.archive.catalog import CATALOG_KEYS, catalog_entry, catalog_metadata, mark_verified
from portico.dr.archive.crypto import key_id
from portico.dr.archive.errors import (
    BackupFormatError,
    CorruptBackup,
    EncryptionKeyRequired,
    ManifestCorrupt,
    NotABackup,
    TruncatedBackup,
    UnsupportedFormatVersion,
    WrongEncryptionKey,
)
from portico.dr.archive.model import CatalogEntry, Encryption, Manifest, Record, Sku, VerifyReport
from portico.dr.archive.reader import (
    SUPPORTED_VERSIONS,
    BackupReader,
    open_backup,
    read_manifest,
    verify_backup,
)
from portico.dr.archive.writer import CURRENT_VERSION, write_backup

__all__ = [
    "CATALOG_KEYS",
    "CURRENT_VERSION",
    "SUPPORTED_VERSIONS",
    "BackupFormatError",
    "BackupReader",
    "CatalogEntry",
    "CorruptBackup",
    "Encryption",
    "EncryptionKeyRequired",
    "Manifest",
    "ManifestCorrupt",
    "NotABackup",
    "Record",
    "Sku",
    "TruncatedBackup",
    "UnsupportedFormatVersion",
    "VerifyReport",
    "WrongEncryptionKey",
    "catalog_entry",
    "catalog_metadata",
    "key_id",
    "mark_verified",
    "open_backup",
    "read_manifest",
    "verify_backup",
    "write_backup",
]
