"""How a step of the request path ends other than by carrying on: it answered the request itself
(`STOP`), or it refused it (`Reject`). Shared by the policies, the key check and the proxy."""

from __future__ import annotations

from typing import Final

# returned by a policy that answered the request itself (return-response, mock, cors preflight)
STOP: Final = object()


class Reject(Exception):
    """A policy (or the key check) refuses the request: answered with API Management's JSON error
    body after the on-error section ran (which may change it)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        source: str,
        reason: str,
        headers: dict[str, str] | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail  # for context.LastError.Message only (validation details), never the client
        self.source = source
        self.reason = reason
        self.headers = headers or {}


__all__ = ["STOP", "Reject"]
