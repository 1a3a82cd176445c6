"""Errors of the backup format. Every one says what is wrong in words an operator can act on."""

from __future__ import annotations


class BackupFormatError(Exception):
    """Base of every backup-format failure. `code` is a stable identifier for API error bodies."""

    code = "BackupFormatError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class NotABackup(BackupFormatError):
    """The blob does not start (or end) like a Portico backup."""

    code = "NotAPorticoBackup"


class CorruptBackup(BackupFormatError):
    """The blob is a Portico backup but fails an integrity check (checksum, structure, tag)."""

    code = "CorruptBackup"


class TruncatedBackup(CorruptBackup):
    """The blob ends early: an incomplete upload or a cut copy."""

    code = "TruncatedBackup"


class ManifestCorrupt(CorruptBackup):
    """The manifest (trailer) is damaged: CRC mismatch, bad JSON or invalid fields."""

    code = "CorruptBackupManifest"


class UnsupportedFormatVersion(BackupFormatError):
    """The backup was written in a format version this Portico cannot read (a newer one)."""

    code = "UnsupportedBackupFormatVersion"

    def __init__(self, message: str, version: int) -> None:
        super().__init__(message)
        self.version = version


class EncryptionKeyRequired(BackupFormatError):
    """The backup is encrypted and no key was given."""

    code = "BackupEncryptionKeyRequired"


class WrongEncryptionKey(BackupFormatError):
    """The key given is not the one the backup was encrypted with."""

    code = "WrongBackupEncryptionKey"
