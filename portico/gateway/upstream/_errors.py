"""What the backend client raises."""

from __future__ import annotations


class UpstreamError(Exception):
    """The backend could not be reached or broke the protocol (the gateway answers 502)."""


class UpstreamTimeout(UpstreamError):
    """The backend did not answer in time (the gateway answers 504)."""


class Reusable(UpstreamError):
    """A pooled connection was closed by the server before any response byte: safe to retry."""
