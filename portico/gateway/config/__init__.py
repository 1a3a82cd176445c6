"""Live configuration of a gateway node: the compiled model of every service (model.py), read
from the database by the loader (loader.py), kept current by the poller (poller.py)."""

from __future__ import annotations

from portico.gateway.config.loader import RESTORE_POLL_SECONDS, Staged
from portico.gateway.config.model import KINDS, PolicyCompiling, Product, ServiceConfig, Subscription
from portico.gateway.config.poller import ConfigStore

__all__ = [
    "KINDS",
    "RESTORE_POLL_SECONDS",
    "ConfigStore",
    "PolicyCompiling",
    "Product",
    "ServiceConfig",
    "Staged",
    "Subscription",
]
