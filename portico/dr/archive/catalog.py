"""Blob metadata that lets a catalog list backups without reading them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from portico.dr.archive.envelope import FORMAT_NAME
from portico.dr.archive.model import CatalogEntry, Manifest, format_time, parse_time
from portico.dr.storage.base import BlobContainer, BlobInfo

# Printable ASCII except "%": values are percent-encoded (UTF-8) outside this set, reversibly.
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")

CATALOG_KEYS = (
    "portico_format",
    "format_version",
    "portico_version",
    "service",
    "service_id",
    "sku",
    "sku_capacity",
    "location",
    "created",
    "snapshot",
    "expires",
    "size",
    "encrypted",
    "key_id",
    "record_count",
    "verified",
)


def _value(text: str) -> str:
    v = quote(text, safe=_SAFE)
    if v.startswith(" "):
        v = "%20" + v[1:]
    if v.endswith(" "):
        v = v[:-1] + "%20"
    return v


def catalog_metadata(manifest: Manifest | Mapping[str, Any]) -> dict[str, str]:
    """Blob metadata (Azure rules: identifier keys, printable-ASCII values) summarising a backup.

    `write_backup` sets it when it commits the blob. Keys: `CATALOG_KEYS` (``verified`` is added
    by `mark_verified`). Times are ISO 8601 UTC, ``size`` is the blob's size in bytes (absent when
    given a manifest dict, which does not know it), text is percent-encoded beyond printable ASCII.
    """
    if isinstance(manifest, Manifest):
        m = manifest
        fields: dict[str, Any] = {
            "format_version": m.format_version,
            "portico_version": m.portico_version,
            "service": m.source_service_name,
            "service_id": m.source_service_id,
            "sku": m.sku.name,
            "sku_capacity": m.sku.capacity,
            "location": m.location,
            "created": format_time(m.created_at),
            "snapshot": format_time(m.snapshot_time),
            "expires": format_time(m.expires_at),
            "size": m.blob_size,
            "encrypted": m.encrypted,
            "key_id": m.key_id,
            "record_count": m.record_count,
        }
    else:
        d = manifest
        enc = d.get("encryption") or None
        sku = d.get("sku") or {}
        fields = {
            "format_version": d.get("format_version"),
            "portico_version": d.get("portico_version"),
            "service": d.get("source_service_name"),
            "service_id": d.get("source_service_id"),
            "sku": sku.get("name"),
            "sku_capacity": sku.get("capacity"),
            "location": d.get("location"),
            "created": d.get("created_at") and format_time(d["created_at"]),
            "snapshot": d.get("snapshot_time") and format_time(d["snapshot_time"]),
            "expires": d.get("expires_at") and format_time(d["expires_at"]),
            "size": d.get("blob_size"),
            "encrypted": enc is not None,
            "key_id": enc.get("key_id") if isinstance(enc, Mapping) else None,
            "record_count": d.get("record_count"),
        }
    md = {"portico_format": FORMAT_NAME}
    for key, value in fields.items():
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            md[key] = "true" if value else "false"
        else:
            md[key] = _value(str(value))
    return md


def catalog_entry(info: BlobInfo) -> CatalogEntry | None:
    """The catalog entry of a listed blob, or None when its metadata is not a Portico backup's."""
    md: Mapping[str, str] = {k.lower(): v for k, v in info.metadata.items()}
    if md.get("portico_format") != FORMAT_NAME:
        return None
    try:
        return CatalogEntry(
            blob_name=info.name,
            format_version=int(md["format_version"]),
            service_name=unquote(md["service"]),
            service_id=unquote(md.get("service_id", "")),
            sku_name=unquote(md["sku"]),
            sku_capacity=int(md.get("sku_capacity", "1")),
            location=unquote(md.get("location", "")),
            created_at=parse_time(md["created"]),
            snapshot_time=parse_time(md.get("snapshot", md["created"])),
            expires_at=parse_time(md["expires"]),
            size=int(md.get("size", info.size)),
            encrypted=md.get("encrypted") == "true",
            key_id=md.get("key_id"),
            record_count=int(md.get("record_count", "0")),
            portico_version=unquote(md.get("portico_version", "")),
            last_modified=info.last_modified,
            verified_at=parse_time(md["verified"]) if md.get("verified") else None,
        )
    except (KeyError, ValueError):
        return None


async def mark_verified(container: BlobContainer, name: str, when: datetime | None = None) -> None:
    """Record in the blob's metadata that it was verified (after an ``ok`` `verify_backup`)."""
    info = await container.get_info(name)
    md = dict(info.metadata)
    for k in [k for k in md if k.lower() == "verified"]:
        del md[k]
    md["verified"] = format_time(when or datetime.now(UTC))
    await container.set_metadata(name, md)
