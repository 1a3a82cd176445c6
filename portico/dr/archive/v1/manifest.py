"""Format v1 manifest: the fields a writer fixes before the payload, and their validation on read."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from portico import __version__ as PORTICO_VERSION
from portico.dr.archive import crypto
from portico.dr.archive.envelope import FORMAT_NAME, HEADER_SIZE
from portico.dr.archive.errors import ManifestCorrupt, TruncatedBackup
from portico.dr.archive.model import Encryption, Manifest, Sku, format_time, parse_time
from portico.dr.archive.v1.payload import COMPRESSION
from portico.dr.archive.v1.records import PAYLOAD_FIELDS, canonical_json

VERSION = 1

REQUIRED_INPUT = (
    "source_service_id",
    "source_service_name",
    "sku",
    "location",
    "snapshot_time",
    "expires_at",
)
RESERVED = (
    "format",
    "format_version",
    "record_count",
    "counts",
    "payload_offset",
    "compression",
    "compression_level",
    "encryption",
    *PAYLOAD_FIELDS,
)


_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")


def build_manifest_base(
    given: Mapping[str, Any], *, encryption: dict[str, Any] | None, compression_level: int
) -> dict[str, Any]:
    """The manifest fields known before the payload is written, validated and normalised."""
    if not isinstance(given, Mapping):
        raise TypeError("manifest must be a mapping")
    missing = [k for k in REQUIRED_INPUT if k not in given]
    if missing:
        raise ValueError(f"manifest is missing {', '.join(missing)}")
    clash = [k for k in RESERVED if k in given]
    if clash:
        raise ValueError(f"manifest fields {', '.join(clash)} are set by the backup writer")
    sku = given["sku"]
    if (
        not isinstance(sku, Mapping)
        or not isinstance(sku.get("name"), str)
        or isinstance(sku.get("capacity"), bool)
    ):
        raise ValueError("manifest sku must be {'name': str, 'capacity': int}")
    try:
        capacity = int(sku.get("capacity", 1))
    except (TypeError, ValueError):
        raise ValueError("manifest sku capacity must be an integer") from None
    for k in ("source_service_id", "source_service_name", "location"):
        if not isinstance(given[k], str):
            raise ValueError(f"manifest {k} must be a string")
    base: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": VERSION,
        "portico_version": str(given.get("portico_version") or PORTICO_VERSION),
        "source_service_id": given["source_service_id"],
        "source_service_name": given["source_service_name"],
        "sku": {"name": sku["name"], "capacity": capacity},
        "location": given["location"],
        "snapshot_time": format_time(given["snapshot_time"]),
        "expires_at": format_time(given["expires_at"]),
    }
    if "created_at" in given:
        base["created_at"] = format_time(given["created_at"])
    for k, v in given.items():
        if k not in base and k != "created_at":
            base[k] = v
    try:
        canonical_json(base)
    except TypeError as e:
        raise ValueError(f"manifest is not JSON-serialisable: {e}") from None
    base["payload_offset"] = HEADER_SIZE
    base["compression"] = COMPRESSION
    base["compression_level"] = compression_level
    base["encryption"] = encryption
    return base


_KNOWN = {
    "format",
    "format_version",
    "portico_version",
    "source_service_id",
    "source_service_name",
    "sku",
    "location",
    "snapshot_time",
    "expires_at",
    "created_at",
    "record_count",
    "counts",
    "payload_offset",
    "payload_size",
    "payload_sha256",
    "plaintext_size",
    "plaintext_sha256",
    "compression",
    "compression_level",
    "encryption",
}


def parse_manifest(doc: dict[str, Any], *, blob_size: int, manifest_offset: int) -> Manifest:
    """Validate a v1 manifest; raise `ManifestCorrupt` naming the first bad field."""

    def bad(field: str, why: str) -> ManifestCorrupt:
        return ManifestCorrupt(f"the backup manifest is invalid: {field} {why}")

    def get(field: str, typ: type | tuple[type, ...]) -> Any:
        if field not in doc:
            raise bad(field, "is missing")
        v = doc[field]
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise bad(field, "has the wrong type")
        return v

    def nonneg(field: str) -> int:
        v = get(field, int)
        if v < 0:
            raise bad(field, "is negative")
        return int(v)

    def time(field: str) -> datetime:
        try:
            return parse_time(get(field, str))
        except ValueError:
            raise bad(field, "is not an ISO 8601 timestamp") from None

    def digest(field: str) -> str:
        v = get(field, str)
        if not _HEX64.match(v):
            raise bad(field, "is not a SHA-256 hex digest")
        return str(v)

    sku = get("sku", dict)
    if not isinstance(sku.get("name"), str) or not isinstance(sku.get("capacity"), int):
        raise bad("sku", "must be {name, capacity}")
    counts = get("counts", dict)
    if not all(isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in counts.items()):
        raise bad("counts", "must map kinds to counts")
    record_count = nonneg("record_count")
    if sum(counts.values()) != record_count:
        raise bad("record_count", "does not equal the sum of counts")
    if get("compression", str) != COMPRESSION:
        raise bad("compression", f"{doc['compression']!r} is not supported")
    payload_offset = nonneg("payload_offset")
    payload_size = nonneg("payload_size")
    if payload_offset != HEADER_SIZE:
        raise bad("payload_offset", "is not 16")
    if payload_offset + payload_size != manifest_offset:
        raise TruncatedBackup(
            f"the backup's size ({blob_size} bytes) does not match its manifest: the blob is truncated or damaged"
        )
    encryption = None
    enc = doc.get("encryption")
    if enc is not None:
        if not isinstance(enc, dict):
            raise bad("encryption", "must be an object or null")
        if enc.get("alg") != crypto.ALG or enc.get("kdf") != crypto.KDF:
            raise bad("encryption", f"algorithm {enc.get('alg')!r}/{enc.get('kdf')!r} is not supported")
        try:
            salt = base64.b64decode(enc.get("salt", ""), validate=True)
            prefix = base64.b64decode(enc.get("nonce_prefix", ""), validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise bad("encryption", "salt or nonce_prefix is not base64") from None
        seg = enc.get("segment_size")
        kid = enc.get("key_id")
        if len(salt) != crypto.SALT_SIZE or len(prefix) != crypto.NONCE_PREFIX_SIZE:
            raise bad("encryption", "salt or nonce_prefix has the wrong length")
        if not isinstance(seg, int) or not crypto.MIN_SEGMENT_SIZE <= seg <= crypto.MAX_SEGMENT_SIZE:
            raise bad("encryption", "segment_size is out of range")
        if not isinstance(kid, str) or not _HEX16.match(kid):
            raise bad("encryption", "key_id is not a 16-digit hex fingerprint")
        encryption = Encryption(crypto.ALG, crypto.KDF, kid, salt, prefix, seg)
    return Manifest(
        format_version=VERSION,
        portico_version=get("portico_version", str),
        source_service_id=get("source_service_id", str),
        source_service_name=get("source_service_name", str),
        sku=Sku(sku["name"], int(sku["capacity"])),
        location=get("location", str),
        snapshot_time=time("snapshot_time"),
        expires_at=time("expires_at"),
        created_at=time("created_at"),
        record_count=record_count,
        counts={str(k): int(v) for k, v in counts.items()},
        payload_offset=payload_offset,
        payload_size=payload_size,
        payload_sha256=digest("payload_sha256"),
        plaintext_size=nonneg("plaintext_size"),
        plaintext_sha256=digest("plaintext_sha256"),
        compression=COMPRESSION,
        encryption=encryption,
        extra={k: v for k, v in doc.items() if k not in _KNOWN},
        raw=dict(doc),
        blob_size=blob_size,
    )


def new_encryption(key: bytes, segment_size: int) -> dict[str, Any]:
    crypto.check_key(key)
    if not crypto.MIN_SEGMENT_SIZE <= segment_size <= crypto.MAX_SEGMENT_SIZE:
        raise ValueError("segment_size is out of range")
    return {
        "alg": crypto.ALG,
        "kdf": crypto.KDF,
        "key_id": crypto.key_id(key),
        "salt": base64.b64encode(crypto.new_salt()).decode(),
        "nonce_prefix": base64.b64encode(crypto.new_nonce_prefix()).decode(),
        "segment_size": segment_size,
    }
