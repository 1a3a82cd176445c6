"""Fixtures of the storage and backup-format tests."""

from __future__ import annotations
