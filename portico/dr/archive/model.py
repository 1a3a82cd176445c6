"""Records, the manifest and the reports of the backup format (shared by all format versions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from portico.dr.archive.errors import BackupFormatError


class Record(NamedTuple):
    """One entity row of a service, carried as stored (its JSON bytes are never parsed).

    A NamedTuple rather than a dataclass: hundreds of thousands are made per backup and restore,
    and a tuple is ten times cheaper to build. Database driver rows in the same field order
    are accepted wherever records are."""

    kind: str  # "service", "api", "operation", "policy", "user", "subscription", "productApi", ...
    parent: str  # "" or a relative path like "apis/echo"
    name: str
    display_name: str | None
    etag: str
    data: bytes  # the entity's JSON exactly as stored


@dataclass(frozen=True)
class Sku:
    name: str
    capacity: int


@dataclass(frozen=True)
class Encryption:
    """How the payload is encrypted. Holds no secret: `key_id` is a fingerprint of the key."""

    alg: str
    kdf: str
    key_id: str
    salt: bytes = field(repr=False)
    nonce_prefix: bytes = field(repr=False)
    segment_size: int


def format_time(value: datetime | str) -> str:
    """ISO 8601 in UTC with a ``Z``, microsecond precision: ``2024-05-01T12:00:00.000000Z``."""
    dt = parse_time(value) if isinstance(value, str) else value
    if not isinstance(dt, datetime) or dt.tzinfo is None:
        raise ValueError(
            f"timestamp {value!r} must be a timezone-aware datetime or ISO 8601 string with offset"
        )
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return dt.astimezone(UTC)


@dataclass(frozen=True)
class Manifest:
    """What a backup says about itself (the JSON trailer of the blob), typed.

    `to_dict()` gives the JSON object exactly as stored; unknown top-level fields (a caller's
    extras, or fields added by later releases within the same format version) are kept in `extra`.
    """

    format_version: int
    portico_version: str
    source_service_id: str
    source_service_name: str
    sku: Sku
    location: str
    snapshot_time: datetime
    expires_at: datetime
    created_at: datetime
    record_count: int
    counts: dict[str, int]
    payload_offset: int
    payload_size: int
    payload_sha256: str
    plaintext_size: int
    plaintext_sha256: str
    compression: str
    encryption: Encryption | None
    extra: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    blob_size: int | None = None
    """Size of the whole blob (not stored in the manifest itself)."""

    @property
    def encrypted(self) -> bool:
        return self.encryption is not None

    @property
    def key_id(self) -> str | None:
        return self.encryption.key_id if self.encryption else None

    def is_expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        """The manifest JSON object exactly as stored in the blob."""
        return dict(self.raw)

    as_dict = to_dict


@dataclass(frozen=True)
class CatalogEntry:
    """A backup as the catalog lists it, from blob metadata alone (no read of the blob)."""

    blob_name: str
    format_version: int
    service_name: str
    service_id: str
    sku_name: str
    sku_capacity: int
    location: str
    created_at: datetime
    snapshot_time: datetime
    expires_at: datetime
    size: int
    encrypted: bool
    key_id: str | None
    record_count: int
    portico_version: str
    last_modified: datetime | None = None
    verified_at: datetime | None = None
    """When `mark_verified` last recorded a successful `verify_backup`."""

    def is_expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires_at

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """JSON for API answers (camelCase; times ISO 8601 UTC; `expired` as of `now`)."""

        def t(dt: datetime | None) -> str | None:
            return None if dt is None else format_time(dt)

        return {
            "name": self.blob_name,
            "formatVersion": self.format_version,
            "service": self.service_name,
            "serviceId": self.service_id,
            "sku": {"name": self.sku_name, "capacity": self.sku_capacity},
            "location": self.location,
            "created": t(self.created_at),
            "snapshotTime": t(self.snapshot_time),
            "expires": t(self.expires_at),
            "expired": self.is_expired(now),
            "size": self.size,
            "encrypted": self.encrypted,
            "keyId": self.key_id,
            "recordCount": self.record_count,
            "porticoVersion": self.portico_version,
            "lastModified": t(self.last_modified),
            "verified": t(self.verified_at),
        }

    as_dict = to_dict


@dataclass
class VerifyReport:
    """The outcome of `verify_backup`: `ok`, or the `error` (a `BackupFormatError`) that failed it."""

    blob_name: str
    ok: bool
    manifest: Manifest | None = None
    payload_verified: bool = False
    """The stored payload matches `payload_sha256` (needs no key)."""
    contents_verified: bool = False
    """Every record was decoded and the plaintext digest, counts and sealed manifest match."""
    record_count: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    error: BackupFormatError | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        if self.error is not None:
            return self.error.message
        if self.contents_verified:
            return f"backup is intact: {self.record_count} records verified"
        return "stored payload is intact; contents not decoded (" + "; ".join(self.notes) + ")"

    def raise_for_error(self) -> None:
        if self.error is not None:
            raise self.error

    def to_dict(self) -> dict[str, Any]:
        return {
            "blobName": self.blob_name,
            "ok": self.ok,
            "payloadVerified": self.payload_verified,
            "contentsVerified": self.contents_verified,
            "recordCount": self.record_count,
            "counts": dict(self.counts),
            "error": None if self.error is None else {"code": self.error.code, "message": self.error.message},
            "message": self.message,
        }

    as_dict = to_dict


def count_mapping(value: Mapping[str, int]) -> dict[str, int]:
    return {str(k): int(v) for k, v in value.items()}
