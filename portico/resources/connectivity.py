"""connectivityCheck: probes a destination from this Portico node, as Azure probes it from the
service's gateway, over TCP or HTTP(S); three probes, latencies in milliseconds."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from portico.arm.errors import invalid_field

PROBES = 3
TIMEOUT = 5.0


def parse(body: Any) -> tuple[str, int, str, dict[str, Any]]:
    """(address, port, protocol, http configuration) of a request body; 400 naming the field."""
    if not isinstance(body, dict):
        raise invalid_field("destination", "is required")
    dest = body.get("destination")
    if not isinstance(dest, dict) or not isinstance(dest.get("address"), str) or not dest["address"]:
        raise invalid_field("destination.address", "is required")
    port = dest.get("port")
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise invalid_field("destination.port", "must be an integer from 1 to 65535")
    protocol = body.get("protocol") or "TCP"
    if protocol not in ("TCP", "HTTP", "HTTPS"):
        raise invalid_field("protocol", "must be TCP, HTTP or HTTPS")
    if body.get("preferredIPVersion") not in (None, "IPv4"):
        raise invalid_field("preferredIPVersion", "only IPv4 is supported")
    http = ((body.get("protocolConfiguration") or {}).get("HTTPConfiguration")) or {}
    if http.get("method", "GET") not in ("GET", "POST"):
        raise invalid_field("protocolConfiguration.HTTPConfiguration.method", "must be GET or POST")
    return dest["address"], port, protocol, http


async def _probe(
    address: str, port: int, protocol: str, http: dict[str, Any]
) -> tuple[float | None, str | None]:
    start = time.perf_counter()
    try:
        if protocol == "TCP":
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), TIMEOUT)
            writer.close()
        else:
            host = address if "://" not in address else address.split("://", 1)[1].split("/", 1)[0]
            url = f"{protocol.lower()}://{host}:{port}/"
            headers = {
                h["name"]: h["value"] for h in http.get("headers") or [] if "name" in h and "value" in h
            }
            async with httpx.AsyncClient(timeout=TIMEOUT, verify=True) as client:
                r = await client.request(http.get("method", "GET"), url, headers=headers)
            valid = http.get("validStatusCodes") or list(range(200, 400))
            if r.status_code not in valid:
                return None, f"status {r.status_code} is not among the valid status codes"
    except (OSError, TimeoutError, httpx.HTTPError) as exc:
        return None, type(exc).__name__
    return (time.perf_counter() - start) * 1000, None


async def check(body: Any) -> dict[str, Any]:
    address, port, protocol, http = parse(body)
    results = [await _probe(address, port, protocol, http) for _ in range(PROBES)]
    latencies = [int(ms) for ms, _err in results if ms is not None]
    issues = [
        {"origin": "Outbound", "severity": "Error", "type": "Unknown", "context": [{"error": e}]}
        for _ms, e in results
        if e is not None
    ][:1]
    status = "Connected" if len(latencies) == PROBES else "Degraded" if latencies else "Disconnected"
    return {
        "hops": [
            {
                "type": "Source",
                "id": "source",
                "address": "portico",
                "nextHopIds": ["destination"],
                "issues": [],
            },
            {
                "type": "Destination",
                "id": "destination",
                "address": address,
                "nextHopIds": [],
                "issues": issues,
            },
        ],
        "connectionStatus": status,
        "avgLatencyInMs": sum(latencies) // len(latencies) if latencies else None,
        "minLatencyInMs": min(latencies) if latencies else None,
        "maxLatencyInMs": max(latencies) if latencies else None,
        "probesSent": PROBES,
        "probesFailed": PROBES - len(latencies),
    }
